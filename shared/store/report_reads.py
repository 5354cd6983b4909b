"""What `orch report` reads: a study and its training runs, as plain records (no ORM objects leave).

All the report's SQL is here, so the report's analysis works on plain data and tests can build
records without a database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, null, select
from sqlalchemy.orm import Session, aliased, undefer

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
    test_acc: float | None = None  # the latest scoring run that is this job's test accuracy (Score.is_test)
    test_precision: str | None = None  # the precision that scoring run ran in (int8: a quantized copy)
    error: str | None = None  # why it failed or was cancelled
    study: str | None = None  # its study's name (its id where it has none), for a leaderboard of every run
    attempts: int = 1  # more than one: taken over from a worker that died, or retried
    val_hits: dict[str, Any] | None = None  # which validation images its best and last epoch got right
    test_hits: dict[str, Any] | None = None  # which test images the scoring run of test_acc got right
    test_images: int | None = None  # how many images that scoring run scored (every one labelled)


def ended_why(status: str, error: str | None, when: str = "") -> str:
    """'failed after epoch 2 of 4: NonFiniteLoss: ...': a job left out of a study's statistics, with
    why where it failed (the report named the job and not the cause, which only `orch status ID` had)."""
    if status != "failed" or not error:
        return f"{status}{when}"
    return f"{status}{when}: {error if len(error) <= 100 else error[:99] + '…'}"


class ScoredTest(NamedTuple):
    accuracy: float
    precision: str | None  # what the scoring run ran in ("int8", "bf16", "fp32"; shards may differ: "bf16,int8")
    images: int = 0  # how many it scored (every one labelled: Score.is_test)
    hits: dict[str, Any] | None = None  # which it got right (Score.hits), where read


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
    return [(study_id, name) for study_id, name in session.execute(select(Study.id, Study.name).order_by(Study.id))]


def training_runs(session: Session, study_id: int | None = None, job_ids: list[int] | None = None) -> list[RunRecord]:
    """Training jobs that recorded at least one epoch: all, one study's, or the listed ones, by id."""
    selected = [Job.kind == JobKind.train, *([Job.study_id == study_id] if study_id is not None else []),
                *([Job.id.in_(job_ids)] if job_ids is not None else [])]
    # the epochs as plain rows, not ORM objects: a study of 100 runs has 2,000 of them
    epochs: dict[int, list[dict[str, float]]] = {}
    for job_id, *values in session.execute(select(Epoch.job_id, *(getattr(Epoch, c) for c in EPOCH_COLUMNS))
                                           .join(Job, Job.id == Epoch.job_id).where(*selected)
                                           .order_by(Epoch.job_id, Epoch.epoch)):
        epochs.setdefault(job_id, []).append(dict(zip(EPOCH_COLUMNS, values, strict=True)))
    jobs = session.scalars(select(Job).options(undefer(Job.val_hits)).where(*selected).order_by(Job.id))
    tests = _latest_test_accuracy(session, study_id=study_id, job_ids=job_ids, hits=True)
    return [_record(job, epochs[job.id], tests.get(job.id)) for job in jobs if job.id in epochs]


def runs_without_epochs(session: Session, study_id: int) -> list[tuple[int, str]]:
    """(id, status) of the study's training jobs that recorded no epoch (queued, cancelled or failed
    before their first): absent from the statistics, so a report names them."""
    has_epoch = select(Epoch.job_id).where(Epoch.job_id == Job.id).exists()
    rows = session.execute(select(Job.id, Job.status, Job.error).where(
        Job.kind == JobKind.train, Job.study_id == study_id, ~has_epoch).order_by(Job.id))
    return [(job_id, ended_why(str(status), error)) for job_id, status, error in rows]


def job_specs(session: Session, job_ids: list[int]) -> dict[int, dict[str, Any]]:
    """id -> spec of the listed jobs (a study's jobs not in its statistics: what their configs are)."""
    if not job_ids:
        return {}
    return {job_id: dict(spec) for job_id, spec in session.execute(select(Job.id, Job.spec).where(Job.id.in_(job_ids)))}


def _latest_test_accuracy(session: Session, *, study_id: int | None = None,
                          job_ids: list[int] | None = None, hits: bool = False) -> dict[int, ScoredTest]:
    """The latest scored test accuracy of each training job (of one study, of the listed jobs, or of
    all) and the precision it was scored in, joined in SQL: an IN list of every job id (10,000 bind
    parameters) took 0.17 s on PostgreSQL. With `hits`, which images it got right (kB a run: a
    study's report reads them, the leaderboard of every run does not)."""
    scorer = aliased(Job)  # the scoring run's own job: its result says which precision ran
    query = (select(Score.source_job_id, Score.accuracy, scorer.result, Score.n_images, Score.hits if hits else null())
             .join(Job, Job.id == Score.source_job_id)
             .join(scorer, scorer.id == Score.job_id).where(Score.accuracy.is_not(None), Score.is_test)
             .order_by(Score.id))
    if study_id is not None:
        query = query.where(Job.study_id == study_id)
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    return {job_id: ScoredTest(acc, (result or {}).get("precision"), images, found)
            for job_id, acc, result, images, found in session.execute(query) if job_id is not None and acc is not None}


def _record(job: Job, epochs: list[dict[str, float]], test: ScoredTest | None) -> RunRecord:
    return RunRecord(id=job.id, status=str(job.status), spec=dict(job.spec), model_info=dict(job.model_info or {}),
                     result=dict(job.result or {}), worker_host=job.worker_host, started_at=job.started_at,
                     finished_at=job.finished_at, epochs=epochs, test_acc=test.accuracy if test else None,
                     test_precision=test.precision if test else None, error=job.error, attempts=job.attempts,
                     val_hits=job.val_hits, test_hits=test.hits if test else None,
                     test_images=test.images if test else None)


