"""A job's process that does no work: stopped (kill -STOP, a paused container) or deadlocked.

The worker's heartbeat goes on whatever its job's process does, so such a job stayed "running" for
ever, against "every job ends". What tells a stuck process from a slow one without instrumenting
every phase (decoding, validation, checkpoint writes) is the CPU time the kernel counts for it: a
process that is working uses some, one that is stopped or waiting on a lock that never comes uses
none. ORCH_STALL_TIMEOUT seconds (600) without any is a stall: the supervisor kills the process and
the attempt counts as a crash (requeued from the last checkpoint, failed after ORCH_MAX_ATTEMPTS).
"""
from __future__ import annotations

import os
import time

from shared.procstat import stat_fields

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (all its threads), or None where the kernel does not
    say (not Linux, or the process is gone): no stall is then ever called."""
    fields = stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: proc(5)'s 14, 15


class StallWatch:
    """`stalled()`: True once process `pid` has used no CPU for `after` seconds."""

    def __init__(self, pid: int, after: float):
        self.pid, self.after = pid, after
        self.cpu, self.since = cpu_seconds(pid), time.monotonic()

    def stalled(self) -> bool:
        cpu = cpu_seconds(self.pid)
        now = time.monotonic()
        if cpu is None or self.cpu is None or cpu > self.cpu:
            self.cpu, self.since = cpu, now
            return False
        return now - self.since >= self.after
