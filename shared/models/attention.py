"""Attention modules for residual branches: SE (Hu et al., 2018) and CBAM (Woo et al., 2018).

Both rescale a branch's output before it is added to the shortcut. SE reuses torchvision's
SqueezeExcitation (global average pool, two 1x1 convs with biases: the paper's two FC layers).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from shared.models.norms import NORM_LAYERS

SPATIAL_KERNEL = 7  # CBAM's spatial attention: a 7x7 conv over the channel-max and channel-mean maps


class ChannelGate(nn.Module):
    """CBAM's channel attention: avg- and max-pooled descriptors through one shared MLP, summed."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.mlp(x.mean(dim=(2, 3), keepdim=True)) + self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(pooled)


class SpatialGate(nn.Module):
    """CBAM's spatial attention: a 7x7 conv and a norm over [channel-max, channel-mean] maps.

    The paper's code normalises this one-channel map with BatchNorm; here the net's own norm does
    (gn becomes GroupNorm(1, 1): one channel cannot be split into 32 groups).
    """

    def __init__(self, norm: str):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, SPATIAL_KERNEL, padding=SPATIAL_KERNEL // 2, bias=False)
        self.norm = NORM_LAYERS["ln" if norm == "gn" else norm](1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.norm(self.conv(maps)))


class CBAM(nn.Sequential):
    """Channel attention, then spatial attention (the paper's sequential order)."""

    def __init__(self, channels: int, reduction: int, norm: str):
        super().__init__(ChannelGate(channels, reduction), SpatialGate(norm))


def make_attention(kind: str, channels: int, reduction: int, norm: str) -> nn.Module:
    """The module for attention `kind` on a branch of `channels` outputs (none: an identity)."""
    if kind == "se":
        squeeze: nn.Module = SqueezeExcitation(channels, channels // reduction)
        return squeeze
    if kind == "cbam":
        return CBAM(channels, reduction, norm)
    return nn.Identity()
