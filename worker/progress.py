"""A running job's place inside its work (`jobs.progress`), written through its lease.

An epoch of real data, or a scoring shard of a large test folder, runs for minutes: `--wait` and
`orch status` said nothing until it ended. The job's process writes where it is; the readers
(orchestrator/progress.py) show it.
"""
from __future__ import annotations

import time

from shared.errors import StaleLease
from shared.store import Lease

PROGRESS_EVERY_S = 5.0  # a write through the lease (it renews the heartbeat too): cheap beside a step


class StepProgress:
    """Writes the job's place inside its epoch (`phase` "training") or its scoring pass ("scoring",
    as epoch 1 of 1) at most every PROGRESS_EVERY_S. The first write comes after PROGRESS_EVERY_S,
    so an epoch or a shard of seconds writes none."""

    def __init__(self, lease: Lease, batch_size: int, every_s: float = PROGRESS_EVERY_S,
                 phase: str = "training"):
        self.lease, self.batch_size, self.every_s, self.phase = lease, batch_size, every_s, phase
        self.epoch, self.epoch_started, self.written, self.first_step = 0, 0.0, 0.0, 0

    def __call__(self, epoch: int, step: int, steps: int) -> None:
        now = time.monotonic()
        if epoch != self.epoch:
            # the clock starts at the epoch's first step seen: the rate counts the steps after it
            self.epoch, self.epoch_started, self.written, self.first_step = epoch, now, now, step
            return
        if now - self.written < self.every_s:
            return
        self.written = now
        rate = (step - self.first_step) * self.batch_size / max(now - self.epoch_started, 1e-6)
        try:
            self.lease.update(progress={"phase": self.phase, "epoch": epoch, "step": step, "steps": steps,
                                        "images_per_s": round(rate, 1), "at": round(time.time(), 1)})
        except StaleLease:
            raise
        except Exception:  # only a display: a store that did not answer is the heartbeat's to notice
            pass
