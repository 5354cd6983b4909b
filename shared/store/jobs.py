"""Job lifecycle in the store outside a lease: submit, sweep, cancel, retry, and scoring runs' reads.

A worker's writes to a job it runs go through `shared.store.lease.Lease`.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from shared.spec import Spec
from shared.store.db import Store
from shared.store.schema import FINISHED, Event, Job, JobKind, JobStatus, Study, utcnow


def add_job(session: Session, kind: JobKind, spec: Spec, **columns: Any) -> Job:
    job = Job(kind=kind, status=JobStatus.queued, spec=spec.model_dump(mode="json"),
              spec_hash=spec.spec_hash(), **columns)
    session.add(job)
    session.flush()
    return job


def find_study(session: Session, name: str) -> Study | None:
    return session.scalars(select(Study).where(Study.name == name)).one_or_none()


def awaiting_delivery(store: Store) -> list[Job]:
    """Queued jobs that should have a task message in the broker: trains, score shards, and score
    jobs sent for assembly (a sharded score job waits for its shards without one)."""
    with store.session() as s:
        return list(s.scalars(select(Job).where(
            Job.status == JobStatus.queued, or_(Job.kind != JobKind.score, Job.heartbeat_at.is_not(None)))).all())


def request_cancel(session: Session, jobs: Iterable[Job]) -> dict[str, list[int]]:
    """Queued jobs become cancelled at once; running ones are flagged for their worker to stop.

    Each change is an UPDATE conditioned on the status it expects, not a write of what was read: a
    worker releasing the job at the same moment turns a flag on a running job into a queued job
    with the flag set, which nobody would ever take. The release sees the flag and cancels; here
    a job that became queued meanwhile is cancelled on the next round.
    """
    outcome: dict[str, list[int]] = {"cancelled": [], "stopping": [], "unchanged": []}
    for job in jobs:
        outcome[_cancel_one(session, job.id)].append(job.id)
    session.expire_all()  # the caller's Job objects were changed behind the ORM's back
    return outcome


def _cancel_one(session: Session, job_id: int) -> str:
    for _ in range(3):  # queued -> running -> queued again within one call is as far as a race goes
        if session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.queued).values(
                status=JobStatus.cancelled, finished_at=utcnow(), error="cancelled before it started")).rowcount:
            return "cancelled"
        if session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.running)
                           .values(cancel_requested=True)).rowcount:
            return "stopping"
        if session.scalar(select(Job.status).where(Job.id == job_id)) not in (JobStatus.queued, JobStatus.running):
            return "unchanged"
    return "unchanged"


def job_events(session: Session, job_id: int) -> list[Event]:
    """A job's history (takeovers, checkpoint fallbacks, self-fencing), oldest first."""
    return list(session.scalars(select(Event).where(Event.job_id == job_id).order_by(Event.at, Event.id)))


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
    returned once (heartbeat_at marks it sent) for the caller to send as an `orch.score` task,
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
                to_send.append(parent)
    return to_send
