"""ResNet and ResNeXt on torchvision's ResNet, with the ResNet paper's strides and optional attention.

Depths follow the ResNet paper's Table 1 (block counts, and the stride-2 on the first 1x1 of a
downsampling bottleneck, which gives its 3.8/7.6/11.3 G multiply-adds); ResNeXt is the same net with
`groups` (cardinality) and the width per group of the ResNeXt paper's Table 2. SE or CBAM sits on
each residual branch, after its last norm and before the addition (SE paper Fig. 3, CBAM Fig. 3).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from shared.complexity import RESNET_BLOCKS
from shared.models.attention import make_attention
from shared.models.norms import NORM_LAYERS, init_norms
from shared.spec import BOTTLENECK_ARCHS, ModelSpec


class AttentionBasicBlock(BasicBlock):  # type: ignore[misc]  # torchvision is untyped
    """torchvision's BasicBlock with `attention` on the branch before the addition."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.attention: nn.Module = nn.Identity()  # set by build_resnet once the spec is known

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return self.relu(out + identity)  # type: ignore[no-any-return]


class AttentionBottleneck(Bottleneck):  # type: ignore[misc]
    """torchvision's Bottleneck with `attention` on the branch before the addition."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.attention: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attention(self.bn3(self.conv3(out)))
        return self.relu(out + identity)  # type: ignore[no-any-return]


def block_type(spec: ModelSpec) -> type[nn.Module]:
    """torchvision's own blocks without attention (the plain nets stay torchvision's, module for module)."""
    bottleneck = spec.arch in BOTTLENECK_ARCHS
    if spec.attention == "none":
        plain: type[nn.Module] = Bottleneck if bottleneck else BasicBlock
        return plain
    return AttentionBottleneck if bottleneck else AttentionBasicBlock


def build_resnet(spec: ModelSpec, *, small_stem: bool) -> nn.Module:
    model: nn.Module = ResNet(
        block_type(spec),
        list(RESNET_BLOCKS[spec.arch]),
        num_classes=spec.num_classes,
        groups=spec.groups,
        width_per_group=spec.built_width or 64,
        norm_layer=NORM_LAYERS[spec.norm_name],
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
    _attach_attention(model, spec)
    init_norms(model)
    return model


def _stride_on_first_1x1(model: nn.Module) -> None:
    """Move each downsampling bottleneck's stride from its 3x3 to its first 1x1 (ResNet paper).

    torchvision strides the 3x3, which costs 4.1 G multiply-adds for resnet50 instead of the
    paper's 3.8; parameters are the same either way.
    """
    for module in model.modules():
        if isinstance(module, Bottleneck) and module.conv2.stride != (1, 1):
            module.conv1.stride, module.conv2.stride = module.conv2.stride, (1, 1)


def _attach_attention(model: nn.Module, spec: ModelSpec) -> None:
    for block in model.modules():
        if isinstance(block, (AttentionBasicBlock, AttentionBottleneck)):
            last = block.conv3 if isinstance(block, Bottleneck) else block.conv2
            block.attention = make_attention(spec.attention, last.out_channels, spec.attention_reduction,
                                             spec.norm_name)
