"""The one write path of a worker, a shard or the sweeper: a `Lease` on one job.

A lease is a job id plus the fencing token that `Lease.acquire` took. Every change a worker makes
to a job goes through its lease, and each one is a single transaction whose first statement checks
that the token is still the job's current one: once the lease expired and another worker took the
job (token + 1), every write of the old holder is refused with StaleLease, so a zombie worker can
never overwrite its successor's results. CLI readers never write through a lease.

Lease times are the database's clock (clock.db_now), never a host's. The sweeper takes an expired
lease too, or one whose holder is a process of its machine that no longer runs (shared/store/takeover.py:
token + 1, then requeue or end the job), so a holder that lost its lease is refused from that moment
on, not only once another worker has leased the job again.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import and_, delete, false, func, literal, or_, select, update
from sqlalchemy.orm import Session

from shared.errors import NonFiniteLoss, StaleLease, StoreUnavailable
from shared.store import holder, outbox
from shared.store.clock import db_now, read_now
from shared.store.db import Store, updated
from shared.store.reads import lease_expired
from shared.store.schema import Assembly, Checkpoint, Epoch, Event, Job, JobStatus, Score, utcnow
from shared.store.scoring_runs import fail_waiting, move_assembly

log = logging.getLogger("orch.worker")
T = TypeVar("T")
EPOCH_FIELDS = ("train_loss", "val_loss", "val_acc", "images_per_s", "seconds", "lr")
# a later attempt's start in the job's history, "attempt 2 started on w1@lab" (bench/chaos.py reads it back)
ATTEMPT_STARTED = "attempt {} started on "


@dataclass(frozen=True)
class EpochFile:
    """The checkpoint file an epoch's model was written to, recorded with the epoch (`record_epoch`)."""

    path: str
    digest: str
    improved: bool  # its val_acc is the best so far
    broken: frozenset[str] = frozenset()  # files found unreadable at resume: a best row naming one moves


def patiently(fn: Callable[[], T], patience_s: float, job_id: int | None = None,
              stop: threading.Event | None = None) -> T:
    """fn(), retried while the store does not answer (backoff 0.5, 1, 2, 4, 5, 5... s), for up to
    `patience_s` and, with `stop`, until it is set: a job's process rides out a database restart
    instead of ending its attempt, and a worker records a job's end once the store is back. Each
    retry runs fn's whole transaction again, so fn must be one that may run twice."""
    deadline, delay = time.monotonic() + patience_s, 0.5
    while True:
        try:
            return fn()
        except StoreUnavailable as exc:
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise
            log.warning("%s%s; retrying in %g s", f"job {job_id}: " if job_id is not None else "", exc, delay)
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            delay = min(delay * 2, 5.0)


def through_outages(method: Callable[..., T]) -> Callable[..., T]:
    """A Lease method run `patiently` for the lease's `patience_s` (record_epoch knows its own epoch
    already recorded, so a retry after a commit whose answer was lost records nothing twice)."""
    @functools.wraps(method)
    def call(self: Lease, *args: Any, **kwargs: Any) -> T:
        return patiently(lambda: method(self, *args, **kwargs), self.patience_s, self.job_id)
    return call