@dataclass(frozen=True)
class LeaderboardEntry:
    """A training run as the leaderboard ranks it: its best epoch, its last and its epochs' totals,
    without the curve."""

    id: int
    val_acc: float
    val_loss: float  # at the best epoch
    last_val_acc: float
    images_per_s: float  # the mean over epochs
    epochs: int
    seconds: float
    test_acc: float | None
    test_precision: str | None = None


def leaderboard_entries(session: Session, study_id: int | None = None, *, metric: str = "val_acc",
                        descending: bool = True, limit: int = 0) -> tuple[list[LeaderboardEntry], int]:
    """The `limit` best training runs with an epoch (0: all) by `metric`, one of LeaderboardEntry's
    numbers: best first, the lowest job id first on a tie; and how many runs there are. By test_acc,
    the runs with a test accuracy only (the others ranked 2nd to 6th with an empty cell). Ranked and cut in SQL (a lab's store holds 10^5 epoch rows or more).

    A run's best epoch is its highest val_acc, the earliest on a tie: the same rule as
    orchestrator.analysis.configs.run_value, which applies it to a study's full curves. It is one
    index seek per run (ix_epochs_best); the epochs' totals are read for the runs shown only.
    Ranking every run's epochs with a window function, then summing them all, took 0.3 s on SQLite
    and 0.1 s on PostgreSQL for 200,000 epoch rows; this takes 10-40 ms.
    """
    run = aliased(Epoch)  # a run's epochs, beside the best one the query joins
    best_epoch = (select(run.id).where(run.job_id == Job.id).order_by(run.val_acc.desc(), run.epoch).limit(1)
                  .correlate(Job).scalar_subquery())
    last_epoch_acc = (select(run.val_acc).where(run.job_id == Job.id).order_by(run.epoch.desc()).limit(1)
                      .correlate(Job).scalar_subquery())  # one seek of uq_epochs_job_epoch per run
    ranked_by: Any = {
        "val_acc": Epoch.val_acc, "val_loss": Epoch.val_loss, "last_val_acc": last_epoch_acc,
        "test_acc": (select(Score.accuracy).where(Score.source_job_id == Job.id, Score.accuracy.is_not(None),
                                                  Score.is_test)
                     .order_by(Score.id.desc()).limit(1).correlate(Job).scalar_subquery()),  # as _latest_test_accuracy
        "images_per_s": select(func.avg(run.images_per_s)).where(run.job_id == Job.id).correlate(Job).scalar_subquery(),
    }[metric]
    in_scope = [Job.kind == JobKind.train, *([Job.study_id == study_id] if study_id is not None else []),
                *([ranked_by.is_not(None)] if metric == "test_acc" else [])]  # by test accuracy: the scored runs
    query = (select(Job.id, Epoch.val_acc, Epoch.val_loss, func.count().over()).join(Epoch, Epoch.id == best_epoch)
             .where(*in_scope).order_by((ranked_by.desc() if descending else ranked_by.asc()).nulls_last(), Job.id))
    rows = session.execute(query.limit(limit) if limit else query).all()
    shown = [row[0] for row in rows]
    # with --limit 0 every run is shown: selected as above, not as a list of 10^4 ids to bind (0.17 s on PostgreSQL)
    runs = shown if limit else select(Job.id).where(*in_scope)
    totals = {job_id: (int(n), float(ips), float(secs)) for job_id, n, ips, secs in session.execute(
        select(Epoch.job_id, func.count(), func.avg(Epoch.images_per_s), func.sum(Epoch.seconds))
        .where(Epoch.job_id.in_(runs)).group_by(Epoch.job_id))}
    tests = _latest_test_accuracy(session, study_id=study_id, job_ids=shown if limit else None)
    last_epoch = (select(Epoch.job_id, func.max(Epoch.epoch).label("epoch")).where(Epoch.job_id.in_(runs))
                  .group_by(Epoch.job_id).subquery())
    last_acc = {job_id: acc for job_id, acc in session.execute(select(Epoch.job_id, Epoch.val_acc).join(
        last_epoch, (Epoch.job_id == last_epoch.c.job_id) & (Epoch.epoch == last_epoch.c.epoch)))}
    entries = [LeaderboardEntry(job_id, acc, loss, last_acc[job_id], totals[job_id][1], totals[job_id][0],
                                totals[job_id][2], *_scored(tests.get(job_id))) for job_id, acc, loss, _ in rows]
    return entries, rows[0][3] if rows else 0


def _scored(test: ScoredTest | None) -> tuple[float | None, str | None]:
    """(test_acc, test_precision), as a LeaderboardEntry takes them."""
    return (test.accuracy, test.precision) if test else (None, None)


def jobs_by_id(session: Session, job_ids: list[int]) -> dict[int, RunRecord]:
    """The listed jobs' records without their epochs (what a leaderboard row shows beside the numbers)."""
    rows = session.execute(select(Job, Study.name).outerjoin(Study, Study.id == Job.study_id)
                           .where(Job.id.in_(job_ids)))
    return {job.id: RunRecord(id=job.id, status=str(job.status), spec=dict(job.spec),
                              model_info=dict(job.model_info or {}), result=dict(job.result or {}),
                              worker_host=job.worker_host, started_at=job.started_at, finished_at=job.finished_at,
                              study=name or (str(job.study_id) if job.study_id is not None else None))
            for job, name in rows}
