"""Image sets on top of the decode cache: what the engine trains on, evaluates and scores."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.data.cache import load_or_build
from shared.data.layouts import Listing, class_index, scan_labelled, split_indices
from shared.errors import DataError


@dataclass(frozen=True)
class ImageSet:
    """Rows of a cached uint8 NHWC array, with their labels (None when unlabelled) and ids."""

    array: np.ndarray
    rows: np.ndarray  # int64 rows of `array`
    labels: np.ndarray | None  # int64 class index per row of this set
    ids: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(uint8 NHWC images, int64 labels or None) at `positions` of this set."""
        images = torch.from_numpy(self.array[self.rows[positions]])
        labels = None if self.labels is None else torch.from_numpy(self.labels[positions])
        return images, labels


@dataclass(frozen=True)
class TrainData:
    train: ImageSet
    val: ImageSet
    classes: list[str]


def load_listing(listing: Listing, size: int, cache_dir: Path, *, labels: list[int] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ImageSet:
    """Decode (or reuse the cache of) every file of `listing` as one ImageSet; `progress` is told
    (images decoded, of) while it decodes."""
    array, _ = load_or_build(listing.files, size, cache_dir, folder=listing.folder, progress=progress)
    labels = listing.labels if labels is None else labels
    return ImageSet(array, np.arange(len(listing.files), dtype=np.int64),
                    None if labels is None else np.asarray(labels, dtype=np.int64), list(listing.ids))


def load_train_data(data: Path, val: Path | None, val_fraction: float, size: int, cache_dir: Path,
                    progress: Callable[[int, int], None] | None = None) -> TrainData:
    """The training and validation sets; every folder problem is a DataError, raised before decoding.
    `progress`: as load_listing's, for each folder decoded."""
    train_listing = scan_labelled(Path(data))
    val_listing = scan_labelled(Path(val), least=1) if val is not None else None
    classes = train_listing.classes
    if val_listing is None:
        full = load_listing(train_listing, size, cache_dir, progress=progress)
        train_idx, val_idx = split_indices(train_listing, val_fraction)
        return TrainData(_subset(full, train_idx), _subset(full, val_idx), classes)
    val_labels = remap_labels(val_listing, classes)
    return TrainData(load_listing(train_listing, size, cache_dir, progress=progress),
                     load_listing(val_listing, size, cache_dir, labels=val_labels, progress=progress), classes)


def remap_labels(listing: Listing, classes: list[str]) -> list[int]:
    """`listing`'s labels as indices into `classes` (the model's), matched by class name."""
    index = class_index(classes)
    unknown = [c for c in listing.classes if c not in index]
    if unknown:
        raise DataError(f"{listing.folder}: class {unknown[0]!r} is not one of the model's classes "
                        f"({', '.join(classes)})")
    return [index[listing.classes[y]] for y in (listing.labels or [])]


def _subset(images: ImageSet, positions: list[int]) -> ImageSet:
    pos = np.asarray(positions, dtype=np.int64)
    labels = None if images.labels is None else images.labels[pos]
    return ImageSet(images.array, images.rows[pos], labels, [images.ids[i] for i in positions])
