"""Complexity arithmetic that needs no torch: the ResNeXt width rule, the stem choice, feature-map
sizes, ShuffleNet v1's widths and multiply-add estimates.

The CLI validates specs (and shows the width actually used, and compares the cost of a grid's
cells) without importing torch, so these rules live here as plain integer arithmetic.
"""
from __future__ import annotations

BASE_WIDTH = 64  # torchvision's width_per_group for groups=1 (the plain ResNet)
GN_GROUPS = 32  # GroupNorm's default group count (Wu & He, 2018)
SMALL_STEM_MAX_PX = 64  # `stem=auto` picks the small stem at or below this image size
# With an automatic width, refuse group counts whose cheapest block (width 1) already costs this
# much more than the groups=1 block: "near the groups=1 network" is then impossible.
MAX_AUTO_COST_RATIO = 1.25
_TEMPLATE_IO = 256  # channels in and out of the conv2-stage block (ResNeXt paper, Table 2)


def template_cost(groups: int, width_per_group: int) -> int:
    """Parameters (= multiply-adds per output pixel) of the ResNeXt paper's template block.

    The conv2-stage bottleneck 256 -> C*d (1x1) -> C*d (3x3, C groups) -> 256 (1x1) costs
    256*C*d + 9*C*d*d + C*d*256; Table 2 keeps this near its groups=1, d=64 value (~70k).
    Every other stage scales the same way, so matching the template matches the network.
    """
    width = groups * width_per_group
    return 2 * _TEMPLATE_IO * width + 9 * width * width_per_group


def auto_width(groups: int) -> int:
    """The width per group whose template cost is nearest the groups=1 network's (Table 2).

    Reproduces the paper: groups 1, 2, 4, 8, 32 give 64, 40, 24, 14, 4.
    Raises ValueError when even width 1 is far more expensive than groups=1.
    """
    target = template_cost(1, BASE_WIDTH)
    if template_cost(groups, 1) > MAX_AUTO_COST_RATIO * target:
        limit = max(c for c in range(1, 1024) if template_cost(c, 1) <= MAX_AUTO_COST_RATIO * target)
        raise ValueError(
            f"groups={groups} is too many for an automatic width_per_group: even width 1 costs "
            f"{template_cost(groups, 1) / target:.2f}x the groups=1 network; "
            f"use groups of at most {limit} or give width_per_group"
        )
    # Ties (never hit by the paper's values) go to the narrower, cheaper width.
    return min(range(1, BASE_WIDTH + 1), key=lambda d: (abs(template_cost(groups, d) - target), d))


def width_for(groups: int, width_per_group: int | None, bottleneck: bool) -> int:
    """The width per group torchvision's ResNet is built with (basic blocks: always 64)."""
    if width_per_group is not None:
        return width_per_group
    if not bottleneck or groups == 1:
        return BASE_WIDTH
    return auto_width(groups)


def resolve_stem(stem: str, image_size: int) -> str:
    """`auto` -> `small` for images of SMALL_STEM_MAX_PX or less, else `imagenet`."""
    if stem != "auto":
        return stem
    return "small" if image_size <= SMALL_STEM_MAX_PX else "imagenet"


# --- Feature-map sizes ------------------------------------------------------------------------
# Every strided layer of these nets (7x7/3x3 convs with padding k//2, 1x1 convs, 3x3 pools with
# padding 1) maps n pixels to ceil(n/2), so the last map is the image size halved this many times.
# ShuffleNets and ResNets halve twice in the stem (conv + max-pool), MobileNets once (conv only);
# the small stem drops those halvings.
STEM_HALVINGS = {"resnet": 2, "shufflenet": 2, "mobilenet": 1}
BODY_HALVINGS = {"resnet": 3, "shufflenet": 3, "mobilenet": 4}


def family(arch: str) -> str:
    """resnet, shufflenet or mobilenet: the families whose stems and strides differ."""
    return next(name for name in ("resnet", "shufflenet", "mobilenet") if arch.startswith(name))