@dataclass(frozen=True)
class Lease:
    store: Store
    job_id: int
    token: int
    patience_s: float = 0.0  # how long the methods marked @through_outages wait for a store that does not answer

    @classmethod
    def acquire(cls, store: Store, job_id: int, owner: str, ttl: float) -> Lease | None:
        """Take the job if it is queued, or running under a lease that expired; None if not takeable.

        One UPDATE with the conditions in its WHERE clause: of two deliveries racing for the
        same job, exactly one matches a row.
        """
        takeable = or_(
            and_(Job.status == JobStatus.queued, Job.cancel_requested.is_(False)),
            and_(Job.status == JobStatus.running, lease_expired(ttl)),
        )
        now = literal(utcnow(), Job.started_at.type)
        with store.session() as s:
            token = s.scalar(select(Job.lease_token).where(Job.id == job_id))
            if token is None:
                return None
            taken = updated(s, update(Job).where(Job.id == job_id, Job.lease_token == token, takeable).values(
                status=JobStatus.running, lease_token=token + 1, attempts=Job.attempts + 1,
                heartbeat_at=db_now(), lease_ttl=ttl, worker_host=owner, holder_process=holder.this_process(),
                error=None,
                progress=None,
                # when the job first started: a takeover or a retry resumes the same run (the history
                # has each later attempt's start)
                started_at=func.coalesce(Job.started_at, now)))
            if taken == 1:  # a scoring run starts with its first shard (it read 0.03 s: its assembly alone)
                parent = select(Job.parent_id).where(Job.id == job_id).scalar_subquery()
                s.execute(update(Job).where(Job.id == parent, Job.started_at.is_(None)).values(started_at=now))
                attempt = s.scalar(select(Job.attempts).where(Job.id == job_id)) or 1
                if attempt > 1:  # started_at is the first attempt's: a later one's start was in no history
                    s.add(Event(job_id=job_id, kind="info", message=ATTEMPT_STARTED.format(attempt) + owner))
        return cls(store, job_id, token + 1) if taken == 1 else None

    @contextmanager
    def fenced(self) -> Iterator[Session]:
        """A transaction that first renews the heartbeat, or raises StaleLease if the token is stale."""
        with self.store.session() as s:
            fresh = updated(s, update(Job).where(Job.id == self.job_id, Job.lease_token == self.token,
                                                 Job.status == JobStatus.running).values(heartbeat_at=db_now()))
            if fresh != 1:
                raise StaleLease(f"job {self.job_id}: lease token {self.token} is no longer current")
            yield s

    def heartbeat(self) -> bool:
        """Keep the lease alive. Returns True when a cancel was requested."""
        with self.fenced() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))

    @through_outages
    def record_epoch(self, metrics: dict[str, Any], written: EpochFile | None = None) -> bool:
        """Record one epoch's metrics and, with `written`, the checkpoint file that holds its model, in
        one fenced transaction: a kill between two writes left the epoch recorded and its file unknown,
        and the next attempt trained it again from the start without a word. An epoch replayed from
        the resumed file (no `written`) is recorded once; one trained again because its file was lost
        replaces the row, whose numbers were a model that no longer exists. False: nothing new."""
        epoch = int(metrics["epoch"])
        values = {k: float(metrics[k]) for k in EPOCH_FIELDS if metrics.get(k) is not None}
        bad = [f"{k} is {v}" for k, v in values.items() if not math.isfinite(v)]
        if bad:  # SQLite stores NaN as NULL: a NOT NULL error that would look transient
            raise NonFiniteLoss(f"epoch {epoch}: {', '.join(bad)}")
        with self.fenced() as s:
            row = s.scalars(select(Epoch).where(Epoch.job_id == self.job_id, Epoch.epoch == epoch)).one_or_none()
            if row is not None and written is None:
                return False
            attempt = s.scalar(select(Job.attempts).where(Job.id == self.job_id)) or 1
            if row is not None and row.attempt == attempt and written is not None and _is_last(s, self.job_id, written):
                return False  # this very write, committed before the connection dropped: a retry's second run
            if row is None:
                s.add(Epoch(job_id=self.job_id, epoch=epoch, attempt=attempt, **values))
            else:
                for key, value in {**dict.fromkeys(EPOCH_FIELDS), **values, "attempt": attempt}.items():
                    setattr(row, key, value)
                s.add(Event(job_id=self.job_id, kind="warning", message=f"epoch {epoch} trained again by attempt "
                            f"{attempt} (its checkpoint was lost): its row now holds this attempt's numbers"))
            if written is not None:
                _advance_checkpoint(s, self.job_id, written, epoch, values.get("val_acc"))
            # the epoch's passes are over: a place inside them left by a pass cut short read as the epoch
            # after it, or as this one trained again
            s.execute(update(Job).where(Job.id == self.job_id).values(progress=None))
        return True

    @through_outages
    def record_checkpoint(self, tag: str, path: str, epoch: int, val_acc: float | None,
                          digest: str | None = None) -> None:
        with self.fenced() as s:
            _put_checkpoint(s, self.job_id, tag, path=path, epoch=epoch, val_acc=val_acc, digest=digest)

    @through_outages
    def drop_checkpoint(self, tag: str) -> None:
        """Forget this job's `tag` checkpoint row (fenced); its file goes at the next prune unless
        another row names it."""
        with self.fenced() as s:
            s.execute(delete(Checkpoint).where(Checkpoint.job_id == self.job_id, Checkpoint.tag == tag))

    @through_outages
    def checkpoints(self) -> dict[str, Checkpoint]:
        """The store's current checkpoint rows of this job by tag (last, previous, best): a read."""
        with self.store.session() as s:
            return {r.tag: r for r in s.scalars(select(Checkpoint).where(Checkpoint.job_id == self.job_id))}

    @through_outages
    def add_event(self, kind: str, message: str) -> None:
        """A line in the job's history (`orch status ID`), written under the lease like the rest."""
        with self.fenced() as s:
            s.add(Event(job_id=self.job_id, kind=kind, message=message))

    @through_outages
    def update(self, **values: Any) -> None:
        """A fenced update of the job's own columns (model_info, result, progress)."""
        with self.fenced() as s:
            s.execute(update(Job).where(Job.id == self.job_id).values(**values))

    def update_progress(self, progress: dict[str, Any] | None) -> None:
        """The job's place inside its work (worker/progress.py), stamped "at" by the database's clock,
        which `orch status` compares with: a lab's hosts may disagree by minutes."""
        with self.fenced() as s:
            stamped = None if progress is None else {**progress, "at": round(read_now(s), 1)}
            s.execute(update(Job).where(Job.id == self.job_id).values(progress=stamped))

    def finish(self, status: JobStatus, *, error: str | None = None, result: dict[str, Any] | None = None,
               trace: str | None = None) -> bool:
        """End the job under this token, with a line in its history (a cancelled attempt was missing
        from it, between "orch cancel asked" and "requeued"), and `trace` (an unexpected error's
        traceback) after it. False if the token was stale (nothing written)."""
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error,
                                  "cancel_requested": False}
        if result is not None:
            values["result"] = result
        with self.store.session() as s:
            if not self._end(s, values):
                return False
            attempts = s.scalar(select(Job.attempts).where(Job.id == self.job_id))
            cause = f" ({error})" if error and error != status else ""
            s.add(Event(job_id=self.job_id, kind="info" if status == JobStatus.succeeded else "warning",
                        message=f"attempt {attempts} ended{cause}: the job {ENDED[status]}"))
            if trace:
                s.add(Event(job_id=self.job_id, kind="traceback", message=trace.rstrip()))
            return True

    def release(self, error: str) -> bool:
        """Give the job back to the queue (a transient fault): it will be leased again, unless a
        cancel came meanwhile (then it ends cancelled). False if the token was stale."""
        return self.requeue(error) is not None

    def requeue(self, cause: str, max_attempts: int | None = None, *, event: bool = True) -> JobStatus | None:
        """End this attempt: the job goes back to `queued`; `cancelled` if a cancel was asked (a
        queued job with cancel_requested would never be taken again); `failed` with `cause` once
        it had max_attempts attempts. Without max_attempts (a worker's stop, a store it lost, a
        service that did not answer: not the job's doing) the attempt is not counted against them.
        None (nothing written) if the token was stale. `event`: a line in the job's history (the
        sweeper writes its own)."""
        try:
            with self.fenced() as s:  # its UPDATE comes first: the row is ours until commit
                attempts, since, cancel = s.execute(select(Job.attempts, Job.retried_at_attempt, Job.cancel_requested)
                                                    .where(Job.id == self.job_id)).one()
                status, values = _after_attempt(cause, attempts, since, bool(cancel), max_attempts)
                if max_attempts is None:  # a Ctrl-C of the worker used up a retry: 2 crashes then failed the job
                    values["retried_at_attempt"] = Job.retried_at_attempt + 1
                s.execute(update(Job).where(Job.id == self.job_id).values(status=status, **values))
                if event or status != JobStatus.queued:  # a job's end is always in its history
                    s.add(Event(job_id=self.job_id, kind="info", message=f"attempt {attempts} ended ({cause}): "
                                                                        f"the job {ENDED.get(status, f'is {status}')}"))
                if status == JobStatus.queued:  # its message is owed in this transaction (the outbox)
                    outbox.owe_by_id(s, self.job_id, resume=True)
                return status
        except StaleLease:
            return None

    def _end(self, s: Session, values: dict[str, Any]) -> bool:
        return updated(s, update(Job).where(Job.id == self.job_id, Job.lease_token == self.token,
                                            Job.status == JobStatus.running).values(**values)) == 1

    @staticmethod
    def await_writes(store: Store) -> None:
        """A write that changes nothing: it returns once the database takes writes (waiting on SQLite's
        write lock as a heartbeat does) and raises StoreUnavailable where the database does not answer."""
        with store.session() as s:
            s.execute(update(Job).where(false()).values(lease_token=Job.lease_token))

    # --- a scoring run (the protocol: shared/scoring/protocol.py) ---

    def fail_parent(self, parent_id: int, error: str) -> bool:
        """A shard fails its waiting score job: waiting -> failed (never a run being assembled)."""
        with self.fenced() as s:
            if updated(s, fail_waiting(parent_id, error)) != 1:
                return False
            s.add(Event(job_id=parent_id, kind="warning", message=f"shard job {self.job_id} failed: the job failed"))
            return True

    def begin_assembly(self) -> None:
        """This lease is the score job's own: waiting | sent | assembling -> assembling."""
        with self.fenced() as s:
            moving = [Assembly.waiting, Assembly.sent, Assembly.assembling]
            if updated(s, move_assembly(self.job_id, Assembly.assembling, moving)) != 1:
                raise StaleLease(f"score job {self.job_id}: its run ended; nothing to assemble")

    def fail_assembly(self, error: str) -> bool:
        """assembling -> failed: the score job fails and --out stays as it was."""
        with self.store.session() as s:
            if updated(s, move_assembly(self.job_id, Assembly.failed, [Assembly.assembling], status=JobStatus.failed,
                                        error=error, finished_at=utcnow(), cancel_requested=False)
                       .where(Job.lease_token == self.token, Job.status == JobStatus.running)) != 1:
                return False
            s.add(Event(job_id=self.job_id, kind="warning", message=f"assembling failed ({error}): the job failed"))
            return True

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
            s.add(Event(job_id=self.job_id, kind="info", message="its shards' predictions assembled: the job succeeded"))


