"""Which architectures exist and which knobs each takes, and the rules that reject the rest.

torch-free: the CLI checks every grid cell (and the worker re-checks it) before anything is built.
Each check raises SpecError naming the field and the values allowed for that architecture.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from shared.complexity import (
    BASE_WIDTH,
    GN_GROUPS,
    SHUFFLENET_V1_MULTS,
    SHUFFLENET_V1_STAGE2,
    final_map_size,
    mobile_macs,
    resnet_macs,
    resolve_stem,
    shufflenet_v1_macs,
    width_for,
)
from shared.errors import SpecError

if TYPE_CHECKING:
    from shared.spec import ModelSpec, TrainSpec

ResNetArch = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
OtherArch = Literal["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v1", "shufflenet_v2"]
# torchvision's names for ShuffleNet v2 at one width: accepted, and read as shufflenet_v2 + width_mult
AliasArch = Literal["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]
ARCH_ALIASES: dict[str, float] = {"shufflenet_v2_x0_5": 0.5, "shufflenet_v2_x1_0": 1.0,
                                  "shufflenet_v2_x1_5": 1.5, "shufflenet_v2_x2_0": 2.0}
ARCHS: tuple[str, ...] = get_args(ResNetArch) + get_args(OtherArch)  # what `orch models` lists
RESNET_ARCHS: tuple[str, ...] = get_args(ResNetArch)
BOTTLENECK_ARCHS: tuple[str, ...] = ("resnet50", "resnet101", "resnet152")
MOBILENETS: tuple[str, ...] = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
# the archs with a group count (ResNeXt's cardinality, 1 for the basic-block ResNets); the rest show none
GROUPED_ARCHS: tuple[str, ...] = (*RESNET_ARCHS, "shufflenet_v1")
Norm = Literal["bn", "ln", "in", "gn"]
NORMS: tuple[str, ...] = get_args(Norm)
Attention = Literal["none", "se", "cbam"]

SHUFFLENET_V1_GROUPS: tuple[int, ...] = tuple(SHUFFLENET_V1_STAGE2)
SHUFFLENET_V2_MULTS: tuple[float, ...] = tuple(ARCH_ALIASES.values())  # torchvision's four builders
MOBILENET_V2_MULTS = (0.35, 1.4)  # the MobileNetV2 paper's range (torchvision takes any value)
# The norms each architecture can be built with: torchvision's ShuffleNet v2 takes no norm_layer, and
# the MobileNets have 16- and 24-channel layers that GroupNorm(32, C) cannot split.
# ShuffleNet v1's stem (12, 24 or 48 channels by width) is no multiple of 32 at any width or group count.
NORMS_FOR: dict[str, tuple[str, ...]] = {**{a: NORMS for a in RESNET_ARCHS},
                                         **{a: ("bn", "ln", "in") for a in (*MOBILENETS, "shufflenet_v1")},
                                         "shufflenet_v2": ("bn",)}
WIDTH_MULT_ARCHS = ("mobilenet_v2", "shufflenet_v1", "shufflenet_v2")
WIDTH_MULT_HELP = (f"mobilenet_v2 {MOBILENET_V2_MULTS[0]}-{MOBILENET_V2_MULTS[1]}, "
                   f"shufflenet_v1 {', '.join(map(str, SHUFFLENET_V1_MULTS))}, "
                   f"shufflenet_v2 {', '.join(map(str, SHUFFLENET_V2_MULTS))}")


def _listed(values: tuple[object, ...]) -> str:
    return ", ".join(map(str, values))


def _or_listed(values: list[str]) -> str:
    """'bn, ln or gn'; 'bn or ln'."""
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def built_width_mult(arch: str, width_mult: float | None) -> float | None:
    """The width multiplier the net is built with: 1.0 unless given; None where there is none."""
    if arch not in WIDTH_MULT_ARCHS:
        return None
    return 1.0 if width_mult is None else width_mult


def check_model_knobs(spec: ModelSpec) -> None:
    """Every cross-field rule of a model spec; the first broken one raises SpecError."""
    _check_groups(spec)
    _check_width_per_group(spec)
    _check_width_mult(spec)
    _check_norm(spec)
    _check_attention(spec)
    _check_map_norms(spec)


def _check_groups(spec: ModelSpec) -> None:
    if spec.arch == "shufflenet_v1":
        if spec.groups not in SHUFFLENET_V1_GROUPS:
            raise SpecError("groups", f"shufflenet_v1 is defined for groups {_listed(SHUFFLENET_V1_GROUPS)} "
                                      f"(the ShuffleNet paper's Table 1), got {spec.groups}")
    elif spec.arch in BOTTLENECK_ARCHS:
        try:
            width_for(spec.groups, spec.width_per_group, bottleneck=True)
        except ValueError as exc:
            raise SpecError("groups", str(exc)) from None
    elif spec.arch in RESNET_ARCHS and spec.groups != 1:
        raise SpecError("groups", f"groups need a bottleneck depth ({_listed(BOTTLENECK_ARCHS)}); "
                                  f"{spec.arch} uses basic blocks, which torchvision builds with groups=1 only")
    elif spec.groups != 1:
        raise SpecError("groups", f"groups apply to the bottleneck ResNets ({_listed(BOTTLENECK_ARCHS)}) and "
                                  f"shufflenet_v1 ({_listed(SHUFFLENET_V1_GROUPS)}); {spec.arch} keeps its own "
                                  "depthwise convolutions")


def _check_width_per_group(spec: ModelSpec) -> None:
    if spec.width_per_group is None or spec.arch in BOTTLENECK_ARCHS:
        return
    if spec.arch in RESNET_ARCHS and spec.width_per_group == BASE_WIDTH:
        return
    if spec.arch in RESNET_ARCHS:
        where = f"{spec.arch} uses basic blocks, which torchvision builds with width 64 only"
    else:
        where = f"{spec.arch} has --width-mult instead" if spec.arch in WIDTH_MULT_ARCHS else f"not to {spec.arch}"
    raise SpecError("width_per_group", f"width_per_group needs a bottleneck depth ({_listed(BOTTLENECK_ARCHS)}); "
                                       f"{where}")


def _check_width_mult(spec: ModelSpec) -> None:
    width = spec.width_mult
    if width is None:
        return
    if spec.arch not in WIDTH_MULT_ARCHS:
        raise SpecError("width_mult", f"width_mult applies to {WIDTH_MULT_HELP}; not to {spec.arch}"
                                      + ("; ResNets widen by groups and width_per_group" if spec.arch in RESNET_ARCHS
                                         else ""))
    if spec.arch == "mobilenet_v2":
        low, high = MOBILENET_V2_MULTS
        if not low <= width <= high:
            raise SpecError("width_mult", f"mobilenet_v2 takes width_mult from {low} to {high} "
                                          f"(the MobileNetV2 paper's range), got {width}")
        return
    allowed = SHUFFLENET_V1_MULTS if spec.arch == "shufflenet_v1" else SHUFFLENET_V2_MULTS
    if width not in allowed:
        source = "the ShuffleNet paper's" if spec.arch == "shufflenet_v1" else "torchvision's"
        raise SpecError("width_mult", f"{spec.arch} is defined for width_mult {_listed(allowed)} ({source}), "
                                      f"got {width}")


def _check_norm(spec: ModelSpec) -> None:
    allowed = NORMS_FOR[spec.arch]
    if spec.norm is not None and spec.norm not in allowed:
        layers = "stem's 12-, 24- or 48-channel" if spec.arch == "shufflenet_v1" else "16- and 24-channel"
        why = ("torchvision builds it with BatchNorm only (no norm_layer)" if spec.arch == "shufflenet_v2" else
               f"gn (GroupNorm with {GN_GROUPS} groups) cannot split its {layers} layers")
        raise SpecError("norm", f"{spec.arch} takes norm {_listed(allowed)}: {why}")
    if spec.norm == "gn":
        _check_group_norm(spec)


def _check_group_norm(spec: ModelSpec) -> None:
    """GroupNorm(32, C) needs every normalised channel count divisible by 32."""
    if spec.arch in BOTTLENECK_ARCHS:
        width = width_for(spec.groups, spec.width_per_group, bottleneck=True)
        if (spec.groups * width) % GN_GROUPS:
            # layer1's bottleneck width is the smallest channel count; later stages double it.
            raise SpecError("norm", f"gn (GroupNorm with {GN_GROUPS} groups) needs channel counts divisible by "
                                    f"{GN_GROUPS}, but groups={spec.groups} x width_per_group={width} gives "
                                    f"{spec.groups * width} channels in layer1; use norm bn, ln or in, or a "
                                    f"width_per_group that makes groups x width a multiple of {GN_GROUPS}")


def _check_attention(spec: ModelSpec) -> None:
    if spec.attention == "none":
        return
    if spec.arch not in RESNET_ARCHS:
        own = ("; it has its own squeeze-and-excitation" if spec.arch.startswith("mobilenet_v3")
               else "; it is built as its paper has it")
        raise SpecError("attention", f"attention se or cbam applies to the ResNet family ({_listed(RESNET_ARCHS)}), "
                                     f"not to {spec.arch}{own}; use attention none")
    narrowest = BASE_WIDTH * (4 if spec.arch in BOTTLENECK_ARCHS else 1)  # layer1's output channels
    if spec.attention_reduction > narrowest:
        raise SpecError("attention_reduction", f"{spec.attention_reduction} leaves no hidden unit in layer1's "
                                               f"{narrowest}-channel {spec.attention} block; use at most {narrowest}")


def _check_map_norms(spec: ModelSpec) -> None:
    """InstanceNorm normalises each channel of each image over its map: a 1x1 map has one value."""
    if spec.norm == "in" and final_map_size(spec.arch, spec.stem, spec.image_size) == 1:
        others = [norm for norm in NORMS_FOR[spec.arch] if norm != "in"]  # gn sent a MobileNet to a second error
        raise SpecError("norm", f"in (InstanceNorm) would see one value per channel: {_tiny_maps(spec)}; use "
                                f"--stem small (or auto), a larger --image-size, or --norm {_or_listed(others)}")


def _tiny_maps(spec: ModelSpec) -> str:
    stem = resolve_stem(spec.stem, spec.image_size)
    return f"{spec.arch} at --image-size {spec.image_size} with the {stem} stem ends in 1x1 maps"


def check_trainable(spec: TrainSpec) -> None:
    """BatchNorm in training needs two values per channel: a batch of one at a 1x1 map has one.
    (The engine merges a last batch of one image into the batch before it, so only batch_size 1 can.)"""
    model = spec.model
    if spec.batch_size == 1 and model.norm_name == "bn" and \
            final_map_size(model.arch, model.stem, model.image_size) == 1:
        raise SpecError("batch_size", f"1 with bn (BatchNorm) would see one value per channel: {_tiny_maps(model)}; "
                                      "use --batch-size 2 or more, --stem small (or auto), a larger --image-size, "
                                      "or --norm ln")


def estimate_macs(spec: ModelSpec) -> int:
    """Multiply-adds of one image, without torch: per layer for the ResNets and ShuffleNet v1, from
    counted tables for torchvision's nets (within a few % of shared.models.count_macs)."""
    small = resolve_stem(spec.stem, spec.image_size) == "small"
    if spec.arch in RESNET_ARCHS:
        width = width_for(spec.groups, spec.width_per_group, bottleneck=spec.arch in BOTTLENECK_ARCHS)
        return resnet_macs(spec.arch, spec.groups, width, small_stem=small, image_size=spec.image_size,
                           num_classes=spec.num_classes)
    width_mult = built_width_mult(spec.arch, spec.width_mult) or 1.0
    if spec.arch == "shufflenet_v1":
        return shufflenet_v1_macs(spec.groups, width_mult, small_stem=small, image_size=spec.image_size,
                                  num_classes=spec.num_classes)
    return mobile_macs(spec.arch, width_mult, small_stem=small, image_size=spec.image_size,
                       num_classes=spec.num_classes)