def final_map_size(arch: str, stem: str, image_size: int) -> int:
    """Side of the last feature map (what the last norms see) for a square input."""
    kind = family(arch)
    halvings = BODY_HALVINGS[kind] + (STEM_HALVINGS[kind] if resolve_stem(stem, image_size) == "imagenet" else 0)
    size = image_size
    for _ in range(halvings):
        size = -(-size // 2)
    return size


# --- ShuffleNet v1 (Zhang et al., 2017) ---------------------------------------------------------
SHUFFLENET_V1_STAGE2 = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}  # Table 1 at 1x; stages 3, 4 double it
SHUFFLENET_V1_REPEATS = (4, 8, 4)  # a stride-2 unit, then 3 / 7 / 3 units (Table 1)
# Conv1's channels by width ("ShuffleNet s x" scales the filters of 1x by s). The paper gives 24 at 1x
# only; these are its authors' released models' (megvii-model/ShuffleNet-Series), whose 1.5x keeps 24:
# with them 1.5x and 2x (g=3) cost the 292 and 524 M multiply-adds of the paper's Table 5.
SHUFFLENET_V1_STEMS = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
SHUFFLENET_V1_MULTS = tuple(SHUFFLENET_V1_STEMS)


def _nearest_multiple(value: float, step: int) -> int:
    return max(step, int(value / step + 0.5) * step)


def shufflenet_v1_channels(groups: int, width_mult: float) -> tuple[int, tuple[int, int, int]]:
    """(Conv1 channels, stage 2-4 output channels) of ShuffleNet v1 with `groups` at `width_mult`.

    At 1x these are Table 1's, and for groups 3 and 8 at every width the released models'. Other
    scaled widths are rounded so that every grouped 1x1 splits evenly: a stage width to the nearest
    multiple of 4 x groups (its bottleneck is a quarter of it), Conv1 to a multiple of groups (the
    first unit's branch makes stage width minus Conv1's channels). So 0.5x with g=2 or 4 has 104 or
    144 channels in stage 2 where s x Table 1 says 100 or 136, and costs 41 rather than 38 M.
    """
    stem = _nearest_multiple(SHUFFLENET_V1_STEMS[width_mult], groups)
    stage2 = _nearest_multiple(SHUFFLENET_V1_STAGE2[groups] * width_mult, 4 * groups)
    return stem, (stage2, 2 * stage2, 4 * stage2)


# --- Multiply-adds without torch: what `orch submit ablation` compares its cells by ---------------
# The ResNet paper's Table 1: blocks per stage (conv2_x .. conv5_x).
RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3),
                 "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
# torchvision's nets at 224 px and 1000 classes, by width multiplier, as shared.models.count_macs
# counts them (tests/shared/test_complexity.py keeps this table honest).
MOBILE_MACS_224: dict[str, dict[float, int]] = {
    "mobilenet_v2": {0.35: 59_285_808, 0.5: 97_131_840, 0.75: 209_069_792, 1.0: 300_774_272, 1.3: 509_374_560,
                     1.4: 582_195_824},
    "shufflenet_v2": {0.5: 40_476_448, 1.0: 144_907_992, 1.5: 295_759_392, 2.0: 583_253_464},
    "mobilenet_v3_small": {1.0: 56_510_400},
    "mobilenet_v3_large": {1.0: 216_589_760},
}
# Their heads, which do not scale with the image: (MACs of a hidden FC layer, the classifier's inputs at
# width 1.0; wider nets widen it).
MOBILE_HEADS: dict[str, tuple[int, int]] = {"mobilenet_v2": (0, 1280), "mobilenet_v3_small": (576 * 1024, 1024),
                                            "mobilenet_v3_large": (960 * 1280, 1280), "shufflenet_v2": (0, 1024)}