ENDED = {JobStatus.succeeded: "succeeded", JobStatus.failed: "failed", JobStatus.cancelled: "is cancelled"}


def _after_attempt(cause: str, attempts: int, retried_at: int, cancel: bool,
                   max_attempts: int | None) -> tuple[JobStatus, dict[str, Any]]:
    """The job's status after an attempt ended. `retried_at` attempts do not count: those before the
    last `orch retry`, and those a worker's stop ended."""
    if cancel:
        return JobStatus.cancelled, {"finished_at": utcnow(), "cancel_requested": False,
                                     "error": f"cancelled ({cause})"}
    counted = attempts - retried_at
    if max_attempts is not None and counted >= max_attempts:
        since = (f" that count ({attempts} in all; those before orch retry, or ended by a worker's stop, do not)"
                 if retried_at else "")
        return JobStatus.failed, {"finished_at": utcnow(), "error": f"{cause}; gave up after {counted} attempts"
                                                                    f"{since} (ORCH_MAX_ATTEMPTS)"}
    # queued again: no worker holds it (the history names the one that did); `error` says why it ran again
    return JobStatus.queued, {"heartbeat_at": None, "error": cause, "worker_host": None, "holder_process": None}


def _advance_checkpoint(s: Session, job_id: int, written: EpochFile, epoch: int, val_acc: float | None) -> None:
    """`written.path` becomes the current (last) checkpoint, the one it replaces the previous one, and
    the best one too where it improved (or the best row is missing or names a file found broken)."""
    rows = {r.tag: r for r in s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id))}
    last, best = rows.get("last"), rows.get("best")
    if last is not None and last.path != written.path:
        _put_checkpoint(s, job_id, "previous", path=last.path, epoch=last.epoch, val_acc=last.val_acc,
                        digest=last.digest)
    new_best = written.improved or best is None or best.path in written.broken
    for tag in ("last", "best") if new_best else ("last",):
        _put_checkpoint(s, job_id, tag, path=written.path, epoch=epoch, val_acc=val_acc, digest=written.digest)


def _is_last(s: Session, job_id: int, written: EpochFile) -> bool:
    last = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.tag == "last")).one_or_none()
    return last is not None and last.path == written.path and last.digest == written.digest


def _put_checkpoint(s: Session, job_id: int, tag: str, **values: Any) -> None:
    row = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.tag == tag)).one_or_none()
    if row is None:
        s.add(Checkpoint(job_id=job_id, tag=tag, **values))
        return
    for key, value in values.items():
        setattr(row, key, value)
    row.written_at = utcnow()
