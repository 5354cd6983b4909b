"""The CLI's reads of jobs, studies and checkpoints: every query the commands run lives here.

Session convention (every store module): a function that takes a `Session` runs in the caller's
transaction (the commands open one per command, so the rows it returns stay loaded while they
print them); one that takes a `Store` opens and closes its own. The writes beside these: jobs.py
(submit, cancel, retry, sweep), scoring_runs.py, lease.py (a worker's); the report's reads:
report_reads.py.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from shared.store.schema import FINISHED, Checkpoint, Epoch, Event, Job, JobKind, JobStatus, Score, StoreInfo, Study


def store_id(session: Session) -> str:
    """The store's identity, made with its schema (migration 0008)."""
    found = session.scalar(select(StoreInfo.store_id).where(StoreInfo.id == 1))
    if found is None:  # only a schema made without orch's migrations lacks it
        raise RuntimeError("the store has no store_info row: its schema was not made by `orch db upgrade`")
    return found


def job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def recent_jobs(session: Session, limit: int, study_id: int | None = None,
                states: Sequence[str] = ()) -> list[Job]:
    """The newest `limit` jobs (0: all; of one study; in one of `states`, if given), oldest first."""
    query = _listed(select(Job), study_id, states).order_by(Job.id.desc()).limit(limit or None)
    return list(reversed(session.scalars(query).all()))


def count_jobs(session: Session, study_id: int | None = None, states: Sequence[str] = ()) -> int:
    """Every job `recent_jobs` would list without its limit: what the limit left out is said from it."""
    return int(session.scalar(_listed(select(func.count()).select_from(Job), study_id, states)) or 0)


def _listed(query: Select[Any], study_id: int | None, states: Sequence[str]) -> Select[Any]:
    if study_id is not None:
        query = query.where(Job.study_id == study_id)
    if states:
        query = query.where(Job.status.in_(list(states)))
    return query


def lease_expired(fallback_ttl: float) -> ColumnElement[bool]:
    """A job's lease ran out: no heartbeat for its holder's TTL (jobs.lease_ttl), or `fallback_ttl` (the
    caller's ORCH_LEASE_TTL) for a lease taken before that was recorded. Times are the database's."""
    from shared.store.clock import db_now

    return Job.heartbeat_at < db_now() - func.coalesce(Job.lease_ttl, fallback_ttl)


def lease_of(job_ttl: float | None, fallback_ttl: float) -> float:
    """The TTL a job's lease is judged by, as `lease_expired` does in SQL."""
    return job_ttl if job_ttl is not None else fallback_ttl


def running_jobs(session: Session, lease_ttl: float, limit: int = 5) -> list[tuple[int, str | None]]:
    """(id, worker) of the oldest running jobs whose worker beat within its lease (`lease_expired`):
    what keeps the workers from a queued job. A dead worker's job is no busy worker."""
    return [(job_id, worker) for job_id, worker in session.execute(
        select(Job.id, Job.worker_host).where(Job.status == JobStatus.running, ~lease_expired(lease_ttl))
        .order_by(Job.id).limit(limit))]


def queued_ahead(session: Session, job_id: int, queues: Sequence[str]) -> int:
    """Queued jobs on `queues` submitted before `job_id`: those a worker takes first (a resumed job goes
    ahead of them all). A scoring run's parent is not counted: its shards are the jobs that run."""
    return int(session.scalar(select(func.count()).select_from(Job).where(
        Job.status == JobStatus.queued, Job.id < job_id, Job.queue.in_(list(queues)),
        Job.kind != JobKind.score)) or 0)


def not_answering(session: Session, job_ids: Sequence[int], lease_ttl: float) -> dict[int, float]:
    """Those of the running `job_ids` whose lease expired (`lease_expired`), each with the TTL it was
    judged by: the complement of `running_jobs`' live ones (a cancel of them waits for a sweeper)."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.lease_ttl).where(Job.id.in_(list(job_ids)),
                                                                Job.status == JobStatus.running,
                                                                lease_expired(lease_ttl)).order_by(Job.id))
    return {job_id: lease_of(ttl, lease_ttl) for job_id, ttl in rows}


def finished_among(session: Session, job_ids: Collection[int]) -> set[int]:
    """Which of these jobs have ended (succeeded, failed, cancelled): no message of theirs is owed."""
    ids = sorted(set(job_ids))
    found: set[int] = set()
    for start in range(0, len(ids), 500):  # bounded IN lists (SQLite's variable limit on old builds)
        found.update(session.scalars(select(Job.id).where(Job.id.in_(ids[start:start + 500]),
                                                          Job.status.in_(FINISHED))))
    return found


def study_names(session: Session, study_ids: Sequence[int | None]) -> dict[int, str]:
    """The names of these studies that have one (one query for a listing's rows)."""
    ids = {study_id for study_id in study_ids if study_id is not None}
    if not ids:
        return {}
    return {study_id: name for study_id, name in session.execute(select(Study.id, Study.name).where(Study.id.in_(ids)))
            if name is not None}


def study_jobs(session: Session, study_id: int) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.study_id == study_id).order_by(Job.id)))


