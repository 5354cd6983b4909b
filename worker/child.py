"""The job process: the child that does one job's work, named `orch-job` in ps and top.

Forked by the worker's fork server (warm.py, fork_server.py), which has imported torch and the
engine but never initialised CUDA: the worker itself never forks after threads exist, and the
child's memory (and GPU memory) is returned when it exits. It dies with its parent, the server
(PR_SET_PDEATHSIG), which dies with the worker; SIGTERM asks it to stop at the next step.

It is started before its job is known (warm.py): it warms up (threads, device), reports ready,
then waits on its pipe for one job, runs it, reports the outcome and exits.
"""
from __future__ import annotations

import ctypes
import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from shared.config import load_settings, redact
from shared.errors import (
    PERMANENT_ERRORS,
    TRANSIENT_ERRORS,
    DiskFull,
    JobCancelled,
    SchemaMismatch,
    StaleLease,
    StoreUnavailable,
    disk_full_in,
    disk_full_message,
)
from shared.store.schema import Outcome

TRACEBACK_LINES = 40  # of an unexpected error, in the job's history: its innermost frames and the error

RUNNERS = {"train": "worker.jobs.train", "score": "worker.jobs.score_shards", "score_shard": "worker.jobs.score_shards"}


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (kill -9 of the worker)."""
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG; not Linux: the parent's shutdown still ends the child


def set_process_name(name: str) -> None:
    """The name ps, top and pgrep show (15 bytes at most): a forked process keeps its parent's."""
    _prctl(15, ctypes.c_char_p(name.encode()[:15]))  # PR_SET_NAME


def _prctl(option: int, arg: Any) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, arg)
    except OSError:
        pass  # not Linux


