"""The spawned child that does one job's work.

Started with the `spawn` method: the worker's parent never initialises CUDA and never forks
after threads exist; the child's memory (and GPU memory) is returned when it exits. It dies
with its parent (PR_SET_PDEATHSIG), and SIGTERM asks it to stop at the next step.
"""
from __future__ import annotations

import ctypes
import importlib
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any

from shared.config import load_settings, redact
from shared.errors import PERMANENT_ERRORS, JobCancelled, StaleLease

RUNNERS = {"train": "worker.jobs.train", "score": "worker.jobs.score", "score_shard": "worker.jobs.score"}


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (kill -9 of the worker)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the parent's shutdown still terminates the child


def classify(exc: BaseException) -> tuple[str, str]:
    """(outcome, one-line reason): permanent failures fail at once, transient ones are retried."""
    reason = redact(f"{type(exc).__name__}: {exc}".splitlines()[0])
    if isinstance(exc, JobCancelled):
        return "cancelled", "cancelled"
    if isinstance(exc, StaleLease):
        return "stale", reason
    if isinstance(exc, PERMANENT_ERRORS):
        return "failed", str(exc).splitlines()[0]
    module = type(exc).__module__
    if isinstance(exc, (OSError, TimeoutError)) or module.startswith(("sqlalchemy", "psycopg", "sqlite3")):
        return "transient", reason
    return "failed", reason


def main(job: dict[str, Any], token: int, home: str, conn: Connection) -> None:
    die_with_parent()
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("requested", True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the worker, which decides
    try:
        outcome = ("succeeded", "", _run(job, token, home, lambda: stop["requested"]))
    except BaseException as exc:  # the parent records every ending, so report them all
        kind, reason = classify(exc)
        if kind == "failed" and not isinstance(exc, PERMANENT_ERRORS):
            traceback.print_exc()  # an unexpected error: the worker log keeps the traceback
        outcome = (kind, reason, {})
    conn.send(outcome)
    conn.close()


def _run(job: dict[str, Any], token: int, home: str, should_stop: Any) -> dict[str, Any]:
    from shared.store import open_store
    from worker.context import JobContext

    settings = load_settings(home)
    store = open_store(settings)
    try:
        ctx = JobContext(settings=settings, store=store, job_id=job["id"], token=token, kind=job["kind"],
                         spec=job["spec"], parent_id=job["parent_id"], source_job_id=job["source_job_id"],
                         shard=job["shard"], should_stop=should_stop)
        runner = importlib.import_module(RUNNERS[job["kind"]])
        return runner.run(ctx)
    finally:
        store.dispose()
