"""The model zoo against the papers and torchvision: FLOPs, parameters, widths, norms, stems, weights."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from shared.errors import CheckpointError, SpecError
from shared.models import build_model, count_macs, describe, resolve_width
from shared.spec import ARCHS, BOTTLENECK_ARCHS, NORMS, RESNET_ARCHS, ModelSpec, parse

# The ResNet paper's Table 1: multiply-adds (its "FLOPs") at 224x224.
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}
# torchvision's own parameter counts (its model docs) with 1000 classes, by torchvision's builder name.
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032, "shufflenet_v2_x1_0": 2_278_604,
}
TABLE2_WIDTHS = {1: 64, 2: 40, 4: 24, 8: 14, 32: 4}  # the ResNeXt paper's Table 2, resnet50
TABLE2_GROUPS = tuple(TABLE2_WIDTHS)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny batches gain nothing from threads, and on shared cores OpenMP's spinning threads made
    each training step 5-10x slower; one thread keeps the file fast and its timing steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", RESNET_ARCHS)
def test_gmacs_match_the_resnet_paper(arch: str) -> None:
    gmacs = describe(ModelSpec(arch=arch))["gmacs"]
    assert gmacs == pytest.approx(PAPER_GMACS[arch], rel=0.03)


@pytest.mark.parametrize("builder", TORCHVISION_PARAMS)
def test_params_equal_torchvision(builder: str) -> None:
    with torch.device("meta"):
        reference = n_params(getattr(tvm, builder)(weights=None))
    # torchvision's shufflenet_v2_x1_0 is accepted under its own name and is shufflenet_v2 at width 1.0
    assert describe(ModelSpec(arch=builder))["params"] == reference == TORCHVISION_PARAMS[builder]


def test_resnet50_32x4d_is_torchvision_resnext50() -> None:
    with torch.device("meta"):
        reference = n_params(tvm.resnext50_32x4d(weights=None))
    explicit = describe(ModelSpec(arch="resnet50", groups=32, width_per_group=4))
    assert explicit["params"] == reference == 25_028_904
    assert describe(ModelSpec(arch="resnet50", groups=32))["params"] == reference  # auto width: 4


def test_table2_widths_keep_the_multiply_adds() -> None:
    rows = {g: describe(ModelSpec(arch="resnet50", groups=g)) for g in TABLE2_WIDTHS}
    assert {g: row["width_per_group"] for g, row in rows.items()} == TABLE2_WIDTHS
    for row in rows.values():
        assert row["gmacs"] == pytest.approx(rows[1]["gmacs"], rel=0.10)


def test_width_rule_and_override() -> None:
    for g, width in TABLE2_WIDTHS.items():
        assert resolve_width(ModelSpec(arch="resnet101", groups=g)) == width  # same rule at every depth
    assert resolve_width(ModelSpec(arch="resnet50", groups=8, width_per_group=4)) == 4
    assert resolve_width(ModelSpec(arch="resnet18")) == 64
    assert resolve_width(ModelSpec(arch="mobilenet_v2")) is None


def test_describe_has_exactly_the_documented_keys() -> None:
    row = describe(ModelSpec(arch="mobilenet_v3_small", num_classes=10, image_size=64))
    assert list(row) == ["arch", "groups", "width_per_group", "width_mult", "attention", "attention_reduction", "norm",
                         "stem", "params", "gmacs"]
    assert row["stem"] == "small" and describe(ModelSpec(arch="resnet18", image_size=224))["stem"] == "imagenet"
    assert (row["groups"], row["width_mult"], row["attention"]) == (None, None, None)  # knobs it does not take
    assert isinstance(row["params"], int) and isinstance(row["gmacs"], float)
    assert json.loads(json.dumps(row)) == row


def test_resnets_downsample_on_the_first_1x1_as_in_the_paper() -> None:
    with torch.device("meta"):
        model = build_model(ModelSpec(arch="resnet50"))
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)


@pytest.mark.parametrize(("norm", "kind", "extra"), [
    ("bn", nn.BatchNorm2d, {}),
    ("ln", nn.GroupNorm, {"num_groups": 1}),
    ("in", nn.InstanceNorm2d, {"affine": True}),
    ("gn", nn.GroupNorm, {"num_groups": 32}),
])
def test_norms_and_their_initialisation(norm: str, kind: type[nn.Module], extra: dict) -> None:
    model = build_model(ModelSpec(arch="resnet50", groups=32, norm=norm, num_classes=10))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d))]
    assert norms and all(type(m) is kind for m in norms)
    for m in norms:
        assert all(getattr(m, key) == value for key, value in extra.items())
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_stem_choice() -> None:
    small = build_model(ModelSpec(arch="resnet18", image_size=32, num_classes=10))
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    large = build_model(ModelSpec(arch="resnet18", image_size=224, num_classes=10))
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)
    forced = build_model(ModelSpec(arch="resnet18", image_size=32, stem="imagenet", num_classes=10))
    assert forced.conv1.kernel_size == (7, 7)
    at_64, at_65 = (build_model(ModelSpec(arch="resnet18", image_size=px, num_classes=10)) for px in (64, 65))
    assert at_64.conv1.kernel_size == (3, 3) and at_65.conv1.kernel_size == (7, 7)
    # no early downsampling: 16x the multiply-adds of the imagenet stem at the same size
    assert count_macs(at_64, 64) > 10 * count_macs(at_65, 64)


def smoke_matrix() -> list:
    """Every ResNet arch x norm x groups (1 and the paper's 2, 4, 8, 32 on bottleneck depths).

    resnet50 carries the whole matrix by default; resnet101/152 are the same blocks stacked deeper,
    so by default they train the corners (groups 1 and 32 with bn and gn) and the rest is `slow`.
    """
    cells = []
    for arch in RESNET_ARCHS:
        for norm in NORMS:
            for groups in TABLE2_GROUPS if arch in BOTTLENECK_ARCHS else (1,):
                core = arch not in ("resnet101", "resnet152") or (norm in ("bn", "gn") and groups in (1, 32))
                marks = () if core else (pytest.mark.slow,)
                cells.append(pytest.param(arch, norm, groups, marks=marks, id=f"{arch}-{norm}-g{groups}"))
    return cells


def train_one_step(spec: ModelSpec) -> None:
    torch.manual_seed(0)
    model = build_model(spec)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item())
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(("arch", "norm", "groups"), smoke_matrix())
def test_small_stem_trains_a_step(arch: str, norm: str, groups: int) -> None:
    spec = {"arch": arch, "norm": norm, "groups": groups, "stem": "small", "image_size": 32, "num_classes": 3}
    if norm == "gn" and groups in (2, 8):  # 2x40 = 80 and 8x14 = 112 channels: GroupNorm(32) cannot split them
        with pytest.raises(SpecError, match="^norm: gn .* (80|112) channels"):
            parse(ModelSpec, spec)
        return
    train_one_step(parse(ModelSpec, spec))


@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in RESNET_ARCHS])
@pytest.mark.parametrize("stem", ["small", "imagenet"])
def test_other_archs_train_a_step_at_32px(arch: str, stem: str) -> None:
    train_one_step(ModelSpec(arch=arch, stem=stem, image_size=32, num_classes=3))


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"arch": "resnet19"}, "arch", "resnet18"),
    ({"arch": "resnet18", "groups": 8}, "groups", "bottleneck depth (resnet50, resnet101, resnet152)"),
    ({"arch": "resnet34", "width_per_group": 4}, "width_per_group", "basic blocks"),
    ({"arch": "resnet50", "norm": "xx"}, "norm", "'bn', 'ln', 'in' or 'gn'"),
    ({"arch": "resnet50", "groups": 8, "norm": "gn"}, "norm", "divisible by 32"),
    ({"arch": "resnet50", "groups": 256}, "groups", "at most 167"),
    ({"arch": "resnet50", "width_per_group": 0}, "width_per_group", "must be at least 1, got 0"),
    ({"arch": "mobilenet_v2", "norm": "gn"}, "norm", "mobilenet_v2 takes norm bn, ln, in"),
    ({"arch": "shufflenet_v2_x1_0", "groups": 2}, "groups", "bottleneck ResNets (resnet50, resnet101, resnet152) "
                                                            "and shufflenet_v1 (1, 2, 3, 4, 8)"),
    ({"arch": "resnet18", "image_size": 16}, "image_size", "must be at least 32, got 16"),
])
def test_invalid_specs_name_the_field(fields: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(ModelSpec, fields)
    assert info.value.field == field and words in str(info.value) and "\n" not in str(info.value)


def test_pretrained_replaces_the_classifier(tmp_path) -> None:
    path = tmp_path / "resnet18.pth"
    source = tvm.resnet18(weights=None)
    torch.save(source.state_dict(), path)
    model = build_model(ModelSpec(arch="resnet18", num_classes=2, pretrained=str(path)))
    assert torch.equal(model.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(model.bn1.running_var, source.bn1.running_var)
    assert model.fc.out_features == 2
    same = build_model(ModelSpec(arch="resnet18", pretrained=str(path)))
    assert torch.equal(same.fc.weight, source.fc.weight)


def test_pretrained_does_not_change_the_network(tmp_path) -> None:
    # A checkpoint is reloaded from its spec without the pretrained file: same spec, same network.
    spec = ModelSpec(arch="resnet50", groups=32)
    assert describe(spec.model_copy(update={"pretrained": str(tmp_path / "never-read.pth")})) == describe(spec)


def test_pretrained_mobilenet_with_fewer_classes(tmp_path) -> None:
    path = tmp_path / "mnv3.pth"
    torch.save(tvm.mobilenet_v3_small(weights=None).state_dict(), path)
    model = build_model(ModelSpec(arch="mobilenet_v3_small", num_classes=5, pretrained=str(path)))
    assert model.classifier[-1].out_features == 5


def test_pretrained_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        build_model(ModelSpec(arch="resnet18", pretrained=str(tmp_path / "missing.pth")))
    wrong = tmp_path / "resnet18.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="does not fit") as info:
        build_model(ModelSpec(arch="resnet34", pretrained=str(wrong)))
    assert "missing layer1.2" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="does not fit"):  # BatchNorm weights into GroupNorm
        build_model(ModelSpec(arch="resnet18", norm="ln", pretrained=str(wrong)))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a PyTorch file"):  # torch's advice was weights_only=False
        build_model(ModelSpec(arch="resnet18", pretrained=str(garbage)))
    torn = tmp_path / "torn.pth"
    torn.write_bytes(b"PK\x03\x04" + b"\0" * 60)  # a zip's start, then nothing: torch's to judge
    with pytest.raises(CheckpointError, match="cannot read"):
        build_model(ModelSpec(arch="resnet18", pretrained=str(torn)))
