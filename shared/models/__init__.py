"""The model zoo: `build_model(spec)` for every architecture a ModelSpec names, one flat file per
family as torchvision has them: resnet.py (ResNet/ResNeXt, with attention.py's SE and CBAM),
shufflenet_v1.py, mobile.py (torchvision's MobileNets and ShuffleNet v2); counting.py counts what a
spec builds, pretrained.py loads local weights. Nothing is downloaded.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from shared.complexity import resolve_stem
from shared.errors import SpecError
from shared.models import counting
from shared.models.counting import count_macs
from shared.models.mobile import build_mobile, small_stem
from shared.models.norms import NORM_LAYERS
from shared.models.pretrained import load_pretrained
from shared.models.resnet import build_resnet
from shared.models.shufflenet_v1 import ShuffleNetV1
from shared.spec import RESNET_ARCHS, ModelSpec

__all__ = ["build_model", "resolve_width", "describe", "count_macs", "load_pretrained", "NORM_LAYERS"]


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the network `spec` names, with pretrained weights loaded when it names a file.

    Raises SpecError for a spec that cannot be built and CheckpointError for a missing or
    mismatched weights file. Builds on the current default device (`with torch.device("meta")`
    makes a weightless model for counting).
    """
    model = _build(spec)
    if spec.pretrained is not None:
        load_pretrained(model, spec.pretrained, replaceable=_replaceable_keys(model, spec))
    return model


def describe(spec: ModelSpec) -> dict[str, Any]:
    """What `spec` builds: arch, its knobs, params and gmacs (see counting.describe); cheap even for
    resnet152 (a meta-device copy), and it never reads the pretrained file."""
    return counting.describe(spec, _build)


def resolve_width(spec: ModelSpec) -> int | None:
    """The width_per_group the network is built with; None where the knob does not apply."""
    try:
        return spec.built_width
    except ValueError as exc:
        raise SpecError("groups", str(exc)) from None


def _build(spec: ModelSpec) -> nn.Module:
    small = resolve_stem(spec.stem, spec.image_size) == "small"
    if spec.arch in RESNET_ARCHS:
        return build_resnet(spec, small_stem=small)
    if spec.arch == "shufflenet_v1":
        model: nn.Module = ShuffleNetV1(spec.groups, spec.width_mult or 1.0, spec.num_classes,
                                        NORM_LAYERS[spec.norm_name])
    else:
        model = build_mobile(spec)
    if small:
        small_stem(model)
    return model


def _replaceable_keys(model: nn.Module, spec: ModelSpec) -> set[str]:
    """Keys a checkpoint may lack or mismatch in shape: the classifier, a replaced ResNet stem, and
    the attention modules (torchvision's plain ResNet weights start an SE or CBAM net)."""
    last_linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    keys = {f"{last_linear}.weight", f"{last_linear}.bias"}
    keys |= {key for key in model.state_dict() if ".attention." in key}
    if spec.arch in RESNET_ARCHS and resolve_stem(spec.stem, spec.image_size) == "small":
        keys.add("conv1.weight")
    return keys
