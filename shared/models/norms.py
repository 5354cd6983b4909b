"""Norm layers by name, as torchvision's `norm_layer(num_channels)` argument takes them."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from shared.complexity import GN_GROUPS

NormLayer = Callable[[int], nn.Module]

# GroupNorm takes the group count first, hence partial.
NORM_LAYERS: dict[str, NormLayer] = {
    "bn": nn.BatchNorm2d,
    "ln": partial(nn.GroupNorm, 1),  # one group: LayerNorm over (C, H, W)
    "in": partial(nn.InstanceNorm2d, affine=True),
    "gn": partial(nn.GroupNorm, GN_GROUPS),
}
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm)


def init_norms(model: nn.Module) -> None:
    """Every norm starts as torchvision starts BatchNorm: weight 1, bias 0 (an identity affine)."""
    for module in model.modules():
        if isinstance(module, NORM_TYPES) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
