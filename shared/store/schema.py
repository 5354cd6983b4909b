"""Tables. Spec JSON is stored verbatim with its hash; workers write under a fencing token."""
from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# defined apart from the tables (the CLI's light modules name them), imported from here with them
from shared.job_status import FINISHED as FINISHED
from shared.job_status import JobStatus as JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class JobKind(enum.StrEnum):
    train = "train"
    score = "score"  # the parent of a scoring run: assembles the CSV when its shards are done
    score_shard = "score_shard"


class Assembly(enum.StrEnum):
    """Where a scoring run's parent job stands with its CSV (the state machine: shared/scoring/protocol.py)."""

    waiting = "waiting"  # its shards run; it has no task message
    sent = "sent"  # every shard succeeded but none assembled: an orch.score task was sent for it
    assembling = "assembling"  # a lease holder writes --out (re-sent if that holder dies)
    done = "done"  # --out written and the Score recorded: the parent succeeded
    failed = "failed"  # a shard or the assembly failed, or the run was cancelled: --out untouched


# The state machine's moves: each state -> the states it may move to. Every UPDATE of the column is
# built from this table (shared/store/scoring_runs.py move_assembly); who moves when: protocol.py.
ASSEMBLY_MOVES: dict[Assembly, frozenset[Assembly]] = {
    Assembly.waiting: frozenset({Assembly.assembling, Assembly.sent, Assembly.failed}),
    Assembly.sent: frozenset({Assembly.assembling, Assembly.failed}),
    Assembly.assembling: frozenset({Assembly.assembling, Assembly.done, Assembly.failed}),
    Assembly.failed: frozenset({Assembly.waiting}),
    Assembly.done: frozenset(),
}


def check_moves(sources: Iterable[Assembly | str | None], to: Assembly) -> None:
    """ValueError unless every one of `sources` may move to `to`."""
    illegal = [s for s in sources if s is None or to not in ASSEMBLY_MOVES[Assembly(s)]]
    if illegal:
        raise ValueError(f"assembly: {illegal[0]} -> {to} is not a move of the scoring protocol")


class Outcome(enum.StrEnum):
    """How one run of a job's process ended, as the worker classifies it (worker/child.py classify)."""

    succeeded = "succeeded"
    failed = "failed"  # permanent: the job fails at once with the reason
    cancelled = "cancelled"
    transient = "transient"  # a service did not answer: retried a few times before it fails
    stale = "stale"  # the lease was lost to another worker: nothing is recorded
    shutdown = "shutdown"  # the worker is stopping: the job goes back to the queue
    crashed = "crashed"  # the job's process died without a report: requeued until ORCH_MAX_ATTEMPTS
    fenced = "fenced"  # the worker could not renew its lease and stopped the job itself: requeued
    store_lost = "store_lost"  # the job's process gave up on a store that did not answer: requeued, uncounted
    outdated = "outdated"  # the store's schema is not this worker's orch's: requeued, uncounted; the worker stops
    skipped = "skipped"  # not taken: finished, cancelled, or leased by a live worker

    @property
    def job_status(self) -> JobStatus:
        """The status a job ends with after this outcome (transient: after its last retry)."""
        return {Outcome.succeeded: JobStatus.succeeded, Outcome.cancelled: JobStatus.cancelled}.get(
            self, JobStatus.failed)


class StoreInfo(Base):
    """One row: the store's identity, made once with its schema. A worker writes it into the artifacts
    folder it uses (worker/artifacts_owner.py), so that a second store pointed at the same folder is
    refused: job ids are the store's own, and its job 1 would write over the first store's job 1."""
    __tablename__ = "store_info"
    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    store_id: Mapped[str] = mapped_column(String(36))  # a uuid4


