"""ShuffleNet v1 (Zhang et al., 2017, "ShuffleNet: An Extremely Efficient Convolutional Neural Network
for Mobile Devices"), built as its Table 1 and Fig. 2 describe.

A unit is a 1x1 group conv to a bottleneck of a quarter of the unit's output channels, a channel
shuffle, a 3x3 depthwise conv (no ReLU after it), and a 1x1 group conv; stride-1 units add the input,
the stride-2 unit that opens each stage concatenates a 3x3 average-pooled input. Stage 2's first
1x1 is not grouped: its 24 input channels are too few (paper, Sec. 3.3). torchvision has no
ShuffleNet v1; its ShuffleNet v2 code supplies the channel shuffle.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.shufflenetv2 import channel_shuffle

from shared.complexity import SHUFFLENET_V1_REPEATS, shufflenet_v1_channels
from shared.models.norms import NormLayer, init_norms


class ShuffleUnit(nn.Module):
    """Fig. 2 (b) for stride 1 and (c) for stride 2."""

    def __init__(self, inputs: int, outputs: int, *, groups: int, stride: int, first_groups: int,
                 norm_layer: NormLayer):
        super().__init__()
        mid = outputs // 4
        branch = outputs - inputs if stride == 2 else outputs  # stride 2: the pooled input fills the rest
        self.groups = groups
        self.compress = nn.Sequential(nn.Conv2d(inputs, mid, 1, groups=first_groups, bias=False), norm_layer(mid),
                                      nn.ReLU(inplace=True))
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), norm_layer(mid))
        self.expand = nn.Sequential(nn.Conv2d(mid, branch, 1, groups=groups, bias=False), norm_layer(branch))
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compress(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.expand(self.depthwise(out))
        if self.shortcut is not None:
            return torch.cat([self.shortcut(x), F.relu(out)], dim=1)
        return F.relu(out + x)


class ShuffleNetV1(nn.Module):
    """Table 1: Conv1 (3x3, stride 2), MaxPool, stages 2-4 of 4/8/4 units, global pool, FC."""

    def __init__(self, groups: int, width_mult: float, num_classes: int, norm_layer: NormLayer):
        super().__init__()
        stem, widths = shufflenet_v1_channels(groups, width_mult)
        self.conv1 = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), norm_layer(stem), nn.ReLU(inplace=True))
        self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        stages, inputs = [], stem
        for stage, (width, repeats) in enumerate(zip(widths, SHUFFLENET_V1_REPEATS, strict=True)):
            units = [ShuffleUnit(inputs if index == 0 else width, width, groups=groups, stride=2 if index == 0 else 1,
                                 first_groups=1 if stage == 0 and index == 0 else groups, norm_layer=norm_layer)
                     for index in range(repeats)]
            stages.append(nn.Sequential(*units))
            inputs = width
        self.stage2, self.stage3, self.stage4 = stages
        self.fc = nn.Linear(inputs, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)
        init_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(x.mean(dim=(2, 3)))  # type: ignore[no-any-return]
