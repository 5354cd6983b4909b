"""Warm children: the next job's process is started and made ready before the job arrives.

A job's child used to pay its start-up when the job arrived: spawning Python, importing torch and
the engine (4-5 s of CPU on a 2-core VM), opening the store. Now the worker keeps one child ready
at all times, its thread count set and its device initialised, waiting on a pipe for the job; when
the child is taken, the next one is started at once. A child still runs ONE job and exits, so
memory (and CUDA state) never carries from one job to the next.

Children are forked by a fork server (multiprocessing's "forkserver"; fork_server.py is what it
preloads) that imported torch and the engine once, when the worker started: a spawned child
imported them again for every job, and on a busy CPU that import took cycles from the running job
even at idle priority. The server is started from the worker's main thread: Linux's parent-death
signal follows the thread that started a process, and the server must die with the worker.

The ready child warms up at idle priority (SCHED_IDLE, Linux): on a busy CPU it uses only cycles
the running job leaves, so preparing job N+1 does not slow job N down; it gets normal priority back
when it is taken.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from worker import child

log = logging.getLogger("orch.worker")
READY_TIMEOUT_S = 300.0  # a cold import on a loaded laptop can take a while; a hung child is replaced


@dataclass
class WarmChild:
    """A spawned job process and the parent's end of its pipe."""

    process: BaseProcess
    conn: Connection
    spawned_at: float = field(default_factory=time.monotonic)
    warmup: dict[str, float] = field(default_factory=dict)  # the child's own timings, once ready

    def wait_ready(self, tick: Callable[[], object], interval: float, timeout: float = READY_TIMEOUT_S) -> bool:
        """Block until the child reports ready, calling `tick()` (the job's heartbeat) every
        `interval` seconds meanwhile; False if the child died or hung first."""
        deadline = time.monotonic() + timeout
        try:
            while not self.conn.poll(interval):
                if time.monotonic() > deadline or not self.process.is_alive():
                    return False
                tick()
            kind, payload = self.conn.recv()
        except (EOFError, OSError):
            return False
        self.warmup = dict(payload) if kind == "ready" else {}
        return kind == "ready"

    def discard(self) -> None:
        """Close the pipe (an idle child exits on EOF), then make sure it is gone."""
        self.conn.close()
        self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5.0)


FORK_SERVER = multiprocessing.get_context("forkserver")  # the worker never forks itself: it has threads


def start_fork_server() -> None:
    """Start the server job processes are forked from, if it is not running; returns at once (it
    imports torch in the background, and the first child waits for that). Call it from a thread
    that lives as long as the worker."""
    FORK_SERVER.set_forkserver_preload(["worker.fork_server"])
    forkserver.ensure_running()


def spawn(home: str, threads: int | None) -> WarmChild:
    """A new job process, forked by the server (started here if it is not running: after a crash,
    from the calling thread). Blocks until the server has forked it."""
    parent_end, child_end = FORK_SERVER.Pipe(duplex=True)
    process = FORK_SERVER.Process(target=child.serve, args=(child_end, home, threads, dict(os.environ)),
                                  name="orch-job")
    process.start()
    child_end.close()
    return WarmChild(process, parent_end)


class WarmPool:
    """One ready child at all times; `take()` hands it out, `refill()` starts its successor."""

    def __init__(self, home: str, threads: int | None, *, warm: bool = True):
        self.home, self.threads, self.warm = home, threads, warm
        self.ready: WarmChild | None = None
        # the first child is forked on a thread while take() may wait. Reentrant: close() runs in a signal
        # handler on the thread that may hold it (take() waits under it; a second SIGTERM lands in the first's
        # close), and a plain Lock waited there for its own thread: the worker hung for ever
        self.lock = threading.RLock()
        self.closed = False  # the worker is stopping: no child is started to wait for a next job

    def start(self) -> None:
        """Start the fork server (call from a thread that lives as long as the worker: the server
        dies with it) and, on a thread of its own, the first child: it is forked once the server has
        imported torch, seconds during which the worker already takes jobs; take() waits for it."""
        start_fork_server()
        threading.Thread(target=self._first_child, name="orch-first-child", daemon=True).start()

    def _first_child(self) -> None:
        with self.lock:
            if self.closed:
                return
            first = spawn(self.home, self.threads)
            if self.warm:
                self.ready = first
            else:  # none is kept ready: this one only shows the server is up before a job waits on it
                first.wait_ready(lambda: None, 1.0)
                first.discard()

    def refill(self) -> None:
        """Start the next job's process (warming at idle priority), unless one is ready already."""
        with self.lock:
            if self.warm and self.ready is None and not self.closed:
                self.ready = spawn(self.home, self.threads)
                if self.closed:  # a stop signal's close() ran inside spawn(), on this thread: none kept
                    self.close()

    def take(self, tick: Callable[[], object], interval: float) -> tuple[WarmChild, dict[str, Any]]:
        """A ready child for a job, and how it came to be ready (for the job's start-up split).

        A child still warming up (a busy CPU gives it only idle cycles) is waited for, with `tick()`
        called every `interval` seconds: the job's lease must not expire meanwhile.
        """
        waited = time.monotonic()
        while not self.lock.acquire(timeout=interval):  # the first child, still being forked
            tick()
        try:
            return self._take_locked(tick, interval, waited)
        finally:
            self.lock.release()

    def _take_locked(self, tick: Callable[[], object], interval: float,
                     waited: float) -> tuple[WarmChild, dict[str, Any]]:
        candidate, self.ready = self.ready, None
        warm = candidate is not None and self._ready_in_time(candidate, tick, interval)
        if candidate is None or not warm:
            if candidate is not None:
                log.warning("the warm job process died or hung before its job; starting a fresh one")
                candidate.discard()
            candidate = spawn(self.home, self.threads)
            if not candidate.wait_ready(tick, interval):
                candidate.discard()
                raise RuntimeError(f"a job process failed to start (exit code {candidate.process.exitcode})")
        return candidate, {"warm": warm, "wait_ready_s": round(time.monotonic() - waited, 3), **candidate.warmup}

    @staticmethod
    def _ready_in_time(candidate: WarmChild, tick: Callable[[], object], interval: float) -> bool:
        if candidate.process.pid is not None:  # a job waits for it now: no longer only idle cycles
            child.set_idle_priority(candidate.process.pid, False)
        # is_alive too: a child killed after it said ready leaves its "ready" in the pipe
        return candidate.wait_ready(tick, interval) and candidate.process.is_alive()

    def close(self) -> None:
        """Discard the ready child and start no other: at exit, multiprocessing joins every child
        still running, and one waiting for a job would wait for ever."""
        with self.lock:
            self.closed = True
            ready, self.ready = self.ready, None  # taken first: a close() run inside this one finds none
            if ready is not None:
                ready.discard()