GRID_SUBMISSIONS = "_submissions"  # Study.grid's key: each submission's options, in order (an extended study)


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), unique=True)
    # the options the study was submitted with; extended, each option's values over its submissions,
    # and under GRID_SUBMISSIONS the list of each submission's own options
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    jobs: Mapped[list[Job]] = relationship(back_populates="study")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"), Index("ix_jobs_study_hash", "study_id", "spec_hash"))
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[JobKind] = mapped_column(String(20))
    status: Mapped[JobStatus] = mapped_column(String(20), default=JobStatus.queued)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))  # score shard -> score job
    source_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))  # score -> train job
    shard: Mapped[int | None] = mapped_column(Integer)
    queue: Mapped[str] = mapped_column(String(100), default="orch")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # attempts when `orch retry` last requeued it: ORCH_MAX_ATTEMPTS counts those since
    retried_at_attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker_host: Mapped[str | None] = mapped_column(String(200))
    # the process holding the lease, for a same-machine check that it still runs (shared/store/holder.py)
    holder_process: Mapped[str | None] = mapped_column(String(120))
    lease_token: Mapped[int] = mapped_column(Integer, default=0)  # fencing token, +1 per lease taken
    # unix seconds of the last heartbeat: plain numbers compare the same way on SQLite and PostgreSQL
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    # the holder's own ORCH_LEASE_TTL, taken with the lease: every sweeper and reader judges the lease by
    # it, so a 30 s worker never takes the job of a 120 s one that it thinks silent (before the holder
    # fences itself, at 0.8 of its own TTL); None: a lease taken before this column (the reader's TTL)
    lease_ttl: Mapped[float | None] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    model_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # describe(spec): params, gmacs...
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # best_val_acc, wall time, ...
    # a running training job's place inside its epoch (epoch, step, steps, images_per_s, at): an epoch
    # of real data runs for minutes to hours, and --wait and `orch status` said nothing meanwhile
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    assembly: Mapped[Assembly | None] = mapped_column(String(20))  # a scoring run's parent only
    # a finished training job's validation hits at its best and last epoch (shared/val_hits.py): kB a
    # run, read by a study's report only, so not loaded with the row
    val_hits: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    study: Mapped[Study | None] = relationship(back_populates="jobs")
    epochs: Mapped[list[Epoch]] = relationship(order_by="Epoch.epoch", cascade="all, delete-orphan")


class Epoch(Base):
    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_epochs_job_epoch"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float] = mapped_column(Float)
    val_acc: Mapped[float] = mapped_column(Float)
    images_per_s: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer, default=1)  # which attempt recorded it
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Each run's best epoch, as the leaderboard ranks them (report_reads.leaderboard_entries): read in
# index order, no sort of every epoch row. For 200,000 epochs on PostgreSQL the sort spilled to disk
# (208 ms); the index scan took 110 ms.
Index("ix_epochs_best", Epoch.job_id, Epoch.val_acc.desc(), Epoch.epoch)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "tag", name="uq_checkpoints_job_tag"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    tag: Mapped[str] = mapped_column(String(20))  # last | previous (the one before last) | best
    path: Mapped[str] = mapped_column(Text)  # a file named for its epoch and its attempt's token
    digest: Mapped[str | None] = mapped_column(String(64))  # sha256 of the file as written
    epoch: Mapped[int] = mapped_column(Integer)
    val_acc: Mapped[float | None] = mapped_column(Float)
    written_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Event(Base):
    """A job's history beyond its epochs: takeovers, fallbacks to an older checkpoint, self-fencing."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(20))  # info | warning | traceback (an unexpected error's, its last lines)
    message: Mapped[str] = mapped_column(Text)


class Score(Base):
    __tablename__ = "scores"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)  # the score job
    source_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    out: Mapped[str] = mapped_column(Text)
    n_images: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float | None] = mapped_column(Float)
    # the source job's test accuracy (every image labelled, its best checkpoint, a held-out folder):
    # only these are the report's test_acc
    is_test: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    images_per_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # a test score's hits: which images it got right ({"set", "images", "hits"}: shared/val_hits.py),
    # for the report's test_acc comparisons; kB a run, loaded only by a study's report
    hits: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)


class Outbox(Base):
    """A broker message that a state change owes, recorded in that change's own transaction.

    Whoever made the change sends it after the commit and marks it sent; the relay in every worker
    (shared/delivery.py) sends what nobody sent and re-sends what was lost. A row is confirmed when
    its job leaves `queued` (a worker leased it, it was cancelled...): the message did its work.
    Times are unix seconds, as heartbeat_at.
    """
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_open", "confirmed_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # the task to send: orch.<kind>
    queue: Mapped[str] = mapped_column(String(100))
    label: Mapped[str | None] = mapped_column(Text)  # the message's argsrepr (shared.task_label)
    created_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float)  # the last send (or claim to send)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=5)  # shared.config.PRIORITY_*: resumed jobs first
    confirmed_at: Mapped[float | None] = mapped_column(Float)  # job left queued, or a newer row replaced it
    last_error: Mapped[str | None] = mapped_column(Text)
