"""The sweeper's takeovers of a running job whose holder no longer works on it.

Two ways to know: the holder stopped renewing its lease for a TTL (`take_expired`: it may be on any
machine, dead, cut off or frozen), or the holder is a process of the sweeper's own machine that no
longer runs (`take_orphaned`: a worker killed with kill -9; shared/store/holder.py says why that is
proof). The second needs no wait: a kill -9 on a box with a worker per GPU cost the job the whole
TTL (30 s by default) of nothing running.

Each takeover is one piece of code: token + 1 under a WHERE that checks its reason again (the old
holder's writes are refused from then on), a line in the job's history, then `Lease.requeue` (queued
again, or cancelled, or failed after ORCH_MAX_ATTEMPTS attempts: the attempt counts, as a crash does).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select, update

from shared.store import holder
from shared.store.clock import db_now
from shared.store.db import Store, updated
from shared.store.lease import Lease
from shared.store.reads import lease_expired, lease_of
from shared.store.schema import Job, JobStatus


@dataclass(frozen=True)
class TakenOver:
    """A job whose lease the sweeper took: `outcome` queued means its task must be re-sent."""

    job_id: int
    kind: str
    queue: str
    holder: str | None
    attempts: int
    outcome: JobStatus
    cause: str  # why, as the job's history says it


def take_expired(store: Store, ttl: float, owner: str, max_attempts: int,
                 skip: Collection[int] = ()) -> list[TakenOver]:
    """Every job whose lease expired. `skip`: jobs whose holder is alive in this process and ends
    the attempt itself (see worker/sweeper.py)."""
    expired = lease_expired(ttl)
    taken = []
    for row in _running(store, expired, skip):
        # the silence itself, not the TTL: a sweeper that was down too takes over later than that
        cause = (f"lease of {row.worker_host} expired (no heartbeat for {row.silent_s:.0f} s; the lease is "
                 f"{lease_of(row.lease_ttl, ttl):g} s)")
        taken.append(_take(store, row, expired, cause, owner, max_attempts))
    return [t for t in taken if t is not None]


def take_orphaned(store: Store, owner: str, max_attempts: int) -> list[TakenOver]:
    """Every job whose holder is a process of this machine that no longer runs, lease expired or not."""
    machine = holder.this_machine()
    if machine is None:
        return []
    taken = []
    for row in _running(store, Job.holder_process.startswith(machine, autoescape=True)):
        if holder.gone(row.holder_process):
            cause = f"{row.worker_host} is gone (its process {holder.pid_of(row.holder_process)} on this machine ended)"
            taken.append(_take(store, row, Job.holder_process == row.holder_process, cause, owner, max_attempts))
    return [t for t in taken if t is not None]


def _running(store: Store, reason: ColumnElement[bool], skip: Collection[int] = ()) -> list[Any]:
    with store.session() as s:
        return list(s.execute(select(Job.id, Job.lease_token, Job.kind, Job.queue, Job.worker_host, Job.attempts,
                                     Job.holder_process, Job.lease_ttl, (db_now() - Job.heartbeat_at).label("silent_s"))
                              .where(Job.status == JobStatus.running, reason, Job.id.not_in(list(skip)))).all())


def _take(store: Store, row: Any, still: ColumnElement[bool], cause: str, owner: str,
          max_attempts: int) -> TakenOver | None:
    """token + 1 if the job is as it was read and `still` holds; then its history line and requeue.
    None: renewed, ended or taken meanwhile (by its holder, or another sweeper that was first)."""
    with store.session() as s:
        if updated(s, update(Job).where(Job.id == row.id, Job.lease_token == row.lease_token,
                                        Job.status == JobStatus.running, still)
                   .values(lease_token=row.lease_token + 1, heartbeat_at=db_now())) != 1:
            return None
    lease = Lease(store, row.id, row.lease_token + 1)
    lease.add_event("warning", f"{cause}; taken over by {owner} after attempt {row.attempts}")
    outcome = lease.requeue(cause, max_attempts, event=False)
    if outcome is None:
        return None
    return TakenOver(row.id, str(row.kind), row.queue, row.worker_host, row.attempts, outcome, cause)