def with_children(session: Session, job_id: int) -> list[Job]:
    """A job and the jobs under it (a score job's shards); [] if there is no such job."""
    found = session.get(Job, job_id)
    if found is None:
        return []
    return [found, *session.scalars(select(Job).where(Job.parent_id == found.id).order_by(Job.id))]


def jobs_by_id(session: Session, job_ids: Sequence[int]) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.id.in_(list(job_ids)))))


def last_epochs(session: Session, job_ids: Sequence[int]) -> dict[int, tuple[int, float]]:
    """job id -> (its last recorded epoch, that epoch's val accuracy)."""
    last = dict(session.execute(select(Epoch.job_id, func.max(Epoch.epoch)).where(Epoch.job_id.in_(list(job_ids)))
                                .group_by(Epoch.job_id)).all())
    rows = session.scalars(select(Epoch).where(Epoch.job_id.in_(list(job_ids)),
                                               Epoch.epoch.in_(list(last.values()) or [0])))
    return {row.job_id: (row.epoch, row.val_acc) for row in rows if last.get(row.job_id) == row.epoch}


# --- where a scoring run's checkpoint comes from (orch submit score --job | --best-of | --checkpoint) ---

@dataclass(frozen=True)
class TrainedJob:
    """A training job as a checkpoint source: its status, best checkpoint file and class names."""

    id: int
    status: str
    best: str | None  # the best checkpoint's path, as the store records it
    classes: list[str] | None

    @classmethod
    def of(cls, session: Session, row: Job) -> TrainedJob:
        best = session.scalar(select(Checkpoint.path).where(Checkpoint.job_id == row.id, Checkpoint.tag == "best"))
        classes = (row.result or {}).get("classes")
        return cls(row.id, str(row.status), best, [str(c) for c in classes] if classes else None)


def training_job(session: Session, job_id: int) -> TrainedJob | None:
    row = session.get(Job, job_id)
    return TrainedJob.of(session, row) if row is not None and row.kind == JobKind.train else None


def not_training(session: Session, job_id: int, listed: Collection[int] = ()) -> str | None:
    """What job `job_id` is when it is a job but not a training one ('job 15 is a scoring run that scored
    training job 7, ...; give 7'), for a command that wants one: "no training job 15" left the user to find
    which id to give instead. `listed`: the ids the user gave beside it, where the training job may already
    be ('...; drop 15'). None for a training job or no job."""
    row = session.get(Job, job_id)
    if row is None or row.kind == JobKind.train:
        return None
    what = f"a shard of scoring run {row.parent_id}" if row.kind == JobKind.score_shard else "a scoring run"
    if row.source_job_id is None:
        return f"job {job_id} is {what} (of a checkpoint file), not a training job"
    fix = f"drop {job_id}" if row.source_job_id in listed else f"give {row.source_job_id}"
    return f"job {job_id} is {what} that scored training job {row.source_job_id}, not a training job; {fix}"


def best_in_study(session: Session, study_id: int) -> TrainedJob | None:
    """The study's succeeded training job with the best val accuracy (the lowest id on a tie)."""
    rows: list[Any] = list(session.execute(
        select(Job, Checkpoint.val_acc).join(Checkpoint, Checkpoint.job_id == Job.id)
        .where(Job.study_id == study_id, Job.status == JobStatus.succeeded, Checkpoint.tag == "best",
               Checkpoint.val_acc.is_not(None))
    ).all())
    if not rows:
        return None
    return TrainedJob.of(session, max(rows, key=lambda row: (row[1], -row[0].id))[0])


def study_training_jobs(session: Session, study_id: int) -> list[TrainedJob]:
    """The study's training jobs, by id, as checkpoint sources."""
    rows = session.scalars(select(Job).where(Job.study_id == study_id, Job.kind == JobKind.train).order_by(Job.id))
    return [TrainedJob.of(session, row) for row in rows]


def tested_on(session: Session, job_ids: list[int], data: str) -> set[int]:
    """Those of `job_ids` that have a test accuracy scored on the folder `data` (Score.is_test)."""
    if not job_ids:
        return set()
    rows = session.execute(select(Score.source_job_id, Job.spec).join(Job, Job.id == Score.job_id).where(
        Score.source_job_id.in_(job_ids), Score.is_test, Score.accuracy.is_not(None)))
    return {source for source, spec in rows if source is not None and (spec or {}).get("data") == data}


def recorded_digest(session: Session, job_id: int, path: str) -> str | None:
    """The sha256 job `job_id` recorded for the checkpoint file at `path` as it wrote it (None: not its
    file, or written before digests were recorded)."""
    return session.scalar(select(Checkpoint.digest).where(Checkpoint.job_id == job_id, Checkpoint.path == path,
                                                          Checkpoint.digest.is_not(None)).limit(1))


def job_of_checkpoint(session: Session, path: str) -> TrainedJob | None:
    """The training job that wrote this checkpoint file, when the store knows it."""
    job_id = session.scalar(select(Checkpoint.job_id).where(Checkpoint.path == path).limit(1))
    row = session.get(Job, job_id) if job_id is not None else None
    return TrainedJob.of(session, row) if row is not None else None


def job_events(session: Session, job_id: int) -> list[Event]:
    """A job's history (takeovers, checkpoint fallbacks, self-fencing), oldest first."""
    return list(session.scalars(select(Event).where(Event.job_id == job_id).order_by(Event.at, Event.id)))
