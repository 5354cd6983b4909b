"""Job lifecycle in the store: submit, lease, fenced writes, finish, sweep, cancel, retry.

Every write a worker makes after taking a lease names its fencing token; a write whose token
is no longer the job's current one (the lease expired and another worker took the job) is
refused with StaleLease, so a zombie worker can never overwrite its successor's results.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from shared.errors import StaleLease
from shared.spec import Spec
from shared.store.db import Store
from shared.store.schema import FINISHED, Checkpoint, Epoch, Job, JobKind, JobStatus, Score, Study, utcnow

EPOCH_FIELDS = ("train_loss", "val_loss", "val_acc", "images_per_s", "seconds", "lr")


def add_job(session: Session, kind: JobKind, spec: Spec, **columns: Any) -> Job:
    job = Job(kind=kind, status=JobStatus.queued, spec=spec.model_dump(mode="json"),
              spec_hash=spec.spec_hash(), **columns)
    session.add(job)
    session.flush()
    return job


def find_study(session: Session, name: str) -> Study | None:
    return session.scalars(select(Study).where(Study.name == name)).one_or_none()


def acquire_lease(store: Store, job_id: int, owner: str, ttl: float) -> int | None:
    """Take the job if it is queued, or running under a lease that expired. Returns the token.

    One UPDATE with the conditions in its WHERE clause: of two deliveries racing for the
    same job, exactly one matches a row.
    """
    now = time.time()
    takeable = or_(
        and_(Job.status == JobStatus.queued, Job.cancel_requested.is_(False)),
        and_(Job.status == JobStatus.running, Job.heartbeat_at < now - ttl),
    )
    with store.session() as s:
        token = s.scalar(select(Job.lease_token).where(Job.id == job_id))
        if token is None:
            return None
        taken = s.execute(
            update(Job).where(Job.id == job_id, Job.lease_token == token, takeable).values(
                status=JobStatus.running, lease_token=token + 1, attempts=Job.attempts + 1,
                heartbeat_at=now, worker_host=owner, error=None, started_at=utcnow())
        ).rowcount
    return token + 1 if taken == 1 else None


def _fence(session: Session, job_id: int, token: int) -> None:
    """Refresh the heartbeat, or raise StaleLease if this token no longer holds the job."""
    fresh = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_token == token, Job.status == JobStatus.running)
        .values(heartbeat_at=time.time())
    ).rowcount
    if fresh != 1:
        raise StaleLease(f"job {job_id}: lease token {token} is no longer current")


def heartbeat(store: Store, job_id: int, token: int) -> bool:
    """Keep the lease alive. Returns True when a cancel was requested."""
    with store.session() as s:
        _fence(s, job_id, token)
        return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def record_epoch(store: Store, job_id: int, token: int, metrics: dict[str, Any]) -> bool:
    """Record one epoch's metrics once: a repeat of an epoch already recorded is ignored."""
    with store.session() as s:
        _fence(s, job_id, token)
        epoch = int(metrics["epoch"])
        if s.scalar(select(Epoch.id).where(Epoch.job_id == job_id, Epoch.epoch == epoch)) is not None:
            return False
        attempt = s.scalar(select(Job.attempts).where(Job.id == job_id)) or 1
        values = {k: float(metrics[k]) for k in EPOCH_FIELDS if metrics.get(k) is not None}
        s.add(Epoch(job_id=job_id, epoch=epoch, attempt=attempt, **values))
    return True


def record_checkpoint(store: Store, job_id: int, token: int, tag: str, path: str, epoch: int,
                      val_acc: float | None) -> None:
    with store.session() as s:
        _fence(s, job_id, token)
        row = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.tag == tag)).one_or_none()
        if row is None:
            s.add(Checkpoint(job_id=job_id, tag=tag, path=path, epoch=epoch, val_acc=val_acc))
        else:
            row.path, row.epoch, row.val_acc, row.written_at = path, epoch, val_acc, utcnow()


def update_job(store: Store, job_id: int, token: int, **values: Any) -> None:
    """A fenced update of the job's own columns (model_info, result)."""
    with store.session() as s:
        _fence(s, job_id, token)
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def finish(store: Store, job_id: int, token: int, status: JobStatus, *, error: str | None = None,
           result: dict[str, Any] | None = None) -> bool:
    """End the job under this token. False if the token was stale (nothing written)."""
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error, "cancel_requested": False}
    if result is not None:
        values["result"] = result
    with store.session() as s:
        done = s.execute(
            update(Job).where(Job.id == job_id, Job.lease_token == token, Job.status == JobStatus.running)
            .values(**values)
        ).rowcount
    return done == 1


def release(store: Store, job_id: int, token: int, error: str) -> bool:
    """Give a job back to the queue (a transient fault): it will be leased again."""
    with store.session() as s:
        return s.execute(
            update(Job).where(Job.id == job_id, Job.lease_token == token, Job.status == JobStatus.running)
            .values(status=JobStatus.queued, heartbeat_at=None, error=error)
        ).rowcount == 1


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
    jobs sent for assembly (a sharded score job waits for its shards without one)."""
    with store.session() as s:
        return list(s.scalars(select(Job).where(
            Job.status == JobStatus.queued, or_(Job.kind != JobKind.score, Job.heartbeat_at.is_not(None)))).all())


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


def complete_score(store: Store, job_id: int, token: int, result: dict[str, Any], score: dict[str, Any]) -> None:
    """Record the Score row and end the score job, in one fenced transaction: exactly once."""
    with store.session() as s:
        _fence(s, job_id, token)
        row = s.scalars(select(Score).where(Score.job_id == job_id)).one_or_none()
        if row is None:
            s.add(Score(job_id=job_id, **score))
        else:
            for key, value in score.items():
                setattr(row, key, value)
        s.execute(update(Job).where(Job.id == job_id).values(
            status=JobStatus.succeeded, result=result, error=None, finished_at=utcnow(), cancel_requested=False))


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
