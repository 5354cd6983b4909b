"""Next week's models against their papers: SE and CBAM on ResNets, ShuffleNet v1's Table 1, and the
mobile nets' width multipliers against torchvision and their papers' multiply-adds."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from shared.errors import SpecError
from shared.models import build_model, count_macs, describe
from shared.models.attention import CBAM, ChannelGate, SpatialGate
from shared.models.resnet import AttentionBasicBlock, AttentionBottleneck
from shared.models.shufflenet_v1 import ShuffleUnit
from shared.spec import NORMS, ModelSpec, parse

RESNET50_PARAMS = 25_557_032
# SE on every bottleneck of resnet50 (C = 256 x3, 512 x4, 1024 x6, 2048 x3 output channels): two FC
# layers with biases, C -> C/16 -> C, add C*C/8 + C/16 + C parameters each.
SE_PARAMS = sum(n * (c * c // 8 + c // 16 + c) for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3)))
# CBAM: the same MLP, plus a 7x7 conv over 2 maps (98 weights, no bias) and its one-channel norm (2).
CBAM_PARAMS = SE_PARAMS + 16 * (98 + 2)
# The ShuffleNet paper's Table 1 at 1x, g = 1, 2, 3, 4, 8: stage 2 output channels and M multiply-adds.
TABLE1 = {1: (144, 143), 2: (200, 140), 3: (240, 137), 4: (272, 133), 8: (384, 137)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("attention", "params"), [("se", SE_PARAMS), ("cbam", CBAM_PARAMS)])
def test_resnet50_with_attention_matches_the_cbam_paper(attention: str, params: int) -> None:
    row = describe(ModelSpec(arch="resnet50", attention=attention))
    assert row["params"] == RESNET50_PARAMS + params
    assert row["params"] == pytest.approx(28.09e6, rel=0.003)  # the CBAM paper's ImageNet table: 28.09M
    assert 3.86 * 0.99 <= row["gmacs"] <= 3.87 * 1.01  # and 3.86 / 3.864 GFLOPs
    assert row["attention"] == attention


def test_resnet50_is_unchanged() -> None:
    row = describe(ModelSpec(arch="resnet50"))
    assert row["params"] == RESNET50_PARAMS and row["gmacs"] == pytest.approx(3.86, abs=0.005)
    with torch.device("meta"):
        plain = build_model(ModelSpec(arch="resnet50"))
    assert list(plain.state_dict()) == list(tvm.resnet50(weights=None).state_dict())  # module for module


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_attention_scales_the_branch_before_the_addition(arch: str, attention: str) -> None:
    """A gate closed to 0 silences the branch: the block then passes relu(shortcut), not 0."""
    model = build_model(ModelSpec(arch=arch, attention=attention, num_classes=3)).eval()
    blocks = [m for m in model.modules() if isinstance(m, (AttentionBasicBlock, AttentionBottleneck))]
    assert len(blocks) == (8 if arch == "resnet18" else 16)
    block = model.layer1[1]  # no downsample: the shortcut is the input
    gate = block.attention.fc2 if attention == "se" else block.attention[0].mlp[2]
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.fill_(-1e4)  # sigmoid(-1e4) = 0 (CBAM sums two MLP outputs: -2e4)
        x = torch.randn(2, block.conv1.in_channels, 8, 8)
        out = block(x)
    # after the addition the gate would give 0; on the branch it leaves the shortcut
    assert torch.allclose(out, torch.relu(x)) and out.abs().sum() > 0


def test_se_reduction_and_cbam_parts() -> None:
    with torch.device("meta"):
        model = build_model(ModelSpec(arch="resnet50", attention="se", attention_reduction=8))
    assert (model.layer4[0].attention.fc1.in_channels, model.layer4[0].attention.fc1.out_channels) == (2048, 256)
    torch.manual_seed(0)
    x = torch.randn(2, 32, 5, 5)
    channel = ChannelGate(32, 16)
    mlp = channel.mlp
    expected = x * torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    assert torch.allclose(channel(x), expected)  # avg- and max-pooled descriptors, one shared MLP
    spatial = SpatialGate("bn").eval()
    assert spatial.conv.kernel_size == (7, 7) and spatial.conv.in_channels == 2
    maps = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
    assert torch.allclose(spatial(x), x * torch.sigmoid(spatial.norm(spatial.conv(maps))))
    cbam = CBAM(32, 16, "bn").eval()
    assert torch.allclose(cbam(x), cbam[1](cbam[0](x)))  # channel first, then spatial


@pytest.mark.parametrize("norm", NORMS)
def test_attention_norms_follow_the_net(norm: str) -> None:
    model = build_model(ModelSpec(arch="resnet50", attention="cbam", norm=norm, groups=32, num_classes=3))
    gate_norm = model.layer1[0].attention[1].norm
    expected = {"bn": nn.BatchNorm2d, "ln": nn.GroupNorm, "in": nn.InstanceNorm2d, "gn": nn.GroupNorm}[norm]
    assert type(gate_norm) is expected and gate_norm.weight.shape == (1,)


@pytest.mark.parametrize("groups", list(TABLE1))
def test_shufflenet_v1_matches_table1(groups: int) -> None:
    channels, mmacs = TABLE1[groups]
    model = build_model(ModelSpec(arch="shufflenet_v1", groups=groups)).eval()
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            shapes[name] = tuple(out.shape)
        return hook

    for name in ("stage2", "stage3", "stage4"):
        getattr(model, name).register_forward_hook(record(name))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert shapes == {"stage2": (1, channels, 28, 28), "stage3": (1, 2 * channels, 14, 14),
                      "stage4": (1, 4 * channels, 7, 7)}
    assert count_macs(model, 224) / 1e6 == pytest.approx(mmacs, rel=0.03)
    assert [len(model.stage2), len(model.stage3), len(model.stage4)] == [4, 8, 4]


def test_shufflenet_v1_units_as_in_the_paper() -> None:
    model = build_model(ModelSpec(arch="shufflenet_v1", groups=3))
    first, second = model.stage2[0], model.stage2[1]
    assert first.compress[0].groups == 1 and first.compress[0].in_channels == 24  # not grouped: 24 inputs
    assert second.compress[0].groups == 3 and second.expand[0].groups == 3
    assert second.compress[0].out_channels == 240 // 4  # bottleneck: a quarter of the output
    assert model.stage3[0].compress[0].groups == 3  # later stride-2 units are grouped
    assert second.depthwise[0].groups == second.depthwise[0].in_channels  # depthwise 3x3
    assert isinstance(first.shortcut, nn.AvgPool2d) and first.expand[0].out_channels == 240 - 24  # concat
    assert second.shortcut is None
    assert not any(isinstance(m, nn.ReLU) for m in second.depthwise)  # no ReLU after the depthwise conv


def test_shuffle_mixes_the_groups() -> None:
    """Zeroing the first input group changes every output group: without the shuffle, the grouped 1x1s
    would keep each group to itself and only the first output group (and its shortcut) would change."""
    torch.manual_seed(0)
    unit = ShuffleUnit(36, 36, groups=3, stride=1, first_groups=3, norm_layer=nn.BatchNorm2d).eval()
    x = torch.randn(4, 36, 6, 6)
    changed = x.clone()
    changed[:, :12] = 0
    with torch.no_grad():
        delta = (unit(x) - unit(changed)).abs().amax(dim=(0, 2, 3))
    assert all(delta[group * 12:(group + 1) * 12].max() > 0 for group in range(3))


@pytest.mark.parametrize(("width", "mmacs"), [(0.5, 38), (1.5, 292), (2.0, 524)])
def test_shufflenet_v1_widths_match_the_paper(width: float, mmacs: int) -> None:
    """g=3 at 0.5x (Table 2) and 1.5x, 2x (Table 5)."""
    assert describe(ModelSpec(arch="shufflenet_v1", groups=3, width_mult=width))["gmacs"] * 1e3 == \
        pytest.approx(mmacs, rel=0.03)


def test_mobile_nets_keep_torchvision_and_their_papers() -> None:
    mobilenet = describe(ModelSpec(arch="mobilenet_v2", width_mult=1.0))
    assert mobilenet["params"] == 3_504_872 and mobilenet["gmacs"] == pytest.approx(0.300, rel=0.05)
    shufflenet = describe(ModelSpec(arch="shufflenet_v2", width_mult=1.0))
    assert shufflenet["params"] == 2_278_604 and shufflenet["gmacs"] == pytest.approx(0.146, rel=0.05)
    assert describe(ModelSpec(arch="shufflenet_v2_x1_0")) == shufflenet  # torchvision's name, same net


@pytest.mark.parametrize(("width", "mmacs"), [(0.35, 59), (0.5, 97), (0.75, 209), (1.4, 585)])
def test_mobilenet_v2_widths(width: float, mmacs: int) -> None:
    """torchvision's width_mult, at the MobileNetV2 paper's multiply-adds for each width."""
    with torch.device("meta"):
        reference = sum(p.numel() for p in tvm.mobilenet_v2(weights=None, width_mult=width).parameters())
    row = describe(ModelSpec(arch="mobilenet_v2", width_mult=width))
    assert row["params"] == reference and row["gmacs"] * 1e3 == pytest.approx(mmacs, rel=0.03)


@pytest.mark.parametrize("width", [0.5, 1.5, 2.0])
def test_shufflenet_v2_widths_are_torchvisions_builders(width: float) -> None:
    name = f"shufflenet_v2_x{str(width).replace('.', '_')}"
    with torch.device("meta"):
        reference = sum(p.numel() for p in getattr(tvm, name)(weights=None).parameters())
    assert describe(ModelSpec(arch="shufflenet_v2", width_mult=width))["params"] == reference
    assert ModelSpec(arch=name) == ModelSpec(arch="shufflenet_v2", width_mult=width)


@pytest.mark.parametrize(("arch", "norm", "kind"), [
    ("mobilenet_v2", "ln", nn.GroupNorm), ("mobilenet_v2", "in", nn.InstanceNorm2d),
    ("mobilenet_v3_small", "ln", nn.GroupNorm), ("shufflenet_v1", "in", nn.InstanceNorm2d),
])
def test_norm_knob_on_the_other_nets(arch: str, norm: str, kind: type[nn.Module]) -> None:
    with torch.device("meta"):
        model = build_model(ModelSpec(arch=arch, norm=norm))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d))]
    assert norms and all(type(m) is kind for m in norms)


def test_bn_keeps_torchvisions_own_batchnorm() -> None:
    with torch.device("meta"):
        model = build_model(ModelSpec(arch="mobilenet_v3_large", norm="bn"))
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {0.001}  # torchvision's choice


def train_step(spec: ModelSpec) -> None:
    torch.manual_seed(0)
    model = build_model(spec)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1]))
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert math.isfinite(loss.item()) and all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_attention_nets_train_a_step(attention: str, norm: str) -> None:
    train_step(ModelSpec(arch="resnet18", attention=attention, norm=norm, image_size=32, num_classes=3))


@pytest.mark.parametrize("groups", list(TABLE1))
def test_shufflenet_v1_trains_a_step(groups: int) -> None:
    train_step(ModelSpec(arch="shufflenet_v1", groups=groups, width_mult=0.5, image_size=32, num_classes=3))


@pytest.mark.parametrize(("arch", "norm", "width"), [
    ("mobilenet_v2", "ln", 0.35), ("mobilenet_v2", "in", 1.4), ("shufflenet_v2", None, 0.5),
    ("shufflenet_v1", "ln", 2.0),
])
def test_widths_and_norms_train_a_step(arch: str, norm: str | None, width: float) -> None:
    train_step(ModelSpec(arch=arch, norm=norm, width_mult=width, image_size=32, num_classes=3))


def test_plain_resnet_weights_start_an_attention_net(tmp_path) -> None:
    path = tmp_path / "resnet18.pth"
    source = tvm.resnet18(weights=None)
    torch.save(source.state_dict(), path)
    model = build_model(ModelSpec(arch="resnet18", attention="se", num_classes=2, pretrained=str(path)))
    assert torch.equal(model.layer2[0].conv1.weight, source.layer2[0].conv1.weight)


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"arch": "shufflenet_v2", "width_mult": 0.75}, "width_mult", "shufflenet_v2 is defined for width_mult "
                                                                  "0.5, 1.0, 1.5, 2.0"),
    ({"arch": "shufflenet_v2_x0_5", "width_mult": 1.0}, "width_mult", "shufflenet_v2_x0_5 is shufflenet_v2 at"),
    ({"arch": "shufflenet_v1", "width_mult": 0.25}, "width_mult", "0.5, 1.0, 1.5, 2.0"),
    ({"arch": "mobilenet_v2", "width_mult": 2.0}, "width_mult", "from 0.35 to 1.4"),
    ({"arch": "mobilenet_v3_small", "width_mult": 0.5}, "width_mult", "applies to mobilenet_v2 0.35-1.4"),
    ({"arch": "resnet50", "width_mult": 0.5}, "width_mult", "groups and width_per_group"),
    ({"arch": "mobilenet_v2", "groups": 2}, "groups", "shufflenet_v1 (1, 2, 3, 4, 8)"),
    ({"arch": "shufflenet_v1", "groups": 6}, "groups", "groups 1, 2, 3, 4, 8"),
    ({"arch": "shufflenet_v1", "width_per_group": 4}, "width_per_group", "has --width-mult instead"),
    ({"arch": "mobilenet_v3_large", "attention": "se"}, "attention", "its own squeeze-and-excitation"),
    ({"arch": "shufflenet_v1", "attention": "cbam"}, "attention", "ResNet family (resnet18"),
    ({"arch": "shufflenet_v2", "norm": "ln"}, "norm", "shufflenet_v2 takes norm bn: torchvision"),
    ({"arch": "shufflenet_v1", "norm": "gn"}, "norm", "shufflenet_v1 takes norm bn, ln, in: gn (GroupNorm with 32 "
                                                      "groups) cannot split its stem's 12-, 24- or 48-channel layers"),
    ({"arch": "resnet18", "attention": "se", "attention_reduction": 128}, "attention_reduction", "at most 64"),
])
def test_combinations_that_do_not_exist_name_the_field(fields: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(ModelSpec, fields)
    assert info.value.field == field and words in info.value.message and "\n" not in str(info.value)