def classify(exc: BaseException) -> tuple[Outcome, str]:
    """(outcome, one-line reason), by the exception's type: permanent failures fail at once,
    transient ones (a service that did not answer, an I/O hiccup) are retried.

    The store raises StoreUnavailable and the senders BrokerUnavailable for their connection errors,
    so no driver's exception types are needed here. A file we may not read (PermissionError) is
    permanent: retrying does not grant the permission.
    """
    reason = redact(f"{type(exc).__name__}: {exc}".splitlines()[0])
    if isinstance(exc, JobCancelled):
        return Outcome.cancelled, "cancelled"
    if isinstance(exc, StaleLease):
        return Outcome.stale, reason
    full = disk_full_in(exc)
    if full is not None and not isinstance(exc, DiskFull):  # a write outside shared/atomic.py: not worth a retry either
        return Outcome.failed, disk_full_message(str(Path(full.filename).parent) if full.filename else "")
    if isinstance(exc, SchemaMismatch):  # the worker's orch, not the job: before the permanent ConfigError
        return Outcome.outdated, str(exc).splitlines()[0]
    if isinstance(exc, PERMANENT_ERRORS):
        return Outcome.failed, str(exc).splitlines()[0]
    if isinstance(exc, StoreUnavailable):  # the store's fault, not the job's: not one of its tries
        return Outcome.store_lost, redact(str(exc).splitlines()[0])
    if isinstance(exc, TRANSIENT_ERRORS):
        return Outcome.transient, redact(str(exc).splitlines()[0])
    if isinstance(exc, (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return Outcome.failed, reason
    if isinstance(exc, (OSError, TimeoutError)):
        return Outcome.transient, reason
    return Outcome.failed, reason


# What a job's code imports: loaded by the fork server once, not by each job after it arrives.
WARM_IMPORTS = ("torch", "torchvision.models", "shared.engine", "shared.models", "shared.data.images",
                "worker.jobs.train", "worker.jobs.score_shards",
                "numpy.ma")  # np.unique's first call imports it: 24 ms of a scoring job's int8 calibration


def serve(conn: Connection, home: str, threads: int | None, environ: dict[str, str]) -> None:
    """The child's life: warm up, say ready, take one job (EOF: the worker went away), run it.

    `environ` is the worker's environment now: the fork server's is the one it started with."""
    die_with_parent()
    set_process_name("orch-job")
    os.environ.clear()
    os.environ.update(environ)
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("requested", True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the worker, which decides
    set_idle_priority(os.getpid(), True)  # warm up on the cycles the running job leaves
    try:
        conn.send(("ready", warm_up(threads)))
        job, token = conn.recv()
    except (EOFError, OSError):  # BrokenPipeError included: it went away while we warmed up
        return  # the worker is stopping, or replaced this child
    set_idle_priority(os.getpid(), False)  # the worker promoted us when it took us; threads made since too
    main(job, token, home, conn, stop)
    exit_now()


def exit_now() -> None:
    """End the process once its report is sent, skipping the interpreter's teardown: freeing torch's
    modules and heap took 1.3 s on a 2-core CPU, on the job's wall time (the worker records the
    ending, and takes its next job, once this process is gone). Only stdio and the log handlers
    hold anything still to be written; the store was disposed of and the report is on the pipe."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def warm_up(threads: int | None) -> dict[str, float]:
    """Set the thread count, import what jobs import (no-ops when forked from the fork server; a
    module its preload could not import is imported here), reseed, initialise the device; timings
    in seconds.

    torch sizes its thread pool to the PHYSICAL cores it detects: on a VM that shows 2 vCPUs as one
    core with two threads it trains on 1 thread, half the machine. So the count is set explicitly:
    `threads` (the worker's --threads), else every CPU this process may run on.
    """
    started = time.perf_counter()
    preloaded = "torch" in sys.modules  # forked from the fork server, which imported it
    count = threads or len(os.sched_getaffinity(0))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # for a torch not loaded yet: its pools read them
        os.environ[name] = str(count)
    for module in WARM_IMPORTS:
        importlib.import_module(module)
    imported = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(count)
    # Every child of the server would start from the server's random state (Python's own `random`
    # reseeds itself after a fork; numpy and torch do not): seed them as a fresh process would.
    torch.seed()
    np.random.seed()
    if torch.cuda.is_available():
        torch.empty(1, device="cuda")  # creates the CUDA context now, not in the job's first step
    return {"import_s": round(imported - started, 3), "device_s": round(time.perf_counter() - imported, 3),
            "threads": count, "pid": os.getpid(), "preloaded": preloaded}


def set_idle_priority(pid: int, idle: bool) -> None:
    """SCHED_IDLE while warming up, SCHED_OTHER for the job, for every thread of process `pid`."""
    policy = getattr(os, "SCHED_IDLE" if idle else "SCHED_OTHER", None)
    if policy is None:
        return  # not Linux: the warm-up simply competes with the running job
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return  # the process is gone
    for tid in tids:
        try:
            os.sched_setscheduler(int(tid), policy, os.sched_param(0))
        except OSError:
            pass  # a thread that ended meanwhile, or a policy this kernel refuses


def main(job: dict[str, Any], token: int, home: str, conn: Connection, stop: dict[str, bool]) -> None:
    try:
        outcome = (Outcome.succeeded, "", _run(job, token, home, lambda: stop["requested"]))
    except BaseException as exc:  # the parent records every ending, so report them all
        kind, reason = classify(exc)
        details: dict[str, Any] = {}
        if kind == Outcome.failed and not isinstance(exc, PERMANENT_ERRORS) and disk_full_in(exc) is None:
            traceback.print_exc()  # an unexpected error: the worker log keeps the traceback, and the
            # job's history its end (the log is on the worker's machine, the history where the CLI is)
            details["traceback"] = redact("".join(traceback.format_exc().splitlines(keepends=True)[-TRACEBACK_LINES:]))
        outcome = (kind, reason, details)
    conn.send(outcome)
    conn.close()


def _run(job: dict[str, Any], token: int, home: str, should_stop: Any) -> dict[str, Any]:
    from shared.store import Lease, open_store
    from worker.context import JobContext

    started = time.perf_counter()
    settings = load_settings(home)
    store = open_store(settings)
    opened = round(time.perf_counter() - started, 3)
    try:
        # the job's writes wait out a database restart for as long as the worker's fence allows
        lease = Lease(store, job["id"], token, patience_s=settings.fence_after)
        ctx = JobContext(settings=settings, store=store, lease=lease, kind=job["kind"],
                         spec=job["spec"], parent_id=job["parent_id"], source_job_id=job["source_job_id"],
                         shard=job["shard"], should_stop=should_stop)
        runner = importlib.import_module(RUNNERS[job["kind"]])
        result = runner.run(ctx)
        # JSON only, as the store keeps it: a str subclass such as torch.__version__ (TorchVersion)
        # would make the supervisor import torch to unpickle it, stalling its heartbeats for seconds.
        return json.loads(json.dumps({**result, "startup": {"store_s": opened, **result.get("startup", {})}}))
    finally:
        store.dispose()
