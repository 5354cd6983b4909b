"""Helpers for the data and engine tests: tiny images, tiny specs."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shared.spec import ModelSpec, TrainSpec


def write_image(path: Path, size: tuple[int, int] = (20, 16), seed: int = 0, mode: str = "RGB") -> Path:
    """A small random image; JPEG or PNG by the suffix."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


def tiny_spec(data: Path, val: Path | None = None, **overrides: object) -> TrainSpec:
    """resnet18 at 32 px with the ImageNet stem: 32 -> 8 px after the stem, so a step takes milliseconds."""
    fields: dict[str, object] = dict(model=ModelSpec(arch="resnet18", image_size=32, stem="imagenet"),
                                     data=str(data), val=None if val is None else str(val),
                                     epochs=2, batch_size=16, lr=1e-3, precision="fp32")
    fields.update(overrides)
    return TrainSpec(**fields)  # type: ignore[arg-type]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread while training in a test.

    Test processes share the CPU with each other; with more OpenMP threads than free cores each
    parallel region waits on a descheduled thread, and a tiny model trains many times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_untrained_checkpoint(path: Path, classes: list[str], image_size: int = 32) -> Path:
    """An untrained resnet18 in orch's checkpoint format: scoring needs weights, not skill."""
    import torch

    from shared.engine.checkpoint import model_for, save_atomic

    torch.manual_seed(0)
    spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=image_size), data="/unused")
    save_atomic({"model": model_for(spec, classes).state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 1,
                 "rng": {}, "spec": spec.model_dump(mode="json"), "classes": classes, "history": [],
                 "best_val_acc": 0.5, "best_epoch": 1}, path)
    return path
