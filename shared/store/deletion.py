"""Deleting finished jobs, and a study with them: `orch delete`.

A lab that keeps every run also submits the odd wrong study (a typo in --data, the wrong --epochs):
its rows crowd the leaderboard and its checkpoints (281 MB a resnet50 file with Adam's state) fill
the disk. Only finished jobs go, each with what hangs off it: a training job's scoring runs (their
accuracy is of its checkpoint), a scoring run's shards, and every row of theirs (epochs, checkpoints,
events, scores, outbox). The job folders are the caller's to remove, after the commit.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from shared.errors import OrchError
from shared.store.db import updated
from shared.store.schema import FINISHED, Checkpoint, Epoch, Event, Job, JobKind, Outbox, Score, Study


def with_dependents(session: Session, jobs: Iterable[Job]) -> list[Job]:
    """The jobs and, until none is added, the scoring runs of any training job among them and the
    shards of any scoring run: a score left without its training job named a job that is gone."""
    found = {job.id: job for job in jobs}
    frontier = list(found)
    while frontier:
        more = [job for job in session.scalars(select(Job).where(or_(Job.source_job_id.in_(frontier),
                                                                      Job.parent_id.in_(frontier))))
                if job.id not in found]
        found.update((job.id, job) for job in more)
        frontier = [job.id for job in more]
    return sorted(found.values(), key=lambda job: job.id)


def not_finished(jobs: Iterable[Job]) -> list[Job]:
    """The jobs a delete refuses: queued or running ones (a worker holds, or will take, them)."""
    return [job for job in jobs if job.status not in {s.value for s in FINISHED}]


def delete_jobs(session: Session, job_ids: list[int], study: Study | None = None) -> None:
    """Delete these jobs, every row that names them, and `study` (once its jobs are gone).

    The jobs' own DELETE is conditioned on a finished status: one requeued since it was read (`orch
    retry` in another terminal) leaves a count short, and the whole transaction is rolled back."""
    for table in (Outbox, Event, Checkpoint, Epoch):
        session.execute(delete(table).where(table.job_id.in_(job_ids)))
    session.execute(delete(Score).where(or_(Score.job_id.in_(job_ids), Score.source_job_id.in_(job_ids))))
    gone = updated(session, delete(Job).where(Job.id.in_(job_ids), Job.status.in_(FINISHED)))
    if gone != len(job_ids):
        raise OrchError(f"{len(job_ids) - gone} of the jobs left their finished state while being deleted (a retry "
                        "or a resubmit elsewhere?); nothing was deleted: run it again")
    if study is not None:
        if session.scalar(select(Job.id).where(Job.study_id == study.id).limit(1)) is not None:
            raise OrchError(f"study {study.name or study.id} gained jobs while being deleted (a submit elsewhere?); "
                            "nothing was deleted: run it again")
        session.delete(study)
    session.expire_all()


def kinds(jobs: Iterable[Job]) -> dict[str, list[int]]:
    """Job ids by what they are, as a delete says them: training runs, scoring runs, their shards."""
    named = {JobKind.train: "training runs", JobKind.score: "scoring runs", JobKind.score_shard: "shards"}
    out: dict[str, list[int]] = {}
    for job in jobs:
        out.setdefault(named[JobKind(job.kind)], []).append(job.id)
    return out
