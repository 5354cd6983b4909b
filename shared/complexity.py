"""Complexity arithmetic that needs no torch: the ResNeXt width rule and the stem choice.

The CLI validates specs (and shows the width actually used) without importing torch, so the rule
that picks `width_per_group` lives here as plain integer arithmetic.
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
