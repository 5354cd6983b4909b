"""`score(checkpoint, folder)`: a scoring run's model inference, batched over a numbered or labelled folder."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from shared.config import load_settings
from shared.data.augment import to_input
from shared.data.images import ImageSet, load_listing, remap_labels
from shared.data.layouts import Listing, scan
from shared.engine.checkpoint import load_checkpoint, load_for_inference
from shared.engine.infer import probabilities
from shared.engine.precision import Precision, default_device, resolve
from shared.engine.progress import Progress, in_phase
from shared.engine.quantize import calibration_positions, quantize
from shared.errors import DataError


def score(checkpoint: Path, folder: Path, *, batch_size: int = 64, precision: str = "auto",
          items: list[tuple[int, Path]] | None = None, labels: dict[int, int] | None = None,
          cache_dir: Path | None = None, listing: Listing | None = None,
          before_inference: Callable[[], Any] | None = None,
          on_progress: Progress | None = None) -> dict[str, Any]:
    """Predict every image of `folder` (or just `items`, a shard's (id, path) pairs); `listing` is
    the folder's scan when the caller has it already (a shard scans it to check the pinned inputs);
    `before_inference` runs once the model and the images are ready, before the first prediction
    (a shard checks there that the checkpoint it hashed meanwhile is the one pinned); `on_progress` is
    told each batch decoded and predicted (a shard's progress, shared/engine/progress.py).

    Returns ids (numeric order for a numbered folder; positions for a labelled one), labels
    (predicted class index), probs (n x classes float32 array), classes, accuracy (against `labels`,
    else the folder's own labels, else None), n, the precision that ran (with int8_agreement
    and int8_fallback when int8 was asked for: see quantize.py), and timings (seconds of each stage:
    load_s, decode_s, int8_s, verify_s with `before_inference`, infer_s).
    """
    clock = Stopwatch()
    model, spec, classes = load_for_inference(Path(checkpoint))
    full = listing if listing is not None else scan(Path(folder))
    part = _listing(full, items)
    truth = part.labels and remap_labels(part, classes)
    cache = Path(cache_dir) if cache_dir is not None else load_settings().cache_dir
    size = spec.model.image_size
    device = default_device()
    prec = resolve(precision, device, scoring=True, cache_dir=cache)

    def fallback() -> Precision:  # if int8 fails its check: what the job trained in (its checkpoint says,
        # where written since it does; else what its spec trains in here), or fp32 when int8 was asked for
        if precision != "auto":
            return resolve("fp32", device)
        trained_in = load_checkpoint(Path(checkpoint), mmap=True).get("precision")
        return resolve(spec.precision, device, cache_dir=cache, trained_in=trained_in)
    clock.lap("load_s")
    # Decoding first, then the int8 conversion. Side by side they were no faster: on two threads 15%
    # slower (the conversion is Python, and the decoders take the GIL per image); with the decoding
    # in a forked process, the same (both want both cores: the conversion's calibration runs on two).
    images = load_listing(part, size, cache, labels=truth or None, progress=in_phase(on_progress, "decoding"))
    clock.lap("decode_s")
    model, prec, int8 = _maybe_int8(model.to(device), prec, fallback, full, size, cache,
                                    reload=lambda: load_for_inference(Path(checkpoint))[0].to(device))
    clock.lap("int8_s")
    if before_inference is not None:
        before_inference()
        clock.lap("verify_s")  # waiting for the caller's check (a shard's checkpoint hash), not inference
    probs = probabilities(model, images, batch_size, prec, device, in_phase(on_progress, "scoring"))
    clock.lap("infer_s")
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    known = labels if labels is not None else (dict(zip(images.ids, truth, strict=True)) if truth else None)
    return {"ids": list(images.ids), "labels": [int(p) for p in predicted], "probs": probs,
            "classes": classes, "accuracy": _accuracy(images, predicted, known, len(classes)),
            "n": len(images), "precision": prec.name, **int8, "timings": clock.laps}


class Stopwatch:
    """Seconds per stage: `lap(name)` records the time since the previous lap (or the start)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def _maybe_int8(model: nn.Module, prec: Precision, fallback: Callable[[], Precision], full: Listing, size: int,
                cache: Path, reload: Callable[[], nn.Module]) -> tuple[nn.Module, Precision, dict[str, Any]]:
    """The int8 network and its check, or the fp32 model, `fallback()` and why, when `prec` asks for int8
    (`reload` gives the fp32 model again: the conversion takes the one it is given)."""
    if prec.name != "int8":
        return model, prec, {}
    sample = _listing(full, [(full.ids[p], full.files[p]) for p in calibration_positions(len(full.files))])
    try:
        batch, _ = load_listing(sample, size, cache).batch(np.arange(len(sample.files)))
    except DataError:  # a corrupt file in another shard's slice: that shard reports it, not this one
        return model, fallback(), {"int8_agreement": None, "int8_fallback": "int8: a calibration image is unreadable"}
    result = quantize(model, to_input(batch, channels_last=prec.channels_last))
    check = {"int8_agreement": result.agreement, "int8_fallback": result.reason}
    if result.model is None:
        return reload(), fallback(), check
    return result.model, prec, check


def _listing(full: Listing, items: list[tuple[int, Path]] | None) -> Listing:
    """The folder's listing, or the slice `items` names (keeping the folder's labels where it has them)."""
    folder = full.folder
    if items is None:
        return full
    ordered = sorted(items, key=lambda item: item[0])
    ids = [i for i, _ in ordered]
    labels = None
    if full.labels is not None:
        by_id = dict(zip(full.ids, full.labels, strict=True))
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DataError(f"{folder}: has no image with id {missing[0]}")
        labels = [by_id[i] for i in ids]
    files = [p if isinstance(p, Path) else Path(p) for _, p in ordered]  # Path(a Path) parses it again: 10 ms for 2,000
    return Listing(folder, full.layout, files, labels, full.classes, ids)


def _accuracy(images: ImageSet, predicted: np.ndarray, known: dict[int, int] | None,
              n_classes: int) -> float | None:
    if known is None:
        return None
    pairs = [(int(p), known[i]) for i, p in zip(images.ids, predicted, strict=True) if i in known]
    if not pairs:
        raise DataError("labels: none of the scored ids has a label")
    bad = next((y for _, y in pairs if not 0 <= y < n_classes), None)
    if bad is not None:
        raise DataError(f"labels: class index {bad} is out of range for {n_classes} classes")
    return sum(p == y for p, y in pairs) / len(pairs)
