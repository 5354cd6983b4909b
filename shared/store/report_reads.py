"""What `orch report` reads: a study and its training runs, as plain records (no ORM objects leave).

All the report's SQL is here, so the report's analysis works on plain data and tests can build
records without a database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from shared.store.schema import Epoch, Job, JobKind, Score, Study


@dataclass(frozen=True)
class StudyRecord:
    id: int
    name: str | None
    grid: dict[str, Any]
    created_at: datetime | None


@dataclass(frozen=True)
class RunRecord:
    """One training job with at least one epoch: its spec, what it built, and its epochs in order."""

    id: int
    status: str
    spec: dict[str, Any]
    model_info: dict[str, Any]
    result: dict[str, Any]
    worker_host: str | None
    started_at: datetime | None
    finished_at: datetime | None
    epochs: list[dict[str, float]] = field(default_factory=list)
    test_acc: float | None = None  # the latest labelled scoring run of this job


EPOCH_COLUMNS = ("epoch", "train_loss", "val_loss", "val_acc", "images_per_s", "seconds")


def resolve_study(session: Session, ref: str) -> StudyRecord | None:
    """A study by id (all digits) or by name; an id wins over a name made of digits."""
    key = ref.strip()
    study = session.get(Study, int(key)) if key.isascii() and key.isdigit() else None  # not '²'
    if study is None:
        study = session.scalars(select(Study).where(Study.name == ref.strip())).one_or_none()
    if study is None:
        return None
    return StudyRecord(id=study.id, name=study.name, grid=dict(study.grid or {}), created_at=study.created_at)


def study_names(session: Session) -> list[tuple[int, str | None]]:
    """Every study's (id, name), for an error that lists what exists."""
    return list(session.execute(select(Study.id, Study.name).order_by(Study.id)).tuples())


def training_runs(session: Session, study_id: int | None = None, job_ids: list[int] | None = None) -> list[RunRecord]:
    """Training jobs that recorded at least one epoch: all, one study's, or the listed ones, by id."""
    query = select(Job).where(Job.kind == JobKind.train).options(selectinload(Job.epochs)).order_by(Job.id)
    if study_id is not None:
        query = query.where(Job.study_id == study_id)
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    jobs = [job for job in session.scalars(query) if job.epochs]
    tests = _latest_test_accuracy(session, study_id=study_id, job_ids=job_ids)
    return [_record(job, tests.get(job.id)) for job in jobs]


def _latest_test_accuracy(session: Session, *, study_id: int | None = None,
                          job_ids: list[int] | None = None) -> dict[int, float]:
    """The latest scored test accuracy of each training job (of one study, of the listed jobs, or of
    all), joined in SQL: an IN list of every job id (10,000 bind parameters) took 0.17 s on PostgreSQL."""
    query = (select(Score.source_job_id, Score.accuracy).join(Job, Job.id == Score.source_job_id)
             .where(Score.accuracy.is_not(None)).order_by(Score.id))
    if study_id is not None:
        query = query.where(Job.study_id == study_id)
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    return {job_id: acc for job_id, acc in session.execute(query) if job_id is not None and acc is not None}


def _record(job: Job, test_acc: float | None) -> RunRecord:
    epochs = [{name: getattr(e, name) for name in EPOCH_COLUMNS} for e in job.epochs]
    return RunRecord(id=job.id, status=str(job.status), spec=dict(job.spec), model_info=dict(job.model_info or {}),
                     result=dict(job.result or {}), worker_host=job.worker_host, started_at=job.started_at,
                     finished_at=job.finished_at, epochs=epochs, test_acc=test_acc)


@dataclass(frozen=True)
class LeaderboardEntry:
    """A training run as the leaderboard ranks it: its best epoch and its epochs' totals, without the curve."""

    id: int
    val_acc: float
    val_loss: float  # at the best epoch
    images_per_s: float  # the mean over epochs
    epochs: int
    seconds: float
    test_acc: float | None


def leaderboard_entries(session: Session, study_id: int | None = None) -> list[LeaderboardEntry]:
    """Every training run with an epoch, reduced in SQL (a lab's store holds 10^5 epoch rows or more).

    The best epoch is the highest val_acc, the earliest on a tie: the same rule as
    orchestrator.analysis.configs.run_value, which applies it to a study's full curves. For one study
    only its epochs are read (ranking every run and filtering afterwards took 0.15 s on PostgreSQL
    and 0.4 s on SQLite for a study of a 200,000-epoch store; 10-30 ms this way). One pass of window
    functions for the totals too was faster on PostgreSQL and 50% slower on SQLite: not used.
    """
    ordered = func.row_number().over(partition_by=Epoch.job_id, order_by=(Epoch.val_acc.desc(), Epoch.epoch))
    best = select(Epoch.job_id, Epoch.val_acc, Epoch.val_loss, ordered.label("place"))
    totals = (select(Epoch.job_id, func.count().label("n"), func.avg(Epoch.images_per_s).label("ips"),
                     func.sum(Epoch.seconds).label("seconds")).group_by(Epoch.job_id))
    if study_id is not None:  # only the study's epochs, not a ranking of every run filtered afterwards
        in_study = Epoch.job_id.in_(select(Job.id).where(Job.study_id == study_id))
        best, totals = best.where(in_study), totals.where(in_study)
    ranked, summed = best.subquery(), totals.subquery()
    query = (select(ranked.c.job_id, ranked.c.val_acc, ranked.c.val_loss, summed.c.ips, summed.c.n, summed.c.seconds)
             .join(summed, summed.c.job_id == ranked.c.job_id).join(Job, Job.id == ranked.c.job_id)
             .where(ranked.c.place == 1, Job.kind == JobKind.train).order_by(ranked.c.job_id))
    rows = session.execute(query).all()
    tests = _latest_test_accuracy(session, study_id=study_id) if rows else {}
    return [LeaderboardEntry(job_id, acc, loss, float(ips), int(n), float(secs), tests.get(job_id))
            for job_id, acc, loss, ips, n, secs in rows]


def jobs_by_id(session: Session, job_ids: list[int]) -> dict[int, RunRecord]:
    """The listed jobs' records without their epochs (what a leaderboard row shows beside the numbers)."""
    jobs = session.scalars(select(Job).where(Job.id.in_(job_ids)))
    return {job.id: RunRecord(id=job.id, status=str(job.status), spec=dict(job.spec),
                              model_info=dict(job.model_info or {}), result=dict(job.result or {}),
                              worker_host=job.worker_host, started_at=job.started_at, finished_at=job.finished_at)
            for job in jobs}
