"""The Celery task body: lease the job, run it in a spawned child, heartbeat, record the ending.

Runs in the worker's task thread and never imports torch. One job at a time per worker.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from sqlalchemy import select

from shared.config import Settings, redact
from shared.errors import StaleLease, StoreUnavailable
from shared.store import Job, JobStatus, Lease, Outcome, Store
from shared.store.lease import patiently
from worker.stall import StallWatch
from worker.warm import WarmPool

log = logging.getLogger("orch.worker")
TERM_GRACE_S = 10.0  # a cancelled child gets this long to finish its checkpoint write
TRANSIENT_TRIES = 3
T = TypeVar("T")


@dataclass
class Supervisor:
    settings: Settings
    store: Store
    owner: str
    resend: Callable[[int, str, str], None]
    children: WarmPool
    shutdown: threading.Event = field(default_factory=threading.Event)
    renewed_at: float = field(default_factory=time.monotonic)  # the last heartbeat that succeeded
    held: set[int] = field(default_factory=set)  # jobs whose lease this supervisor holds and will end
    fenced_after_s: float = 0.0  # how long the lease had gone unrenewed when the fence last stopped a job
    stop_worker: Callable[[], None] = lambda: None  # asks the whole worker to stop, as a SIGTERM does
    outdated: str | None = None  # why this worker stopped taking jobs: its orch cannot use the store's schema

    def holding(self) -> frozenset[int]:
        """What the sweeper of this worker leaves alone (a copy: the task thread changes the set)."""
        return frozenset(self.held)

    def until_store_answers(self, fn: Callable[[], T]) -> T:
        """fn(), retried while the store does not answer, until it does or this worker stops: a job's
        ending waits for the store, which no other worker can reach meanwhile either (five tries gave up
        after 15 s, and a restart of 25 s left a traceback and a job for a sweeper to take, counted).
        StoreUnavailable once the worker is stopping."""
        return patiently(fn, math.inf, stop=self.shutdown)

    def run(self, job_id: int) -> Outcome:
        if self.shutdown.is_set():  # the stop began since the task's own check (worker/app.py gives the message
            # back): acked with no job taken, the relay re-sends it
            log.info("job %s: not taken (this worker is stopping)", job_id)
            return Outcome.skipped
        asked = time.monotonic()  # the acquire stamps the lease after this instant
        lease = self.until_store_answers(lambda: Lease.acquire(self.store, job_id, self.owner, self.settings.lease_ttl))
        if lease is None:
            log.info("job %s: not taken (finished, cancelled, or leased by a live worker)", job_id)
            return Outcome.skipped
        self.renewed_at = asked
        self.held.add(job_id)
        try:
            job = self.until_store_answers(lambda: self._snapshot(job_id))
            log.info("job %s (%s): started, lease token %s", job_id, job["kind"], lease.token)
            for attempt in range(1, TRANSIENT_TRIES + 1):
                outcome, reason, result = self._run_child(job, lease)
                if outcome != Outcome.transient or attempt == TRANSIENT_TRIES:
                    break
                log.warning("job %s: transient failure (%s); retry %d of %d", job_id, reason, attempt,
                            TRANSIENT_TRIES - 1)
                time.sleep(2**attempt)
                self._beat(lease)
            return self._record(job, lease, outcome, reason, result)
        finally:
            self.held.discard(job_id)

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
        log.info("job %s: in process %s", job["id"], proc.pid)  # the one `kill` would stop
        self.children.refill()  # after the send: the job starts without waiting for its successor
        stopped_for, outcome = self._watch(proc, conn, lease)
        if stopped_for == "fenced":
            return Outcome.fenced, f"{self.fenced_after_s:.0f}", {}  # the reason: how long the lease went unrenewed
        if stopped_for in ("stale", "shutdown"):
            return Outcome(stopped_for), stopped_for, {}
        if outcome is None:
            if stopped_for == "cancel":
                return Outcome.cancelled, "cancelled", {}
            if stopped_for == "stalled":
                return (Outcome.crashed, f"job process used no CPU for {self.settings.stall_after:g} s (stopped or "
                                         "hung; ORCH_STALL_TIMEOUT): killed", {})
            return Outcome.crashed, f"job process died with {exit_reason(proc.exitcode)}", {}
        kind, reason, result = outcome
        kind = Outcome(kind)
        if kind == Outcome.succeeded:
            # a resumed job's wall time counts the epochs it resumed from (earlier attempts ran them)
            result = {**result, "wall_s": round(time.monotonic() - started + result.get("earlier_epochs_s", 0.0), 2),
                      "startup": {**startup, **result.get("startup", {})}}
        return kind, reason, result

    def _watch(self, proc: BaseProcess, conn: Connection, lease: Lease) -> tuple[str | None, ChildReport | None]:
        """Heartbeat while the child runs and read its report as soon as it comes (a report larger
        than the pipe's buffer blocks the child until it is read); stop the child on cancel, lost
        lease or worker shutdown, and let the fence stop it when the lease is not renewed in time.

        Stopping is SIGTERM, a grace period for the checkpoint being written, then SIGKILL;
        the heartbeat goes on through the grace period so the lease cannot expire meanwhile.
        """
        reason: str | None = None
        kill_at = 0.0
        report = Report(conn)
        stall = StallWatch(proc.pid or 0, self.settings.stall_after)
        fence = SelfFence(proc, lambda: self.renewed_at, self.settings.fence_after,
                           self.settings.fence_grace, beat_within=2 * self.settings.heartbeat)
        fence.start()
        try:
            while True:
                report.wait(proc, self.settings.heartbeat)
                if not proc.is_alive():
                    self.fenced_after_s = fence.silent_s
                    return ("fenced" if fence.fired.is_set() else reason), report.outcome
                if reason is None and stall.stalled():
                    reason = "stalled"
                    log.warning("job %s: its process %s used no CPU for %g s (stopped or hung): killing it",
                                lease.job_id, proc.pid, self.settings.stall_after)
                    proc.kill()  # SIGTERM waits for a stopped process to be continued; SIGKILL does not
                    kill_at = time.monotonic() + TERM_GRACE_S
                elif reason is None:
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
        finally:
            fence.stop()

    def _stop_reason(self, lease: Lease) -> str | None:
        return "shutdown" if self.shutdown.is_set() else self._beat(lease)

    def _beat(self, lease: Lease) -> str | None:
        """Heartbeat; 'cancel' when a cancel was asked for, 'stale' when the lease was lost.

        A store error is logged and the job goes on: the fence (SelfFence) stops the child when
        the lease has not been renewed for too long, before anyone else may take the job.
        """
        asked = time.monotonic()  # the database stamped the lease after this instant, not before
        try:
            cancel = lease.heartbeat()
        except StaleLease:
            return "stale"
        except Exception as exc:
            log.warning("job %s: heartbeat failed (%s)", lease.job_id, redact(str(exc).splitlines()[0]))
            return None
        self.renewed_at = asked
        took = time.monotonic() - asked
        if took > self.settings.heartbeat:  # the fence counts from the last beat that got through
            log.warning("job %s: a heartbeat took %.1f s", lease.job_id, took)
        return "cancel" if cancel else None

    def _record(self, job: dict[str, Any], lease: Lease, outcome: Outcome, reason: str,
                result: dict[str, Any]) -> Outcome:
        job_id = job["id"]
        if outcome == Outcome.stale:
            log.warning("job %s: lease lost to another worker; its results are theirs", job_id)
        elif outcome == Outcome.shutdown:
            # Give the job back and re-send it: the next worker resumes from its checkpoint.
            self._requeue(job, lease, self.until_store_answers(lambda: lease.requeue("worker stopped; requeued")))
        elif outcome == Outcome.crashed:  # maybe this job kills its process every time: ORCH_MAX_ATTEMPTS
            self._requeue(job, lease, self.until_store_answers(lambda: lease.requeue(reason, self.settings.max_attempts)))
        elif outcome in (Outcome.fenced, Outcome.store_lost, Outcome.outdated):
            self._give_back(job, lease, outcome, reason)
            if outcome == Outcome.outdated:
                self._stop_outdated(reason)
        else:
            status = outcome.job_status
            error = None if status == JobStatus.succeeded else reason
            if outcome == Outcome.transient:
                error = f"{reason} (in each of this attempt's {TRANSIENT_TRIES} runs)"
            trace = result.pop("traceback", None)  # an unexpected error's: the job's history keeps it
            if not self.until_store_answers(lambda: lease.finish(status, error=error, result=result, trace=trace)):
                # frozen (kill -STOP, a VM paused) past the lease: another worker took the job over and
                # its ending stands; "job 18: succeeded" here read as if this one's had
                log.warning("job %s: %s here, but its lease had been taken over meanwhile: not recorded; the "
                            "worker that took it over ends it", job_id, outcome)
                return Outcome.stale
        level = logging.WARNING if outcome in (Outcome.failed, Outcome.transient, Outcome.crashed) else logging.INFO
        said = outcome == Outcome.succeeded or reason == outcome.value  # "job 4: stale (stale)" said it twice
        log.log(level, "job %s: %s%s", job_id, outcome, "" if said else f" ({reason})")
        return outcome

    def _requeue(self, job: dict[str, Any], lease: Lease, status: JobStatus | None) -> None:
        """Re-send a job given back to the queue (not one that ended: cancelled, or out of attempts)."""
        log.info("job %s: attempt ended; job %s", job["id"], status or "taken by another worker meanwhile")
        if status == JobStatus.queued:
            self.resend(job["id"], job["kind"], job["queue"])

    def _give_back(self, job: dict[str, Any], lease: Lease, outcome: Outcome, reason: str) -> None:
        """The store, not the job, was at fault: the worker fenced its job's process (no lease renewed
        for 0.8 TTL), the process gave up on the store, or this worker's orch cannot use its schema. The
        job goes back to the queue, not counted against ORCH_MAX_ATTEMPTS, once the store answers; until
        then this worker's sweeper leaves it alone, and the others' sweepers give its lease a TTL after
        the store's return."""
        said, cause = {
            Outcome.fenced: (f"{self.owner} could not renew its lease for {reason} s and stopped the job's process",
                             "worker lost the store; stopped its job"),
            Outcome.outdated: (f"{self.owner} cannot use this store ({reason}): its orch is not the one that "
                               "wrote the schema; it gave the job back and stops", "worker's orch outdated"),
        }.get(outcome, (f"the job's process could not reach the store ({reason})", "the store did not answer"))
        try:
            self.until_store_answers(lambda: lease.add_event("warning", said))
            self._requeue(job, lease, self.until_store_answers(lambda: lease.requeue(cause)))
        except StaleLease:  # another worker's sweeper took the expired lease first: its requeue stands
            log.info("job %s: taken over by another worker while the store was away", job["id"])
        except StoreUnavailable as exc:  # this worker is stopping: a sweeper requeues it once the store is back
            log.warning("job %s: not given back (%s); a sweeper requeues it once the store answers", job["id"],
                        redact(str(exc).splitlines()[0]))

    def _stop_outdated(self, reason: str) -> None:
        """A worker started before an `orch db upgrade` (or a newer orch's first command on the embedded
        store) failed every job it took after it; it now stops, and the workers of the upgraded orch
        take the job it gave back."""
        self.outdated = reason  # what to do is in it: upgrade this machine's orch, or `orch db upgrade`
        log.error("%s stops: %s", self.owner, reason)
        self.shutdown.set()
        self.stop_worker()


