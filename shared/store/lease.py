"""The one write path of a worker, a shard or the sweeper: a `Lease` on one job.

A lease is a job id plus the fencing token that `Lease.acquire` took. Every change a worker makes
to a job goes through its lease, and each one is a single transaction whose first statement checks
that the token is still the job's current one: once the lease expired and another worker took the
job (token + 1), every write of the old holder is refused with StaleLease, so a zombie worker can
never overwrite its successor's results. CLI readers never write through a lease.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from shared.errors import StaleLease
from shared.store.db import Store, updated
from shared.store.schema import Assembly, Checkpoint, Epoch, Job, JobStatus, Score, utcnow
from shared.store.scoring_runs import move_assembly

EPOCH_FIELDS = ("train_loss", "val_loss", "val_acc", "images_per_s", "seconds", "lr")


@dataclass(frozen=True)
class Lease:
    store: Store
    job_id: int
    token: int

    @classmethod
    def acquire(cls, store: Store, job_id: int, owner: str, ttl: float) -> Lease | None:
        """Take the job if it is queued, or running under a lease that expired; None if not takeable.

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
        return cls(store, job_id, token + 1) if taken == 1 else None

    @contextmanager
    def fenced(self) -> Iterator[Session]:
        """A transaction that first renews the heartbeat, or raises StaleLease if the token is stale."""
        with self.store.session() as s:
            fresh = s.execute(
                update(Job).where(Job.id == self.job_id, Job.lease_token == self.token,
                                  Job.status == JobStatus.running)
                .values(heartbeat_at=time.time())
            ).rowcount
            if fresh != 1:
                raise StaleLease(f"job {self.job_id}: lease token {self.token} is no longer current")
            yield s

    def heartbeat(self) -> bool:
        """Keep the lease alive. Returns True when a cancel was requested."""
        with self.fenced() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))

    def record_epoch(self, metrics: dict[str, Any]) -> bool:
        """Record one epoch's metrics once: a repeat of an epoch already recorded is ignored."""
        with self.fenced() as s:
            epoch = int(metrics["epoch"])
            if s.scalar(select(Epoch.id).where(Epoch.job_id == self.job_id, Epoch.epoch == epoch)) is not None:
                return False
            attempt = s.scalar(select(Job.attempts).where(Job.id == self.job_id)) or 1
            values = {k: float(metrics[k]) for k in EPOCH_FIELDS if metrics.get(k) is not None}
            s.add(Epoch(job_id=self.job_id, epoch=epoch, attempt=attempt, **values))
        return True

    def record_checkpoint(self, tag: str, path: str, epoch: int, val_acc: float | None) -> None:
        with self.fenced() as s:
            row = s.scalars(select(Checkpoint).where(Checkpoint.job_id == self.job_id,
                                                     Checkpoint.tag == tag)).one_or_none()
            if row is None:
                s.add(Checkpoint(job_id=self.job_id, tag=tag, path=path, epoch=epoch, val_acc=val_acc))
            else:
                row.path, row.epoch, row.val_acc, row.written_at = path, epoch, val_acc, utcnow()

    def update(self, **values: Any) -> None:
        """A fenced update of the job's own columns (model_info, result)."""
        with self.fenced() as s:
            s.execute(update(Job).where(Job.id == self.job_id).values(**values))

    def finish(self, status: JobStatus, *, error: str | None = None, result: dict[str, Any] | None = None) -> bool:
        """End the job under this token. False if the token was stale (nothing written)."""
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error,
                                  "cancel_requested": False}
        if result is not None:
            values["result"] = result
        return self._end(values)

    def release(self, error: str) -> bool:
        """Give the job back to the queue (a transient fault): it will be leased again."""
        return self._end({"status": JobStatus.queued, "heartbeat_at": None, "error": error})

    def _end(self, values: dict[str, Any]) -> bool:
        with self.store.session() as s:
            return s.execute(
                update(Job).where(Job.id == self.job_id, Job.lease_token == self.token,
                                  Job.status == JobStatus.running).values(**values)
            ).rowcount == 1

    # --- a scoring run (the protocol: shared/scoring/protocol.py) ---

    def fail_parent(self, parent_id: int, error: str) -> bool:
        """A shard fails its waiting score job: waiting -> failed (never a run being assembled)."""
        with self.fenced() as s:
            return updated(s, move_assembly(parent_id, Assembly.failed, [Assembly.waiting], status=JobStatus.failed,
                                            error=error, finished_at=utcnow()).where(Job.status == JobStatus.queued)) == 1

    def begin_assembly(self) -> None:
        """This lease is the score job's own: waiting | sent | assembling -> assembling."""
        with self.fenced() as s:
            moving = [Assembly.waiting, Assembly.sent, Assembly.assembling]
            if updated(s, move_assembly(self.job_id, Assembly.assembling, moving)) != 1:
                raise StaleLease(f"score job {self.job_id}: its run ended; nothing to assemble")

    def fail_assembly(self, error: str) -> bool:
        """assembling -> failed: the score job fails and --out stays as it was."""
        with self.store.session() as s:
            return updated(s, move_assembly(self.job_id, Assembly.failed, [Assembly.assembling], status=JobStatus.failed,
                                            error=error, finished_at=utcnow(), cancel_requested=False)
                           .where(Job.lease_token == self.token, Job.status == JobStatus.running)) == 1

    def complete_score(self, result: dict[str, Any], score: dict[str, Any]) -> None:
        """assembling -> done: the Score row and the score job's end, in one fenced transaction: exactly once."""
        with self.fenced() as s:
            row = s.scalars(select(Score).where(Score.job_id == self.job_id)).one_or_none()
            if row is None:
                s.add(Score(job_id=self.job_id, **score))
            else:
                for key, value in score.items():
                    setattr(row, key, value)
            done = move_assembly(self.job_id, Assembly.done, [Assembly.assembling], status=JobStatus.succeeded,
                                 result=result, error=None, finished_at=utcnow(), cancel_requested=False)
            if updated(s, done) != 1:  # raising rolls the Score row back too
                raise StaleLease(f"score job {self.job_id}: not being assembled any more")
