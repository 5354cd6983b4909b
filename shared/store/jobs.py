"""Job lifecycle in the store outside a lease: submit, sweep, cancel, retry.

A worker's writes to a job it runs go through `shared.store.lease.Lease`; a scoring run's own reads
and writes are in `shared.store.scoring_runs`. Session convention (every store module): a function
that takes a `Session` runs in the caller's transaction; one that takes a `Store` opens its own.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.spec import Spec
from shared.store.db import updated
from shared.store.schema import FINISHED, Assembly, Event, Job, JobKind, JobStatus, Study, check_moves, utcnow


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




def find_study(session: Session, name: str) -> Study | None:
    return session.scalars(select(Study).where(Study.name == name)).one_or_none()




def request_cancel(session: Session, jobs: Iterable[Job]) -> dict[str, list[int]]:
    """Queued jobs become cancelled at once; running ones are flagged for their worker to stop.

    Each change is an UPDATE conditioned on the status it expects, not a write of what was read: a
    worker releasing the job at the same moment turns a flag on a running job into a queued job
    with the flag set, which nobody would ever take. The release sees the flag and cancels; here
    a job that became queued meanwhile is cancelled on the next round.
    """
    outcome: dict[str, list[int]] = {"cancelled": [], "stopping": [], "unchanged": []}
    for job in jobs:
        run = job.kind == JobKind.score  # a scoring run's parent: queued until its shards end, which may run
        ran = bool(job.attempts)  # queued again after an attempt (its worker stopped): it had started
        result = _cancel_one(session, job.id, RUN_CANCELLED if run else CANCELLED_QUEUED[ran])
        outcome[result].append(job.id)
        if result in CANCEL_EVENTS:  # the job's history says who stopped it (`orch status ID`)
            message = (f"cancelled by orch cancel: {RUN_CANCELLED}" if run and result == "cancelled" else
                       REQUEUED_CANCEL_EVENT if ran and result == "cancelled" else CANCEL_EVENTS[result])
            session.add(Event(job_id=job.id, kind="info", message=message))
    session.expire_all()  # the caller's Job objects were changed behind the ORM's back
    return outcome


CANCEL_EVENTS = {"cancelled": "cancelled by orch cancel while queued: it never starts",
                 "stopping": "orch cancel asked its worker to stop it"}
# a job queued again after an attempt: "never starts" and "cancelled before it started" read as if it had not run
CANCELLED_QUEUED = {False: "cancelled before it started", True: "cancelled while queued to resume"}
REQUEUED_CANCEL_EVENT = ("cancelled by orch cancel while queued to resume: it does not start again (`orch retry` "
                         "resumes it from its last checkpoint)")
# a scoring run's parent job is queued while its shards run: "never started" was not what happened
RUN_CANCELLED = ("its CSV is not written (shards that finish anyway keep their parts: `orch retry` scores the rest "
                 "and writes it)")


# request_cancel expires the session's jobs once at the end: synchronizing each UPDATE with the session
# instead compared its criteria with every job loaded (a study's), and cancelling a 1000-job study took 9 s
NO_SYNC = {"synchronize_session": False}


def _fail_assembly(session: Session, job_id: int) -> None:
    """A cancelled scoring run's parent: its CSV will not be written (the protocol's move to failed)."""
    sources = [Assembly.waiting, Assembly.sent]
    check_moves(sources, Assembly.failed)
    session.execute(update(Job).where(Job.id == job_id, Job.kind == JobKind.score, Job.assembly.in_(sources))
                    .values(assembly=Assembly.failed).execution_options(**NO_SYNC))


def _cancel_one(session: Session, job_id: int, error: str) -> str:
    for _ in range(3):  # queued -> running -> queued again within one call is as far as a race goes
        if updated(session, update(Job).where(Job.id == job_id, Job.status == JobStatus.queued).values(
                status=JobStatus.cancelled, finished_at=utcnow(), error=error).execution_options(**NO_SYNC)):
            _fail_assembly(session, job_id)
            return "cancelled"
        if updated(session, update(Job).where(Job.id == job_id, Job.status == JobStatus.running)
                   .values(cancel_requested=True).execution_options(**NO_SYNC)):
            return "stopping"
        if session.scalar(select(Job.status).where(Job.id == job_id)) not in (JobStatus.queued, JobStatus.running):
            return "unchanged"
    return "unchanged"


def reset_for_retry(session: Session, jobs: Iterable[Job], lost_parts: Iterable[Job] = (),
                    by: str = "orch retry") -> list[Job]:
    """Failed or cancelled jobs go back to queued (their checkpoints stay, so training resumes; a
    scoring run's parent waits for its shards again), and `lost_parts`: succeeded shards of a run
    retried whose part file is gone (requeued only the failed shard, the run failed again on the
    same missing part). `by`: who asked, for the job's history."""
    again = [job for job in jobs if job.status in (JobStatus.failed, JobStatus.cancelled)]
    for job in [*again, *lost_parts]:
        why = ("its part file is missing: scored again" if job.status == JobStatus.succeeded else
               f"{job.status} after {job.attempts} attempt{'s' if job.attempts != 1 else ''}")
        session.add(Event(job_id=job.id, kind="info", message=f"requeued by {by} ({why})"))
        if job.status == JobStatus.succeeded:
            job.result = None  # its part is scored again, not taken as done
            again.append(job)
        job.status, job.error, job.cancel_requested, job.finished_at = JobStatus.queued, None, False, None
        job.retried_at_attempt = job.attempts  # a fresh ORCH_MAX_ATTEMPTS: the user asked for this run
        if job.kind == JobKind.score:
            check_moves([job.assembly], Assembly.waiting)
            job.assembly = Assembly.waiting
    return again


def is_finished(status: str) -> bool:
    return status in {s.value for s in FINISHED}
