"""Data: folder layouts, the synthetic set, the decode cache, augmentation.

Importing this package loads neither torch nor PIL: the CLI checks folders at submit time with
`check_folder`, `list_numbered` and `read_labels_csv`. The torch-side names load on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from shared.data.layouts import (
    IMAGE_SUFFIXES,
    Listing,
    check_folder,
    list_numbered,
    read_labels_csv,
    scan,
    scan_labelled,
    split_indices,
    unread_images_note,
    unsplit_classes,
    val_classes_note,
)

# Functions only: a submodule's name would be shadowed by the module object once it is imported.
_LAZY = {
    "write_synthetic": "shared.data.synth",
    "load_or_build": "shared.data.cache",
    "cache_path": "shared.data.cache",
    "ImageSet": "shared.data.images",
    "TrainData": "shared.data.images",
    "load_listing": "shared.data.images",
    "load_train_data": "shared.data.images",
    "remap_labels": "shared.data.images",
}

__all__ = ["IMAGE_SUFFIXES", "Listing", "check_folder", "list_numbered", "read_labels_csv", "scan",
           "scan_labelled", "split_indices", "unread_images_note", "unsplit_classes", "val_classes_note", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shared.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
