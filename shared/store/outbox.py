"""The outbox: broker messages owed by state changes, written in the same transaction as the change.

`owe` is called inside the caller's transaction (submit, retry, requeue, release, a score job sent
for assembly), so a committed `queued` job always has a row saying its message is owed, whatever
happens to the process after the commit. The senders and the relay (shared/delivery.py) use the
other functions here, each in its own short transaction.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.config import PRIORITY_NEW, PRIORITY_RESUME
from shared.store.db import Store, updated
from shared.store.schema import Job, JobStatus, Outbox

KEEP_CONFIRMED_S = 86400.0  # confirmed rows are history for a day (the chaos bench counts sends), then go


@dataclass(frozen=True)
class Owed:
    """One owed message: task `orch.<kind>` for `job_id` on `queue`, and where its row stands."""

    id: int
    job_id: int
    kind: str
    queue: str
    label: str | None
    created_at: float
    sent_at: float | None = None
    sends: int = 0
    priority: int = PRIORITY_NEW

    @classmethod
    def of(cls, row: Outbox) -> Owed:
        return cls(row.id, row.job_id, row.kind, row.queue, row.label, row.created_at, row.sent_at, row.sends,
                   row.priority)


def owe(session: Session, job: Job, *, resume: bool = False) -> Owed:
    """Record, in the caller's transaction, that `job` is owed a message (task `orch.<its kind>`);
    `resume`: the job goes back to a queue it already left (a requeue, a release), ahead of new jobs.

    An older open row of the same job is closed: one open row per job, so a job requeued before
    the relay saw it leave `queued` is not sent twice.
    """
    from shared.task_label import job_label

    now = time.time()
    session.execute(update(Outbox).where(Outbox.job_id == job.id, Outbox.confirmed_at.is_(None))
                    .values(confirmed_at=now))
    row = Outbox(job_id=job.id, kind=str(job.kind), queue=job.queue, label=job_label(job),
                 created_at=now, sends=0, priority=PRIORITY_RESUME if resume else PRIORITY_NEW)
    session.add(row)
    session.flush()
    return Owed.of(row)


def owe_by_id(session: Session, job_id: int, *, resume: bool = False) -> Owed | None:
    job = session.get(Job, job_id)
    return owe(session, job, resume=resume) if job is not None else None


def mark_sent(store: Store, owed: Iterable[Owed]) -> None:
    """The sender sent these (after its commit): record the send."""
    ids = [o.id for o in owed]
    if not ids:
        return
    with store.session() as s:
        s.execute(update(Outbox).where(Outbox.id.in_(ids))
                  .values(sent_at=time.time(), sends=Outbox.sends + 1, last_error=None))


def claim(store: Store, owed: Owed) -> bool:
    """Take the right to (re-)send this row now: of several relays seeing it due, exactly one gets it."""
    with store.session() as s:
        return updated(s, update(Outbox).where(Outbox.id == owed.id, Outbox.sends == owed.sends,
                                               Outbox.confirmed_at.is_(None))
                       .values(sent_at=time.time(), sends=Outbox.sends + 1)) == 1


def unclaim(store: Store, owed: Owed, error: str) -> None:
    """The send after a claim failed: put the row back as it was, with the error."""
    with store.session() as s:
        s.execute(update(Outbox).where(Outbox.id == owed.id, Outbox.sends == owed.sends + 1)
                  .values(sent_at=owed.sent_at, sends=owed.sends, last_error=error[:500]))


def open_rows(store: Store) -> list[Owed]:
    """Rows still owed a confirmation whose job is waiting for its message; every other open row
    (its job was leased, cancelled, finished, or asked to cancel) is confirmed here."""
    with store.session() as s:
        rows = s.execute(
            select(Outbox, Job.status, Job.cancel_requested).join(Job, Job.id == Outbox.job_id)
            .where(Outbox.confirmed_at.is_(None))
        ).all()
        done = [row.id for row, status, cancel in rows if status != JobStatus.queued or cancel]
        if done:
            s.execute(update(Outbox).where(Outbox.id.in_(done)).values(confirmed_at=time.time()))
        return [Owed.of(row) for row, status, cancel in rows if status == JobStatus.queued and not cancel]


def unsent(store: Store, job_ids: Iterable[int]) -> list[Owed]:
    """The open rows of these jobs that nobody has sent yet."""
    with store.session() as s:
        rows = s.scalars(select(Outbox).where(Outbox.job_id.in_(list(job_ids)), Outbox.confirmed_at.is_(None),
                                              Outbox.sent_at.is_(None)).order_by(Outbox.id))
        return [Owed.of(row) for row in rows]


def prune(store: Store, keep_s: float = KEEP_CONFIRMED_S) -> int:
    with store.session() as s:
        return updated(s, delete(Outbox).where(Outbox.confirmed_at < time.time() - keep_s))