ChildReport = tuple[str, str, dict[str, Any]]  # (an Outcome's value, reason, result), as the child sends it


class Report:
    """The child's report on its pipe, read while the child runs: it sends it just before exiting."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.outcome: ChildReport | None = None
        self.closed = False

    def wait(self, proc: BaseProcess, timeout: float) -> None:
        """Up to `timeout` seconds for the report (or the child's end); reads it when it comes."""
        if self.closed:
            proc.join(timeout)
            return
        if not self.conn.poll(timeout):
            return
        try:
            self.outcome = self.conn.recv()
        except (EOFError, OSError):
            pass  # the child died without a report: the pipe reads as closed
        self.closed = True
        self.conn.close()
        proc.join(timeout)  # it exits right after its report


class SelfFence(threading.Thread):
    """Stops the job's process (SIGTERM, then SIGKILL after `grace`) once the lease has not been
    renewed for `after` seconds: a worker that lost the store must not go on training while the
    sweeper of another worker hands the job on. `after` + `grace` stays below the lease TTL.

    Where this whole process was stopped (kill -STOP, a VM paused), no beat was tried, not one that
    failed: the task thread gets `beat_within` seconds to renew first. A beat that gets through keeps
    the job (the store and its lease token are fine: it was stopped, healthy, in the middle of an
    epoch, and its history blamed the store); one that finds the lease taken over stops it as stale."""

    def __init__(self, proc: BaseProcess, renewed_at: Callable[[], float], after: float, grace: float,
                 beat_within: float = 0.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(name="orch-fence", daemon=True)
        self.proc, self.renewed_at, self.after, self.grace = proc, renewed_at, after, grace
        self.beat_within, self.clock = beat_within, clock
        self.fired, self.done = threading.Event(), threading.Event()
        self.silent_s = 0.0

    def run(self) -> None:
        tick = min(0.2, self.after / 10)
        last = self.clock()
        waking_until = 0.0
        while not self.done.wait(tick):
            now = self.clock()
            if now - last > max(1.0, 10 * tick):  # this thread did not run for that long: the process was stopped
                waking_until = now + self.beat_within
                log.warning("this worker did not run for %.0f s (stopped, or its machine paused): renewing the lease "
                            "before anything else", now - last)
            last = now
            silent = now - self.renewed_at()
            if silent > self.after and now >= waking_until and self.proc.is_alive():
                log.error("lease not renewed for %.1f s: stopping the job's process before another worker "
                          "may take the job", silent)
                self.silent_s = silent
                self.fired.set()
                self.proc.terminate()
                if not wait([self.proc.sentinel], self.grace):  # no reaping here: the task thread joins
                    self.proc.kill()
                return

    def stop(self) -> None:
        self.done.set()


def exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (kill -9, or the kernel's out-of-memory killer: `dmesg` says which)" if name == "SIGKILL" else " (crashed)" if name == "SIGSEGV" else ""
        return f"{name}{hint}"
    return f"exit code {code} and no report"
