"""A running job's place inside its work (`jobs.progress`), written through its lease.

An epoch of real data, its validation pass, a scoring shard of a large test folder or the first
decode of a big folder runs for minutes: `--wait` and `orch status` said nothing until it ended.
The job's process writes where it is; the readers (orchestrator/progress.py) show it.
"""
from __future__ import annotations

import time

from shared.errors import StaleLease
from shared.store import Lease

PROGRESS_EVERY_S = 5.0  # a write through the lease (it renews the heartbeat too): cheap beside a step


class StepProgress:
    """The engine's progress callback (shared/engine/trainer.py `Progress`): told (phase, epoch,
    images done, images in the pass) after each batch of training ("training"), validation
    ("validation"), scoring ("scoring") or decoding ("decoding"; no epoch), it writes the place at
    most every PROGRESS_EVERY_S. The first write comes after PROGRESS_EVERY_S, so a pass of seconds
    writes none; a pass that wrote any clears it at its end, so a pass that follows and writes none
    (a short epoch after a long first decode) is not shown as the one before."""

    def __init__(self, lease: Lease, every_s: float = PROGRESS_EVERY_S):
        self.lease, self.every_s = lease, every_s
        self.now_in: tuple[str, int | None] | None = None
        self.started = self.written = 0.0
        self.first_done = self.last_done = 0
        self.wrote = False

    def __call__(self, phase: str, epoch: int | None, done: int, total: int) -> None:
        now = time.monotonic()
        if (phase, epoch) != self.now_in or done <= self.last_done:
            # a new pass (a second folder's decode counts from 0 again): its clock starts at the
            # first batch seen, and the rate counts the images after it
            self.now_in, self.started, self.written, self.first_done, self.wrote = (phase, epoch), now, now, done, False
            self.last_done = done
            return
        self.last_done = done
        if done >= total:
            if self.wrote:
                self._write(None)
            return
        if now - self.written < self.every_s:
            return
        self.written, self.wrote = now, True
        rate = (done - self.first_done) / max(now - self.started, 1e-6)
        self._write({"phase": phase, "epoch": epoch, "done": done, "total": total, "images_per_s": round(rate, 1)})

    def _write(self, progress: dict[str, object] | None) -> None:
        try:
            self.lease.update_progress(progress)
        except StaleLease:
            raise
        except Exception:  # only a display: a store that did not answer is the heartbeat's to notice
            pass
