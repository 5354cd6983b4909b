"""Background upkeep in every worker: requeue jobs whose lease expired or whose worker on this machine
died (shared/store/takeover.py), send score jobs for assembly,
prune the embedded broker (monitors' queues, and the messages of jobs that ended without them).
Messages those changes owe are in the outbox; the relay re-sends lost ones."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from shared.broker_fs import drop_finished_messages, prune_broker
from shared.config import Settings, redact
from shared.scoring.protocol import settle_parents
from shared.store import JobStatus, Lease, Store, reads, takeover

log = logging.getLogger("orch.worker")


def awake_clock() -> float:
    """Seconds on a clock that also counts a suspend (Linux's CLOCK_BOOTTIME; monotonic elsewhere): a
    laptop that slept past the TTL wakes with every lease expired by the database's clock."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


class Sweeper(threading.Thread):
    def __init__(self, settings: Settings, store: Store, resend: Callable[[int, str, str], None],
                 owner: str = "sweeper", held_here: Callable[[], Collection[int]] = frozenset):
        super().__init__(name="orch-sweeper", daemon=True)
        self.settings, self.store, self.resend, self.owner = settings, store, resend, owner
        self.held_here = held_here
        self.interval = min(10.0, max(1.0, settings.lease_ttl / 3))
        # a dead holder is checked for between sweeps too, as often as a heartbeat: it costs one read
        self.orphan_interval = min(self.interval, settings.heartbeat)
        self.stopping = threading.Event()
        self.write_due = awake_clock()  # when the next sweep's write should get through (the first: now)
        self.hold_off_until = 0.0  # no lease is taken before this (awake_clock): see check_store

    def run(self) -> None:
        sweep_at = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= sweep_at:
                self.sweep_once()
                sweep_at = time.monotonic() + self.interval
            else:
                self.guarded(self.take_orphaned)
            self.stopping.wait(self.orphan_interval)

    def sweep_once(self) -> None:
        if self.guarded(self.check_store):
            self.guarded(self.sweep_after_check)
            # a sweep that could not write leaves the time due: the next one that can sees the gap
            self.write_due = awake_clock() + self.interval

    def sweep_after_check(self) -> None:
        self.take_orphaned()  # no hold-off: a process that ended beats no more after the store's return
        if awake_clock() >= self.hold_off_until:
            self.take_expired()
        for parent in settle_parents(self.store):
            log.warning("score job %s: every shard ended; sent for assembly", parent.job_id)
            self.resend(parent.job_id, parent.kind, parent.queue)
        if self.settings.embedded_broker:
            prune_broker(self.settings)
            drop_finished_messages(self.settings, self.finished_among)

    @staticmethod
    def guarded(step: Callable[[], None]) -> bool:
        """step(); False, with a line in the log, if it failed: a sweep must never take the worker down."""
        try:
            step()
            return True
        except Exception as exc:
            log.warning("sweep failed: %s", redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            return False

    def finished_among(self, job_ids: Collection[int]) -> set[int]:
        with self.store.session() as session:
            return reads.finished_among(session, job_ids)

    def check_store(self) -> None:
        """After a spell in which the store took no writes (a SQLite lock held past the TTL, a
        PostgreSQL restart, a laptop asleep), every worker's heartbeats were refused alike: their leases read as
        expired though the workers are alive, and taking them would count an attempt against each
        job (ORCH_MAX_ATTEMPTS: three outages failed every running job). So when this sweeper's own
        write gets through more than a heartbeat after it was due (it waited on a lock, or the sweeps
        before it failed), it gives every holder one TTL from the store's return to beat again; a
        worker that is really gone loses its jobs one TTL later. Raises StoreUnavailable while the
        store does not answer."""
        Lease.await_writes(self.store)
        now = awake_clock()
        away = now - self.write_due
        if away > self.settings.heartbeat:
            self.hold_off_until = now + self.settings.lease_ttl
            # its own stop looks the same from here (a woken Ctrl-Z, or a laptop asleep with its store)
            log.warning("this sweeper's write came %.0f s late (the store took no writes, or this worker was "
                        "stopped): expired leases are left %g s to their workers, whose heartbeats may have been "
                        "refused too", away, self.settings.lease_ttl)

    def take_expired(self) -> None:
        """Jobs whose worker stopped renewing its lease: requeued and re-sent, or ended (cancelled,
        or failed after ORCH_MAX_ATTEMPTS attempts), under a lease the sweeper takes.

        Not the jobs this worker's own supervisor still holds: their lease expired because the store
        took no writes (a lock held past the TTL), the supervisor's fence has stopped the process, and
        the supervisor gives the job back uncounted as soon as the store answers. Taken here first,
        the attempt counted against ORCH_MAX_ATTEMPTS, as if the job had killed its worker."""
        settings = self.settings
        self.requeued(takeover.take_expired(self.store, settings.lease_ttl, self.owner, settings.max_attempts,
                                            skip=self.held_here()))

    def take_orphaned(self) -> None:
        """Jobs whose worker was a process of this machine that ended (kill -9, the out-of-memory
        killer) without ending them: taken at once, not a TTL later."""
        self.requeued(takeover.take_orphaned(self.store, self.owner, self.settings.max_attempts))

    def requeued(self, taken: list[takeover.TakenOver]) -> None:
        for job in taken:
            log.warning("job %s: %s after attempt %d; %s", job.job_id, job.cause, job.attempts,
                        "requeued" if job.outcome == JobStatus.queued else job.outcome)
            if job.outcome == JobStatus.queued:
                self.resend(job.job_id, job.kind, job.queue)