def _halve(size: int) -> int:
    return -(-size // 2)


def resnet_macs(arch: str, groups: int, width_per_group: int, *, small_stem: bool, image_size: int,
                num_classes: int) -> int:
    """Convolutions and the classifier of a ResNet as shared.models builds it (the stride on the first
    1x1 of a downsampling bottleneck), counted per layer; attention adds under 0.2% and is left out."""
    bottleneck = arch in ("resnet50", "resnet101", "resnet152")
    size = image_size if small_stem else _halve(image_size)
    macs = size * size * 64 * 3 * (9 if small_stem else 49)
    size = size if small_stem else _halve(size)
    inputs = 64
    for stage, blocks in enumerate(RESNET_BLOCKS[arch]):
        planes = 64 * 2 ** stage
        out, inner = (4 * planes, planes * width_per_group // 64 * groups) if bottleneck else (planes, planes)
        for index in range(blocks):
            if stage and not index:
                size = _halve(size)
            if bottleneck:
                per_pixel = inputs * inner + 9 * inner * inner // groups + inner * out
            else:
                per_pixel = 9 * inputs * planes + 9 * planes * planes
            shortcut = inputs * out if (stage and not index) or inputs != out else 0
            macs += size * size * (per_pixel + shortcut)
            inputs = out
    return macs + inputs * num_classes


def shufflenet_v1_macs(groups: int, width_mult: float, *, small_stem: bool, image_size: int,
                       num_classes: int) -> int:
    """ShuffleNet v1's convolutions and classifier, counted per layer (as in the paper's Table 1)."""
    stem, stages = shufflenet_v1_channels(groups, width_mult)
    size = image_size if small_stem else _halve(image_size)
    macs = size * size * 27 * stem
    size = size if small_stem else _halve(size)
    inputs = stem
    for stage, (width, repeats) in enumerate(zip(stages, SHUFFLENET_V1_REPEATS, strict=True)):
        mid = width // 4
        for index in range(repeats):
            first_groups = 1 if stage == 0 and index == 0 else groups  # the paper's ungrouped first 1x1
            macs += size * size * inputs * mid // first_groups
            if index == 0:
                size = _halve(size)
            branch = width - inputs if index == 0 else width
            macs += size * size * (9 * mid + mid * branch // groups)
            inputs = width
    return macs + inputs * num_classes


def mobile_macs(arch: str, width_mult: float, *, small_stem: bool, image_size: int, num_classes: int) -> int:
    """torchvision's MobileNets and ShuffleNet v2 from MOBILE_MACS_224: linear between the tabled
    widths; the body scaled by the area of its maps at each of the five resolutions (these nets
    spread their work about evenly over them; the small stem skips the stem's halvings), the head
    by the class count."""
    table = sorted(MOBILE_MACS_224[arch].items())
    below = max(((w, m) for w, m in table if w <= width_mult), default=table[0])
    above = min(((w, m) for w, m in table if w >= width_mult), default=table[-1])
    share = 0.0 if above[0] == below[0] else (width_mult - below[0]) / (above[0] - below[0])
    hidden, inputs = MOBILE_HEADS[arch]
    inputs = int(inputs * max(1.0, width_mult))
    body = below[1] + share * (above[1] - below[1]) - hidden - inputs * 1000
    return int(body * _area_ratio(arch, small_stem, image_size)) + hidden + inputs * num_classes


def _area_ratio(arch: str, small_stem: bool, image_size: int) -> float:
    """Mean over the net's resolutions of (its map area / the map area at 224 px)."""
    kind = family(arch)
    levels = STEM_HALVINGS[kind] + BODY_HALVINGS[kind]
    skipped = STEM_HALVINGS[kind] if small_stem else 0
    ratios, size, full = [], image_size, 224
    for level in range(levels):
        full = _halve(full)
        size = size if level < skipped else _halve(size)
        ratios.append((size / full) ** 2)
    return sum(ratios) / levels
