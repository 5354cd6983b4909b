"""Batched inference over an ImageSet: validation during training, and scoring."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.data.augment import to_input
from shared.data.images import ImageSet
from shared.engine.feed import device_batches
from shared.engine.precision import Precision
from shared.engine.progress import ImagesDone

# Inference keeps no activations for a backward pass, so validation runs at twice the training
# batch: fewer, larger kernels (on a GPU most of all) in the same memory.
VAL_BATCH_FACTOR = 2


def logits(model: nn.Module, images: ImageSet, batch_size: int, prec: Precision, device: torch.device,
           on_images: ImagesDone | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(positions, fp32 logits) for consecutive batches of `images`, under inference_mode; `on_images`
    is told (images done, of) once the caller has taken each batch (a long pass's progress)."""
    model.eval()
    spans = [np.arange(start, min(start + batch_size, len(images))) for start in range(0, len(images), batch_size)]
    with torch.inference_mode():
        for positions, (batch, _) in zip(spans, device_batches(images, spans, device), strict=True):
            x = to_input(batch, channels_last=prec.channels_last)
            with prec.autocast(device):
                out = model(x)
            yield positions, out.float()
            if on_images is not None:
                on_images(int(positions[-1]) + 1, len(images))


@dataclass(frozen=True)
class Evaluation:
    loss: float  # mean cross-entropy
    accuracy: float
    hits: np.ndarray  # bool per image, in the set's order: which ones the model got right


def evaluate(model: nn.Module, images: ImageSet, batch_size: int, prec: Precision,
             device: torch.device, on_images: ImagesDone | None = None) -> Evaluation:
    """Loss, accuracy and per-image hits on a labelled set, with one host sync at the end; `on_images`:
    as logits' (a long validation pass's progress)."""
    if images.labels is None:
        raise ValueError("evaluate needs a labelled ImageSet")
    labels = torch.from_numpy(images.labels).to(device)
    loss_sum = torch.zeros((), device=device)
    hits = []
    for positions, out in logits(model, images, batch_size, prec, device, on_images):
        y = labels[positions[0]:positions[-1] + 1]
        loss_sum += F.cross_entropy(out, y, reduction="sum")
        hits.append(out.argmax(1) == y)
    n = len(images)
    right = torch.cat(hits).cpu().numpy() if hits else np.zeros(0, dtype=bool)
    return Evaluation(float(loss_sum.item()) / n, float(right.sum()) / n, right)


def probabilities(model: nn.Module, images: ImageSet, batch_size: int, prec: Precision,
                  device: torch.device, on_images: ImagesDone | None = None) -> np.ndarray:
    """Softmax probabilities, n x classes float32, in the order of `images`; `on_images`: as logits'
    (a shard's progress)."""
    parts = []
    for _, out in logits(model, images, batch_size, prec, device, on_images):
        parts.append(torch.softmax(out, dim=1).cpu())
    return torch.cat(parts).numpy()
