"""A learnable synthetic image set, so the demo and the tests need no download.

Each image is a soft ellipse of stripes on a noisy background. The class sets only the stripes'
orientation (a texture), mirror-symmetrically so that horizontal flips keep the class; every
colour, the ellipse's place and size, the stripes' period and phase are drawn the same way for
every class, so the mean colour says nothing about the class and a network must learn oriented
filters, which takes a ResNet a few epochs.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.errors import DataError

SPLITS = ("train", "val", "test")
JITTER = 0.25  # orientation jitter, as a fraction of the angle between neighbouring classes
NOISE = 16.0  # per-pixel noise, in 0..255 units
MIN_CONTRAST = 120.0  # distance between the two stripe colours, in RGB units


def check_classes(classes: list[str]) -> None:
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise DataError(f"--classes: need at least two distinct names, got {','.join(classes)!r}")
    bad = [c for c in classes if not c or "." in c or "/" in c or "\\" in c or c.isdigit()]
    if bad:
        raise DataError(f"--classes: {bad[0]!r} is not usable as a file-name prefix (no dots, slashes or bare numbers)")


def render(label: int, n_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of class `label`."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    # Class k's stripes lie at +-(k * step) from horizontal, up to vertical: a mirror image (the
    # flip augmentation) turns +a into -a, so the class must not depend on the angle's sign.
    step = (math.pi / 2) / (n_classes - 1)
    theta = (label + rng.uniform(-JITTER, JITTER)) * step * rng.choice((-1.0, 1.0))
    period = size * rng.uniform(0.12, 0.22)
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin(2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / period + phase)
    stripes = np.clip(wave * 2.0, -1.0, 1.0)[..., None] * 0.5 + 0.5
    c1, c2 = _contrasting_pair(rng)
    bg = rng.uniform(0, 255, 3).astype(np.float32)
    mask = _ellipse(x, y, size, rng)[..., None]
    img = bg * (1 - mask) + (c1 * stripes + c2 * (1 - stripes)) * mask
    img += rng.normal(0.0, NOISE, img.shape).astype(np.float32)
    image: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return image


def _contrasting_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two stripe colours far enough apart that the stripes stay visible under the noise."""
    while True:
        c1, c2 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        if np.linalg.norm(c1 - c2) >= MIN_CONTRAST:
            return c1, c2


def _ellipse(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A soft-edged ellipse mask in 0..1 at a random place, size and tilt."""
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    rx, ry = rng.uniform(0.3, 0.45, 2) * size
    tilt = rng.uniform(0, math.pi)
    u = (x - cx) * math.cos(tilt) + (y - cy) * math.sin(tilt)
    v = -(x - cx) * math.sin(tilt) + (y - cy) * math.cos(tilt)
    dist = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    mask: np.ndarray = np.clip((1.0 - dist) * min(rx, ry) + 0.5, 0.0, 1.0)
    return mask


def write_synthetic(out: Path, *, classes: list[str], counts: dict[str, int], size: int = 64,
          layout: str = "flat", seed: int = 0, progress: Callable[[int], None] | None = None) -> int:
    """Write OUT/train, OUT/val, OUT/test (numbered) and OUT/test_labels.csv; return images written.

    `counts` maps a split name to its image count; `progress(n)` is told each image written.
    Deterministic: the same arguments write the same bytes.
    """
    from PIL import Image  # PIL only when images are written; the CLI imports this module cheaply

    check_classes(classes)
    if layout not in ("flat", "folder"):
        raise DataError(f"layout: {layout!r} is not one of flat, folder")
    out = Path(out)
    check_empty(out, [s for s in SPLITS if counts.get(s)])
    written = 0
    for code, split in enumerate(SPLITS):
        labels = _balanced_labels(counts.get(split, 0), len(classes), seed, code)
        paths = [_path(out, split, layout, classes[y], i) for i, y in enumerate(labels)]
        for i, (label, path) in enumerate(zip(labels, paths, strict=True)):
            rng = np.random.default_rng([seed, code, i])
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(render(label, len(classes), size, rng)).save(path, quality=92)
            written += 1
            if progress:
                progress(1)
        if split == "test" and labels:
            lines = ["id,label"] + [f"{i},{y}" for i, y in enumerate(labels)]
            (out / "test_labels.csv").write_text("\n".join(lines) + "\n")
    return written


def _balanced_labels(n: int, n_classes: int, seed: int, code: int) -> list[int]:
    rng = np.random.default_rng([seed, code, 2**31])
    return [int(y) for y in rng.permutation(np.arange(n) % n_classes)]


def _path(out: Path, split: str, layout: str, cls: str, i: int) -> Path:
    if split == "test":
        return out / split / f"{i}.jpg"
    if layout == "folder":
        return out / split / cls / f"{i}.jpg"
    return out / split / f"{cls}.{i}.jpg"


def check_empty(out: Path, splits: list[str]) -> None:
    for split in splits:
        folder = out / split
        if folder.exists() and any(folder.iterdir()):
            raise DataError(f"{folder}: already holds files; write the synthetic set to an empty folder")
