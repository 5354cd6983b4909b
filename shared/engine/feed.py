"""Batches from the decode cache to the device: uint8 on the wire, augmented and normalised there.

On a GPU the host work of a step (gathering the batch's rows from the memory-mapped cache and pinning
them) runs on a background thread one batch ahead, and the pinned uint8 batch is copied with
`non_blocking`, so the GPU never waits for the host between steps. A uint8 image is a quarter of its
float32 self on the bus; the float conversion happens on the device. On the CPU there is no bus and
no idle core: the gather runs inline (a thread would only compete with the training step for the
same cores).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from shared.data.images import ImageSet

Batch = tuple[torch.Tensor, torch.Tensor | None]


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device: asynchronous from pinned memory on CUDA, a no-op on the CPU."""
    if device.type != "cuda":
        return tensor
    if not tensor.is_pinned():
        tensor = tensor.pin_memory()  # torch's caching host allocator reuses the block next step
    return tensor.to(device, non_blocking=True)


def _gather(images: ImageSet, positions: np.ndarray, pin: bool) -> Batch:
    batch, labels = images.batch(positions)
    if pin:
        batch = batch.pin_memory()
        labels = labels.pin_memory() if labels is not None else None
    return batch, labels


def device_batches(images: ImageSet, batches: Iterable[np.ndarray], device: torch.device) -> Iterator[Batch]:
    """(uint8 NHWC images, int64 labels or None) on `device`, one per entry of `batches`."""
    if device.type != "cuda":
        for positions in batches:
            yield images.batch(positions)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="orch-feed") as pool:
        pending: Future[Batch] | None = None
        for positions in batches:
            ahead = pool.submit(_gather, images, positions, True)
            if pending is not None:
                yield _upload(pending.result(), device)
            pending = ahead
        if pending is not None:
            yield _upload(pending.result(), device)


def _upload(batch: Batch, device: torch.device) -> Batch:
    images, labels = batch
    return to_device(images, device), None if labels is None else to_device(labels, device)
