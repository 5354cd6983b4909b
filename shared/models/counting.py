"""What a spec builds, counted: parameters and multiply-adds on a weightless meta-device copy."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from shared.archs import RESNET_ARCHS, built_width_mult
from shared.complexity import resolve_stem
from shared.spec import ModelSpec

DESCRIBE_KEYS = ("arch", "groups", "width_per_group", "width_mult", "attention", "attention_reduction", "norm", "stem",
                 "params", "gmacs")


def describe(spec: ModelSpec, build: Callable[[ModelSpec], nn.Module]) -> dict[str, Any]:
    """DESCRIBE_KEYS for `spec`, each knob None where the architecture has no such knob; gmacs are
    giga multiply-adds for one image at spec.image_size (the papers' "FLOPs")."""
    resnet = spec.arch in RESNET_ARCHS
    with torch.device("meta"):
        model = build(spec)
    return {
        "arch": spec.arch,
        "groups": spec.groups if resnet or spec.arch == "shufflenet_v1" else None,
        "width_per_group": spec.built_width,
        "width_mult": built_width_mult(spec.arch, spec.width_mult),
        "attention": spec.attention if resnet else None,
        # rows of se at reduction 4 and 16 differed in params alone
        "attention_reduction": spec.attention_reduction if resnet and spec.attention != "none" else None,
        "norm": spec.norm_name,  # every architecture's own is BatchNorm
        # what `auto` chose at this image size: at 32 px two rows differed only in gmacs, with nothing to say why
        "stem": resolve_stem(spec.stem, spec.image_size),
        "params": sum(p.numel() for p in model.parameters()),
        "gmacs": round(count_macs(model, spec.image_size) / 1e9, 3),
    }


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-adds of one forward pass on one image, by PyTorch's own flop counter.

    FlopCounterMode counts conv and matmul FLOPs as 2 x MACs; norms, activations, pooling and the
    attention gates' elementwise products are not counted, as in the papers' tables.
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
    return int(counter.get_total_flops()) // 2
