"""Job lifecycle in the store outside a lease: submit, sweep, cancel, retry.

A worker's writes to a job it runs go through `shared.store.lease.Lease`; a scoring run's own reads
and writes are in `shared.store.scoring_runs`. Session convention (every store module): a function
that takes a `Session` runs in the caller's transaction; one that takes a `Store` opens its own.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from shared.spec import Spec
from shared.store.db import Store
from shared.store.schema import FINISHED, Assembly, Job, JobKind, JobStatus, Study, check_moves, utcnow


def add_job(session: Session, kind: JobKind, spec: Spec, **columns: Any) -> Job:
    job = Job(kind=kind, status=JobStatus.queued, spec=spec.model_dump(mode="json"),
              spec_hash=spec.spec_hash(), **columns)
    session.add(job)
    session.flush()
    return job


def add_study(session: Session, name: str | None, grid: dict[str, Any]) -> Study:
    study = Study(name=name, grid=grid)
    session.add(study)
    session.flush()
    return study


def fail_unsent(session: Session, job_ids: list[int], error: str) -> None:
    """Jobs recorded but whose task could not be sent: failed with the reason (`orch retry` re-sends)."""
    session.execute(update(Job).where(Job.id.in_(job_ids), Job.status == JobStatus.queued)
                    .values(status=JobStatus.failed, error=error))


def find_study(session: Session, name: str) -> Study | None:
    return session.scalars(select(Study).where(Study.name == name)).one_or_none()


def requeue_expired(store: Store, ttl: float) -> list[Job]:
    """Running jobs whose heartbeat stopped go back to queued; the caller re-sends their tasks."""
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
                requeued.append(job)
    return requeued


def awaiting_delivery(store: Store) -> list[Job]:
    """Queued jobs that should have a task message in the broker: trains, score shards, and score
    jobs sent for assembly (a score job waiting for its shards has none)."""
    sent = (Assembly.sent, Assembly.assembling)
    with store.session() as s:
        return list(s.scalars(select(Job).where(
            Job.status == JobStatus.queued, or_(Job.kind != JobKind.score, Job.assembly.in_(sent)))).all())


def request_cancel(session: Session, jobs: Iterable[Job]) -> dict[str, list[int]]:
    """Queued jobs become cancelled at once; running ones are flagged for their worker to stop."""
    outcome: dict[str, list[int]] = {"cancelled": [], "stopping": [], "unchanged": []}
    for job in jobs:
        if job.status == JobStatus.queued:
            job.status, job.finished_at, job.error = JobStatus.cancelled, utcnow(), "cancelled before it started"
            if job.kind == JobKind.score:  # a scoring run's parent: its CSV will not be written
                check_moves([job.assembly], Assembly.failed)
                job.assembly = Assembly.failed
            outcome["cancelled"].append(job.id)
        elif job.status == JobStatus.running:
            job.cancel_requested = True
            outcome["stopping"].append(job.id)
        else:
            outcome["unchanged"].append(job.id)
    return outcome


def reset_for_retry(session: Session, jobs: Iterable[Job]) -> list[Job]:
    """Failed or cancelled jobs go back to queued (their checkpoints stay, so training resumes; a
    scoring run's parent waits for its shards again)."""
    again = [job for job in jobs if job.status in (JobStatus.failed, JobStatus.cancelled)]
    for job in again:
        job.status, job.error, job.cancel_requested, job.finished_at = JobStatus.queued, None, False, None
        if job.kind == JobKind.score:
            check_moves([job.assembly], Assembly.waiting)
            job.assembly = Assembly.waiting
    return again


def is_finished(status: str) -> bool:
    return status in {s.value for s in FINISHED}
