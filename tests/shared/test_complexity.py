"""The torch-free arithmetic the CLI relies on, against the networks torch builds: last feature-map
sizes (which reject untrainable specs) and multiply-add estimates (which warn on slow grid cells)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from shared.archs import estimate_macs
from shared.complexity import MOBILE_MACS_224, final_map_size, shufflenet_v1_channels
from shared.models import build_model, count_macs
from shared.spec import ARCHS, ModelSpec


def last_map_side(model: nn.Module, image_size: int) -> int:
    """The side of the smallest map any norm sees, by running the (meta-device) model."""
    sides: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sides.append(out.shape[-1]))
             for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size, device="meta"))
    for hook in hooks:
        hook.remove()
    return min(sides)


@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in ("resnet101", "resnet152")])  # resnet50's strides
def test_final_map_size_is_what_the_norms_see(arch: str) -> None:
    for stem in ("imagenet", "small"):  # an explicit stem builds one net for every image size
        with torch.device("meta"):
            model = build_model(ModelSpec(arch=arch, stem=stem, num_classes=3))
        for image_size in (32, 33, 47, 65, 100):
            assert final_map_size(arch, stem, image_size) == last_map_side(model, image_size), (image_size, stem)


def test_imagenet_stem_at_32px_ends_at_1x1_and_the_small_stem_does_not() -> None:
    assert final_map_size("resnet50", "imagenet", 32) == 1
    assert final_map_size("resnet50", "auto", 32) == 4
    assert final_map_size("mobilenet_v2", "small", 32) == 2


def estimate_cases() -> list[dict]:
    cases = [{"arch": a} for a in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")]
    cases += [{"arch": "resnet50", "groups": g} for g in (2, 8, 32)]
    cases += [{"arch": "resnet101", "groups": 32, "width_per_group": 8}]
    cases += [{"arch": "shufflenet_v1", "groups": g, "width_mult": w} for g in (1, 3, 8) for w in (0.5, 2.0)]
    return cases


@pytest.mark.parametrize("fields", estimate_cases())
def test_resnet_and_shufflenet_v1_estimates_are_exact(fields: dict) -> None:
    for image_size in (32, 65, 224):
        spec = ModelSpec(image_size=image_size, num_classes=10, **fields)
        with torch.device("meta"):
            assert estimate_macs(spec) == count_macs(build_model(spec), image_size)


def test_attention_adds_under_one_percent_to_the_estimate() -> None:
    spec = ModelSpec(arch="resnet50", attention="cbam")
    with torch.device("meta"):
        assert estimate_macs(spec) == pytest.approx(count_macs(build_model(spec), 224), rel=0.01)


@pytest.mark.parametrize(("arch", "width"), [(a, w) for a, table in MOBILE_MACS_224.items() for w in table])
def test_mobile_table_is_what_torch_counts(arch: str, width: float) -> None:
    spec = ModelSpec(arch=arch, width_mult=width if arch in ("mobilenet_v2", "shufflenet_v2") else None)
    with torch.device("meta"):
        assert count_macs(build_model(spec), 224) == MOBILE_MACS_224[arch][width]


@pytest.mark.parametrize("arch", ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2"])
def test_mobile_estimates_within_a_quarter(arch: str) -> None:
    """Close enough to compare grid cells by (the warning is at 4x): other sizes, stems, widths, classes."""
    widths = {"mobilenet_v2": (0.35, 0.6, 1.2), "shufflenet_v2": (0.5, 2.0)}.get(arch, (None,))
    for width in widths:
        for image_size, stem in ((32, "small"), (40, "imagenet"), (300, "auto")):
            spec = ModelSpec(arch=arch, width_mult=width, image_size=image_size, stem=stem, num_classes=2)
            with torch.device("meta"):
                real = count_macs(build_model(spec), image_size)
            assert estimate_macs(spec) == pytest.approx(real, rel=0.25), (width, image_size, stem)


def test_shufflenet_v1_widths() -> None:
    assert shufflenet_v1_channels(3, 1.0) == (24, (240, 480, 960))  # Table 1
    # the released models of the paper's authors, g = 3 and 8
    assert shufflenet_v1_channels(3, 0.5) == (12, (120, 240, 480))
    assert shufflenet_v1_channels(3, 1.5) == (24, (360, 720, 1440))
    assert shufflenet_v1_channels(8, 0.5) == (16, (192, 384, 768))
    assert shufflenet_v1_channels(8, 2.0) == (48, (768, 1536, 3072))
    for groups in (1, 2, 3, 4, 8):
        for width in (0.5, 1.0, 1.5, 2.0):
            stem, (stage2, _, _) = shufflenet_v1_channels(groups, width)
            assert stage2 % (4 * groups) == 0 and (stage2 - stem) % groups == 0
