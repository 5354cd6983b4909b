"""The engine's progress callback: what a job's process tells `orch status` (worker/progress.py writes it)."""
from __future__ import annotations

from collections.abc import Callable

# (phase, epoch, images done, images in the pass) after each batch: "decoding" (epoch None: before
# any epoch), "training", "validation" or "scoring" (epoch None)
Progress = Callable[[str, int | None, int, int], None]
ImagesDone = Callable[[int, int], None]  # (done, total) of one pass


def in_phase(on_progress: Progress | None, phase: str, epoch: int | None = None) -> ImagesDone | None:
    """`on_progress` for one pass, as the decoder and the inference loop call it; None without one."""
    if on_progress is None:
        return None
    return lambda done, total: on_progress(phase, epoch, done, total)
