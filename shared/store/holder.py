"""A lease's holder as a process that another process on the same machine can check is still there.

A worker killed with kill -9 (or by the out-of-memory killer, or a crash of Python itself) leaves its
job `running` in the store until its lease expires: ORCH_LEASE_TTL, 30 s by default, during which
nothing trains. On a GPU box with one worker per GPU, a sibling worker can see at once that the holder
is gone, and its sweeper takes the job over without waiting (shared/store/takeover.py).

The holder is written as BOOT/PIDNS/PID/START: the kernel's boot id, the pid namespace, the pid and
the process's start time in clock ticks since boot. A holder counts as gone only where all of these
prove it: the same boot and pid namespace as the reader (another machine, a container with its own
pids, or a machine rebooted since, is never judged: its lease expires as before), and its pid no
longer runs, runs a process started at another instant (the pid was reused), or is a zombie. A
holder that is alive but silent (stopped with kill -STOP, a paused VM) is alive: the lease's TTL and
the worker's own fence decide about it, as they did.

The job's process dies with its worker (Linux's parent-death signal, worker/child.py), so the holder
being gone means its job's process is gone too; a write it had under way is refused by the fencing
token all the same.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from shared.procstat import stat_fields

PROC = Path("/proc")


def this_process() -> str | None:
    """This process as a lease holder; None where it cannot be told (not Linux, or a /proc that is
    another pid namespace's)."""
    return _identity(os.getpid())


def this_machine() -> str | None:
    """BOOT/PIDNS/, the start every holder on this machine's pid namespace has; None as above."""
    return _machine()


def identity_of(pid: int) -> str | None:
    """The holder string of process `pid` of this machine; None if it does not run or cannot be read."""
    machine, start = _machine(), _start_ticks(pid)
    return None if machine is None or start is None else f"{machine}{pid}/{start}"


def gone(holder: str | None) -> bool:
    """True only where `holder` is a process of this boot and pid namespace that no longer runs."""
    machine = _machine()
    if holder is None or machine is None or not holder.startswith(machine):
        return False
    try:
        pid_text, start = holder[len(machine):].split("/")
        pid = int(pid_text)
    except ValueError:
        return False  # not a holder string this orch wrote: not judged
    return _start_ticks(pid) != start


def pid_of(holder: str | None) -> int | None:
    """The pid in a holder string, for a message; None if it is not one."""
    try:
        return int((holder or "").split("/")[2])
    except (IndexError, ValueError):
        return None


@functools.lru_cache(maxsize=4)
def _identity(pid: int) -> str | None:  # keyed by pid: a forked child asks for its own
    return identity_of(pid)


@functools.lru_cache(maxsize=1)
def _machine() -> str | None:
    try:
        if os.readlink(PROC / "self") != str(os.getpid()):
            return None  # this /proc shows another pid namespace: its pids are not ours
        boot = (PROC / "sys/kernel/random/boot_id").read_text().strip()
        pidns = os.stat(PROC / "self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{pidns}/"


def _start_ticks(pid: int) -> str | None:
    """Process `pid`'s start time (ticks since boot); None if it does not run or is a zombie."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):  # the state
        return None
    return fields[19]  # starttime, proc(5)'s field 22
