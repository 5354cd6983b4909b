"""The model zoo: `build_model(spec)` on top of torchvision's ResNet, MobileNet and ShuffleNet.

ResNets follow the ResNet paper's Table 1 (block counts, and the stride-2 on the first 1x1 of a
downsampling bottleneck, which gives its 3.8/7.6/11.3 G multiply-adds); ResNeXt is the same net with
`groups` (cardinality) and the width per group of the ResNeXt paper's Table 2. Nothing is downloaded:
pretrained weights come from a local torchvision state_dict file.
"""
from __future__ import annotations

from collections.abc import Callable, Set as AbstractSet
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from shared.complexity import GN_GROUPS, resolve_stem, width_for
from shared.errors import CheckpointError, SpecError
from shared.spec import BOTTLENECK_ARCHS, RESNET_ARCHS, ModelSpec

__all__ = ["build_model", "resolve_width", "describe", "count_macs", "load_pretrained", "NORM_LAYERS"]

# The ResNet paper's Table 1: block type and blocks per stage (conv2_x .. conv5_x).
RESNET_LAYERS: dict[str, tuple[type[BasicBlock | Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}

OTHER_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mobilenet_v2": tvm.mobilenet_v2,
    "mobilenet_v3_small": tvm.mobilenet_v3_small,
    "mobilenet_v3_large": tvm.mobilenet_v3_large,
    "shufflenet_v2_x1_0": tvm.shufflenet_v2_x1_0,
}

# torchvision calls norm_layer(num_channels); GroupNorm takes the group count first, hence partial.
NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "ln": partial(nn.GroupNorm, 1),  # one group: LayerNorm over (C, H, W)
    "in": partial(nn.InstanceNorm2d, affine=True),
    "gn": partial(nn.GroupNorm, GN_GROUPS),
}
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm)


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


def resolve_width(spec: ModelSpec) -> int | None:
    """The width_per_group the network is built with; None where the knob does not apply."""
    if spec.arch not in RESNET_ARCHS:
        return None
    try:
        return width_for(spec.groups, spec.width_per_group, bottleneck=spec.arch in BOTTLENECK_ARCHS)
    except ValueError as exc:
        raise SpecError("groups", str(exc)) from None


