"""The Celery task body: lease the job, run it in a spawned child, heartbeat, record the ending.

Runs in the worker's task thread and never imports torch. One job at a time per worker.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from sqlalchemy import select

from shared.config import Settings, redact
from shared.errors import StaleLease, StoreUnavailable
from shared.store import Job, JobStatus, Lease, Outcome, Store
from worker.warm import WarmPool

log = logging.getLogger("orch.worker")
TERM_GRACE_S = 10.0  # a cancelled child gets this long to finish its checkpoint write
TRANSIENT_TRIES = 3
T = TypeVar("T")


def with_db_retries(fn: Callable[[], T], tries: int = 5) -> T:
    """Retry a store call through a brief database outage (StoreUnavailable; backoff 1, 2, 4... s)."""
    for attempt in range(tries):
        try:
            return fn()
        except StoreUnavailable as exc:
            if attempt == tries - 1:
                raise
            log.warning("%s; retrying", exc)
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


@dataclass
class Supervisor:
    settings: Settings
    store: Store
    owner: str
    resend: Callable[[int, str, str], None]
    children: WarmPool
    shutdown: threading.Event = field(default_factory=threading.Event)

    def run(self, job_id: int) -> Outcome:
        lease = with_db_retries(lambda: Lease.acquire(self.store, job_id, self.owner, self.settings.lease_ttl))
        if lease is None:
            log.info("job %s: not taken (finished, cancelled, or leased by a live worker)", job_id)
            return Outcome.skipped
        job = self._snapshot(job_id)
        log.info("job %s (%s): started, lease token %s", job_id, job["kind"], lease.token)
        for attempt in range(1, TRANSIENT_TRIES + 1):
            outcome, reason, result = self._run_child(job, lease)
            if outcome != Outcome.transient or attempt == TRANSIENT_TRIES:
                break
            log.warning("job %s: transient failure (%s); retry %d of %d", job_id, reason, attempt, TRANSIENT_TRIES - 1)
            time.sleep(2**attempt)
            with_db_retries(lease.heartbeat)
        return self._record(job, lease, outcome, reason, result)

    def _snapshot(self, job_id: int) -> dict[str, Any]:
        with self.store.session() as s:
            job = s.scalars(select(Job).where(Job.id == job_id)).one()
            return {"id": job.id, "kind": job.kind, "spec": job.spec, "parent_id": job.parent_id,
                    "source_job_id": job.source_job_id, "shard": job.shard, "queue": job.queue}

    def _run_child(self, job: dict[str, Any], lease: Lease) -> tuple[Outcome, str, dict[str, Any]]:
        started = time.monotonic()
        taken, startup = self.children.take(lambda: self._beat(lease), self.settings.heartbeat)
        proc, conn = taken.process, taken.conn
        conn.send((job, lease.token))
        startup["take_s"] = round(time.monotonic() - started, 3)
        stopped_for = self._watch(proc, lease)
        outcome = read_outcome(conn)
        if stopped_for in ("stale", "shutdown"):
            return Outcome(stopped_for), stopped_for, {}
        if outcome is None:
            if stopped_for == "cancel":
                return Outcome.cancelled, "cancelled", {}
            return Outcome.failed, f"job process died with {exit_reason(proc.exitcode)}", {}
        kind, reason, result = outcome
        kind = Outcome(kind)
        if kind == Outcome.succeeded:
            result = {**result, "wall_s": round(time.monotonic() - started, 2),
                      "startup": {**startup, **result.get("startup", {})}}
        return kind, reason, result

    def _watch(self, proc: BaseProcess, lease: Lease) -> str | None:
        """Heartbeat while the child runs; stop it on cancel, lost lease or worker shutdown.

        Stopping is SIGTERM, a grace period for the checkpoint being written, then SIGKILL;
        the heartbeat goes on through the grace period so the lease cannot expire meanwhile.
        """
        reason: str | None = None
        kill_at = 0.0
        while True:
            proc.join(self.settings.heartbeat)
            if not proc.is_alive():
                return reason
            if reason is None:
                reason = self._stop_reason(lease)
                if reason:
                    log.info("job %s: stopping its process (%s)", lease.job_id, reason)
                    proc.terminate()
                    kill_at = time.monotonic() + TERM_GRACE_S
            else:
                if reason != "stale":
                    self._beat(lease)
                if time.monotonic() > kill_at:
                    proc.kill()

    def _stop_reason(self, lease: Lease) -> str | None:
        return "shutdown" if self.shutdown.is_set() else self._beat(lease)

    def _beat(self, lease: Lease) -> str | None:
        """Heartbeat; 'cancel' when a cancel was asked for, 'stale' when the lease was lost."""
        try:
            return "cancel" if lease.heartbeat() else None
        except StaleLease:
            return "stale"
        except Exception as exc:  # store briefly down: keep training, the lease TTL is the limit
            log.warning("job %s: heartbeat failed (%s)", lease.job_id, redact(str(exc).splitlines()[0]))
            return None

    def _record(self, job: dict[str, Any], lease: Lease, outcome: Outcome, reason: str,
                result: dict[str, Any]) -> Outcome:
        job_id = job["id"]
        if outcome == Outcome.stale:
            log.warning("job %s: lease lost to another worker; its results are theirs", job_id)
        elif outcome == Outcome.shutdown:
            # Give the job back and re-send it: the next worker resumes from its checkpoint.
            if with_db_retries(lambda: lease.release("worker stopped; requeued")):
                self.resend(job_id, job["kind"], job["queue"])
        else:
            status = outcome.job_status
            error = None if status == JobStatus.succeeded else reason
            if outcome == Outcome.transient:
                error = f"{reason} (gave up after {TRANSIENT_TRIES} tries)"
            with_db_retries(lambda: lease.finish(status, error=error, result=result))
        log.info("job %s: %s%s", job_id, outcome, f" ({reason})" if outcome != Outcome.succeeded else "")
        return outcome


def read_outcome(receive: Connection) -> tuple[str, str, dict[str, Any]] | None:
    """The child's report, or None if it died without one (the pipe then reads as closed)."""
    try:
        return receive.recv() if receive.poll() else None
    except (EOFError, OSError):
        return None
    finally:
        receive.close()


def exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (killed: out of memory?)" if name == "SIGKILL" else " (crashed)" if name == "SIGSEGV" else ""
        return f"{name}{hint}"
    return f"exit code {code} and no report"
