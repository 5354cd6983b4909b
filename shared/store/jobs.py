"""Job lifecycle in the store outside a lease: submit, sweep, cancel, retry, and scoring runs' reads.

A worker's writes to a job it runs go through `shared.store.lease.Lease`.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.spec import Spec
from shared.store.db import Store
from shared.store.outbox import owe
from shared.store.schema import FINISHED, Job, JobKind, JobStatus, Study, utcnow


def add_job(session: Session, kind: JobKind, spec: Spec, **columns: Any) -> Job:
    job = Job(kind=kind, status=JobStatus.queued, spec=spec.model_dump(mode="json"),
              spec_hash=spec.spec_hash(), **columns)
    session.add(job)
    session.flush()
    return job


def find_study(session: Session, name: str) -> Study | None:
    return session.scalars(select(Study).where(Study.name == name)).one_or_none()


def requeue_expired(store: Store, ttl: float) -> list[Job]:
    """Running jobs whose heartbeat stopped go back to queued, each with its message owed in the
    same transaction (the outbox); the caller sends them."""
    cutoff = time.time() - ttl
    requeued: list[Job] = []
    with store.session() as s:
        stale = s.scalars(select(Job).where(Job.status == JobStatus.running, Job.heartbeat_at < cutoff)).all()
        for job in stale:
            back = s.execute(
                update(Job).where(Job.id == job.id, Job.lease_token == job.lease_token,
                                  Job.status == JobStatus.running, Job.heartbeat_at < cutoff)
                .values(status=JobStatus.queued, error=f"lease expired on {job.worker_host}; requeued")
            ).rowcount
            if back == 1:
                owe(s, job, resume=True)
                requeued.append(job)
    return requeued


def request_cancel(session: Session, jobs: Iterable[Job]) -> dict[str, list[int]]:
    """Queued jobs become cancelled at once; running ones are flagged for their worker to stop."""
    outcome: dict[str, list[int]] = {"cancelled": [], "stopping": [], "unchanged": []}
    for job in jobs:
        if job.status == JobStatus.queued:
            job.status, job.finished_at, job.error = JobStatus.cancelled, utcnow(), "cancelled before it started"
            outcome["cancelled"].append(job.id)
        elif job.status == JobStatus.running:
            job.cancel_requested = True
            outcome["stopping"].append(job.id)
        else:
            outcome["unchanged"].append(job.id)
    return outcome


def reset_for_retry(session: Session, jobs: Iterable[Job]) -> list[Job]:
    """Failed or cancelled jobs go back to queued (their checkpoints stay, so training resumes)."""
    again = [job for job in jobs if job.status in (JobStatus.failed, JobStatus.cancelled)]
    for job in again:
        job.status, job.error, job.cancel_requested, job.finished_at = JobStatus.queued, None, False, None
    return again


def is_finished(status: str) -> bool:
    return status in {s.value for s in FINISHED}


# --- scoring runs: a parent job that no worker leases until its shards are done ---

def shard_jobs(store: Store, parent_id: int) -> list[Job]:
    """The shard jobs of a score job, by shard index (detached snapshots)."""
    with store.session() as s:
        return list(s.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.shard)))


def shard_progress(session: Session, parent_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """(succeeded, total) shards of each of these score jobs."""
    counts: dict[int, tuple[int, int]] = {}
    rows = session.execute(select(Job.parent_id, Job.status).where(Job.parent_id.in_(list(parent_ids))))
    for parent_id, status in rows:
        done, total = counts.get(parent_id, (0, 0))
        counts[parent_id] = (done + (status == JobStatus.succeeded), total + 1)
    return counts


def parent_status(store: Store, parent_id: int) -> str | None:
    with store.session() as s:
        return s.scalar(select(Job.status).where(Job.id == parent_id))


def fail_parent(store: Store, parent_id: int, error: str) -> bool:
    """Fail a score job whose shard failed; only while it waits (never over an assembly under lease)."""
    with store.session() as s:
        return s.execute(
            update(Job).where(Job.id == parent_id, Job.status == JobStatus.queued)
            .values(status=JobStatus.failed, error=error, finished_at=utcnow())
        ).rowcount == 1


def settle_score_parents(store: Store) -> list[Job]:
    """Score jobs whose shards have all ended but that nobody settled (the last shard's process died).

    A failed or cancelled shard fails the parent here; when every shard succeeded the parent is
    returned once (heartbeat_at marks it sent, and its message is owed in the outbox) for the caller
    to send as an `orch.score` task,
    whose worker assembles the CSV.
    """
    to_send: list[Job] = []
    with store.session() as s:
        parents = s.scalars(select(Job).where(Job.kind == JobKind.score, Job.status == JobStatus.queued)).all()
        for parent in parents:
            shards = s.scalars(select(Job).where(Job.parent_id == parent.id)).all()
            if not shards or not all(is_finished(shard.status) for shard in shards):
                continue
            failed = [shard for shard in shards if shard.status != JobStatus.succeeded]
            if failed:
                parent.status, parent.finished_at = JobStatus.failed, utcnow()
                parent.error = f"shard {failed[0].shard} (job {failed[0].id}): {failed[0].error or failed[0].status}"
            elif parent.heartbeat_at is None:
                parent.heartbeat_at = time.time()
                owe(s, parent, resume=True)
                to_send.append(parent)
    return to_send
