"""The store's side of a scoring run (a parent job and its shard jobs), outside a lease.

Reads for the protocol (shared/scoring/protocol.py), the CLI and `orch status`, and the writes that
no lease covers: recording a run at submit and the sweeper's settling of a parent nobody settled.
The writes of a worker that holds a shard's or the parent's lease are on `Lease`.

Session convention (as in every store module): a function that takes a `Session` runs in the
caller's transaction and never commits; one that takes a `Store` opens and commits its own.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session

from shared.spec import ScoreSpec
from shared.store.db import Store, updated
from shared.store.jobs import add_job
from shared.store.outbox import owe_by_id
from shared.store.schema import FINISHED, Assembly, Job, JobKind, JobStatus, check_moves, utcnow


@dataclass(frozen=True)
class ShardState:
    """What the parent needs to know of one shard job."""

    job_id: int
    shard: int
    status: str
    result: dict[str, Any] | None
    error: str | None = None

    @classmethod
    def of(cls, job: Any) -> ShardState:
        """From a shard's Job row (or anything with its columns)."""
        return cls(job.id, job.shard or 0, str(job.status), job.result, job.error)

    @property
    def done(self) -> bool:
        """Its part file is written and recorded: a retry or redelivery need not score it again."""
        return bool(self.result and self.result.get("part"))

    @property
    def ended(self) -> bool:
        return self.status in {s.value for s in FINISHED}


@dataclass(frozen=True)
class ParentState:
    """A scoring run's parent job as the protocol and the CLI see it."""

    job_id: int
    status: str
    assembly: Assembly | None
    error: str | None
    result: dict[str, Any] | None
    kind: str = JobKind.score
    queue: str = "orch"


def move_assembly(parent_id: int, to: Assembly, sources: Iterable[Assembly], **values: Any) -> Update:
    """The UPDATE that moves a parent from one of `sources` to `to` (setting `values` too); its WHERE
    clause holds the move's condition, so of two movers one changes the row. ValueError for a move
    that is not in the protocol's table."""
    sources = tuple(sources)
    check_moves(sources, to)
    return update(Job).where(Job.id == parent_id, Job.assembly.in_(sources)).values(assembly=to, **values)


def add_score_run(session: Session, spec: ScoreSpec, *, queue: str, source_job_id: int | None) -> tuple[Job, list[Job]]:
    """The parent (waiting for its shards, never sent) and one shard job per shard, in the caller's transaction."""
    parent = add_job(session, JobKind.score, spec, queue=queue, source_job_id=source_job_id,
                     assembly=Assembly.waiting)
    shards = [add_job(session, JobKind.score_shard, spec, queue=queue, parent_id=parent.id,
                      source_job_id=source_job_id, shard=i) for i in range(spec.shards)]
    return parent, shards


def shard_states(store: Store, parent_id: int) -> list[ShardState]:
    """The shards of a scoring run, by shard index."""
    with store.session() as s:
        return [ShardState.of(job) for job in s.scalars(select(Job).where(Job.parent_id == parent_id)
                                                        .order_by(Job.shard))]


def parent_state(store: Store, parent_id: int) -> ParentState | None:
    with store.session() as s:
        job = s.get(Job, parent_id)
        return _parent(job) if job is not None else None


def _parent(job: Job) -> ParentState:
    assembly = Assembly(job.assembly) if job.assembly else None
    return ParentState(job.id, str(job.status), assembly, job.error, job.result, str(job.kind), job.queue)


@dataclass(frozen=True)
class ShardCount:
    """How far a scoring run's shards are: its parent stays queued until the last one ends."""

    succeeded: int = 0
    running: int = 0
    total: int = 0

    def add(self, status: str) -> ShardCount:
        return ShardCount(self.succeeded + (status == JobStatus.succeeded), self.running + (status == JobStatus.running),
                          self.total + 1)


def shard_progress(session: Session, parent_ids: Iterable[int]) -> dict[int, ShardCount]:
    """The shards of each of these score jobs, counted by state."""
    counts: dict[int, ShardCount] = {}
    rows = session.execute(select(Job.parent_id, Job.status).where(Job.parent_id.in_(list(parent_ids))))
    for parent_id, status in rows:
        if parent_id is not None:
            counts[parent_id] = counts.get(parent_id, ShardCount()).add(status)
    return counts


def waiting_parents(store: Store) -> list[tuple[ParentState, list[ShardState]]]:
    """Parents still waiting for their shards, each with its shards: what the sweeper settles."""
    with store.session() as s:
        parents = s.scalars(select(Job).where(Job.kind == JobKind.score, Job.status == JobStatus.queued,
                                              Job.assembly == Assembly.waiting)).all()
        return [(_parent(p), [ShardState.of(j) for j in s.scalars(select(Job).where(Job.parent_id == p.id)
                                                                   .order_by(Job.shard))])
                for p in parents]


def mark_sent(store: Store, parent_id: int) -> bool:
    """waiting -> sent, once (a second sweeper finds it sent), with its orch.score message owed in the
    same transaction (the outbox): the caller sends it, the relay if the caller cannot."""
    with store.session() as s:
        sent = updated(s, move_assembly(parent_id, Assembly.sent, [Assembly.waiting])
                       .where(Job.status == JobStatus.queued)) == 1
        if sent:
            owe_by_id(s, parent_id, resume=True)
        return sent


def fail_waiting(parent_id: int, error: str) -> Update:
    """The UPDATE that fails a run still waiting for its shards: waiting -> failed (never one being assembled)."""
    return move_assembly(parent_id, Assembly.failed, [Assembly.waiting], status=JobStatus.failed,
                         error=error, finished_at=utcnow()).where(Job.status == JobStatus.queued)


def fail_waiting_parent(store: Store, parent_id: int, error: str) -> bool:
    """waiting -> failed, by the sweeper: a shard ended without its part and nobody failed the parent."""
    with store.session() as s:
        return updated(s, fail_waiting(parent_id, error)) == 1
