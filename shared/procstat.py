"""Linux's /proc/PID/stat, read once here: the lease holder's liveness (shared/store/holder.py), a job
process's CPU time (worker/stall.py) and the tests' process checks all parse it the same way."""
from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, so [0] is proc(5)'s field 3 (the state)
    and [n] its field n + 3; None where the process does not exist or the kernel does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()  # past the command name, which may hold spaces and parentheses