def describe(spec: ModelSpec) -> dict[str, Any]:
    """What `spec` builds: arch, groups, width_per_group, norm, params, gmacs (at spec.image_size).

    Counted on a weightless meta-device copy, so it is cheap even for resnet152 and never reads
    the pretrained file. gmacs are giga multiply-adds for one image (the papers' "FLOPs").
    """
    resnet = spec.arch in RESNET_ARCHS
    with torch.device("meta"):
        model = _build(spec)
    return {
        "arch": spec.arch,
        "groups": spec.groups if resnet else None,
        "width_per_group": resolve_width(spec),
        "norm": spec.norm or "bn",  # the MobileNets and ShuffleNet use BatchNorm
        "params": sum(p.numel() for p in model.parameters()),
        "gmacs": round(count_macs(model, spec.image_size) / 1e9, 3),
    }


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-adds of one forward pass on one image, by PyTorch's own flop counter.

    FlopCounterMode counts conv and matmul FLOPs as 2 x MACs; norms, activations and pooling are
    not counted, as in the papers' tables.
    """
    device = next(model.parameters()).device
    image = torch.zeros(1, 3, image_size, image_size, device=device)
    was_training = model.training
    model.eval()  # a batch of one would make BatchNorm refuse to train
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def _build(spec: ModelSpec) -> nn.Module:
    small = resolve_stem(spec.stem, spec.image_size) == "small"
    if spec.arch in RESNET_ARCHS:
        return _build_resnet(spec, small_stem=small)
    model = OTHER_BUILDERS[spec.arch](weights=None, num_classes=spec.num_classes)
    if small:
        _small_stem_other(model)
    return model


def _build_resnet(spec: ModelSpec, *, small_stem: bool) -> ResNet:
    block, layers = RESNET_LAYERS[spec.arch]
    model = ResNet(
        block,
        layers,
        num_classes=spec.num_classes,
        groups=spec.groups,
        width_per_group=resolve_width(spec) or 64,
        norm_layer=NORM_LAYERS[spec.norm or "bn"],
    )
    if small_stem:
        # The ResNet paper's CIFAR stem: a 32 px image reaches layer4 at 4x4, not 1x1.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
    # Always the paper's layout, pretrained or not: the spec alone must determine the network, or a
    # checkpoint reloaded without its pretrained file would silently run with other strides.
    # (torchvision's bottleneck checkpoints were trained with the stride on the 3x3, "v1.5"; their
    # shapes are the same, so they load and fine-tune, only their features are not bit-exact.)
    _stride_on_first_1x1(model)
    _init_norms(model)
    return model


def _stride_on_first_1x1(model: ResNet) -> None:
    """Move each downsampling bottleneck's stride from its 3x3 to its first 1x1 (ResNet paper).

    torchvision strides the 3x3, which costs 4.1 G multiply-adds for resnet50 instead of the
    paper's 3.8; parameters are the same either way.
    """
    for module in model.modules():
        if isinstance(module, Bottleneck) and module.conv2.stride != (1, 1):
            module.conv1.stride, module.conv2.stride = module.conv2.stride, (1, 1)


def _init_norms(model: nn.Module) -> None:
    """Every norm starts as torchvision starts BatchNorm: weight 1, bias 0 (an identity affine)."""
    for module in model.modules():
        if isinstance(module, NORM_TYPES) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _small_stem_other(model: nn.Module) -> None:
    """Small stem for MobileNet/ShuffleNet: the first conv at stride 1 and no max-pool.

    Same idea as the ResNet small stem (no early downsampling for tiny images); the weights keep
    their shapes, so torchvision checkpoints still load.
    """
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first_conv.stride = (1, 1)
    if hasattr(model, "maxpool"):  # ShuffleNet
        model.maxpool = nn.Identity()


def _replaceable_keys(model: nn.Module, spec: ModelSpec) -> set[str]:
    """Keys a checkpoint may lack or mismatch in shape: the classifier, and a replaced ResNet stem."""
    last_linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    keys = {f"{last_linear}.weight", f"{last_linear}.bias"}
    if spec.arch in RESNET_ARCHS and resolve_stem(spec.stem, spec.image_size) == "small":
        keys.add("conv1.weight")
    return keys


def load_pretrained(model: nn.Module, path: str, replaceable: AbstractSet[str] = frozenset()) -> None:
    """Load a local torchvision state_dict into `model`; keys in `replaceable` may differ in shape
    (they keep their fresh initialisation, e.g. an fc for another class count)."""
    state = _read_state_dict(path)
    own = model.state_dict()
    mismatched = sorted(k for k, v in state.items() if k in own and v.shape != own[k].shape)
    bad_shapes = [k for k in mismatched if k not in replaceable]
    state = {k: v for k, v in state.items() if k not in mismatched}
    missing = sorted(k for k in set(own) - set(state)
                     if k not in replaceable and not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    problems = [f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for what, keys in (("shape mismatch in", bad_shapes), ("missing", missing),
                                   ("unexpected", unexpected)) if keys]
    if problems:
        raise CheckpointError(f"pretrained: {path} does not fit this model: {'; '.join(problems)} "
                              f"(is it a torchvision state_dict of the same arch and norm?)")
    model.load_state_dict(state, strict=False)


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"pretrained: no such file {path} (weights are never downloaded)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt, truncated or pickled-object file: one line, no traceback
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"pretrained: cannot read {path} as a state_dict: {reason[:200]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"pretrained: {path} is not a state_dict (a mapping of names to tensors)")
    return state
