"""Linux process controls for the processes orch forks: die with the parent, a name for ps and top."""
from __future__ import annotations

import ctypes
import signal
from typing import Any


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (kill -9 of the worker or the job)."""
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG; not Linux: the parent's shutdown still ends the child


def set_process_name(name: str) -> None:
    """The name ps, top and pgrep show (15 bytes at most): a forked process keeps its parent's."""
    _prctl(15, ctypes.c_char_p(name.encode()[:15]))  # PR_SET_NAME


def _prctl(option: int, arg: Any) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, arg)
    except OSError:
        pass  # not Linux
