"""Warm children: the next job's process is spawned and made ready before the job arrives.

A job's child used to pay its start-up when the job arrived: spawning Python, importing torch and
the engine (1-2 s on a laptop CPU), opening the store. Now the worker keeps one child ready at all
times, spawned, torch imported, its thread count set and its device initialised, waiting on a pipe
for the job; when the child is taken, the next one is spawned at once. A child still runs ONE job
and exits, so memory (and CUDA state) never carries from one job to the next.

The ready child warms up at idle priority (SCHED_IDLE, Linux): on a busy CPU it uses only cycles
the running job leaves, so preparing job N+1 does not slow job N down; it gets normal priority back
when it is taken. Children are spawned from the thread that supervises them: Linux's parent-death
signal (child.die_with_parent) follows the thread that forked a child, not the process.
"""
from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


def spawn(home: str, threads: int | None) -> WarmChild:
    mp = multiprocessing.get_context("spawn")  # never fork: the parent has threads (and maybe CUDA)
    parent_end, child_end = mp.Pipe(duplex=True)
    process = mp.Process(target=child.serve, args=(child_end, home, threads), name="orch-job")
    process.start()
    child_end.close()
    return WarmChild(process, parent_end)


class WarmPool:
    """One ready child at all times; `take()` hands it out and spawns its successor."""

    def __init__(self, home: str, threads: int | None, *, warm: bool = True):
        self.home, self.threads, self.warm = home, threads, warm
        self.ready: WarmChild | None = None

    def start(self) -> None:
        """Spawn the first ready child (call from a thread that lives as long as the worker)."""
        if self.warm and self.ready is None:
            self.ready = spawn(self.home, self.threads)

    def take(self, tick: Callable[[], object], interval: float) -> tuple[WarmChild, dict[str, Any]]:
        """A ready child for a job, and how it came to be ready (for the job's start-up split).

        A child still warming up (a busy CPU gives it only idle cycles) is waited for, with `tick()`
        called every `interval` seconds: the job's lease must not expire meanwhile.
        """
        waited = time.monotonic()
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
        startup = {"warm": warm, "wait_ready_s": round(time.monotonic() - waited, 3), **candidate.warmup}
        if self.warm:
            self.ready = spawn(self.home, self.threads)  # the next job's, warming at idle priority
        return candidate, startup

    @staticmethod
    def _ready_in_time(candidate: WarmChild, tick: Callable[[], object], interval: float) -> bool:
        if candidate.process.pid is not None:  # a job waits for it now: no longer only idle cycles
            child.set_idle_priority(candidate.process.pid, False)
        # is_alive too: a child killed after it said ready leaves its "ready" in the pipe
        return candidate.wait_ready(tick, interval) and candidate.process.is_alive()

    def close(self) -> None:
        if self.ready is not None:
            self.ready.discard()
            self.ready = None
