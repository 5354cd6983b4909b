"""The synthetic generator: layouts, determinism, no colour shortcut, and learnability."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from shared.data import read_labels_csv, scan, scan_labelled, write_synthetic
from shared.errors import DataError

COUNTS = {"train": 24, "val": 8, "test": 10}


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("layout", ["flat", "folder"])
def test_layouts_read_back(tmp_path: Path, layout: str) -> None:
    n = write_synthetic(tmp_path, classes=["dog", "cat", "cow"], counts=COUNTS, size=24, layout=layout)
    assert n == 42
    train = scan_labelled(tmp_path / "train")
    assert train.layout == layout and train.classes == ["cat", "cow", "dog"]
    assert sorted(train.labels) == [0] * 8 + [1] * 8 + [2] * 8  # type: ignore[type-var]
    assert len(scan_labelled(tmp_path / "val").files) == 8
    test = scan(tmp_path / "test")
    assert test.layout == "numbered" and test.ids == list(range(10))
    labels = read_labels_csv(tmp_path / "test_labels.csv")
    assert sorted(labels) == list(range(10)) and set(labels.values()) <= {0, 1, 2}
    assert (tmp_path / "test_labels.csv").read_text().startswith("id,label\n")


def test_deterministic_by_seed(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_synthetic(tmp_path / name, classes=["cat", "dog"], counts=COUNTS, size=16, seed=seed)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_refuses_a_non_empty_folder_and_bad_classes(tmp_path: Path) -> None:
    write_synthetic(tmp_path, classes=["cat", "dog"], counts={"train": 2}, size=16)
    with pytest.raises(DataError, match="already holds files"):
        write_synthetic(tmp_path, classes=["cat", "dog"], counts={"train": 2}, size=16)
    for bad in (["cat"], ["cat", "cat"], ["cat", "d.og"], ["cat", "7"]):
        with pytest.raises(DataError, match="classes"):
            write_synthetic(tmp_path / "x", classes=bad, counts={"train": 2}, size=16)


def test_mean_colour_does_not_tell_the_classes_apart(tmp_path: Path) -> None:
    from PIL import Image

    write_synthetic(tmp_path, classes=["cat", "dog"], counts={"train": 400}, size=16)
    listing = scan_labelled(tmp_path / "train")
    means = np.stack([np.asarray(Image.open(f), dtype=np.float32).mean(axis=(0, 1)) for f in listing.files])
    labels = np.asarray(listing.labels)
    gap = np.abs(means[labels == 0].mean(0) - means[labels == 1].mean(0))
    # 200 images a class: the class means differ by sampling noise only, a fraction of the spread
    assert (gap < 0.25 * means.std(0)).all(), (gap, means.std(0))


@pytest.mark.slow
def test_a_tiny_resnet_learns_it(tmp_path: Path) -> None:
    """Learnability: resnet18 at 32 px (ImageNet stem, ~37 M multiply-adds an image) passes 90% within 4 epochs."""
    from shared.engine import train
    from tests.shared.data_helpers import one_thread, tiny_spec

    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": 600, "val": 100}, size=32, seed=2)
    spec = tiny_spec(tmp_path / "d" / "train", tmp_path / "d" / "val", epochs=4, batch_size=32, lr=1e-3)
    seen: list[dict[str, float]] = []
    with one_thread():
        result = train(spec, tmp_path / "w", seen.append, cache_dir=tmp_path / "cache")
    assert seen[0]["val_acc"] < 0.9  # it takes a few epochs: no shortcut
    assert result["best_val_acc"] >= 0.9, seen
