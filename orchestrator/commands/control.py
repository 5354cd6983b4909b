"""`orch cancel` and `orch retry`: act on one job or a whole study."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.context import CliState, pass_state
from shared.errors import OrchError

if TYPE_CHECKING:
    from shared.store import Job


def select_jobs(obj: CliState, session: Any, job_id: int | None, study_ref: str | None) -> list[Job]:
    """The jobs a command acts on: one job with its children (a score job's shards), or a study's."""
    from orchestrator.studies import study_for
    from shared.store import reads

    if (job_id is None) == (study_ref is None):
        raise OrchError("give a job ID or --study S (one of them)")
    if study_ref is not None:
        return reads.study_jobs(session, study_for(session, study_ref).id)
    jobs = reads.with_children(session, job_id or 0)
    if not jobs:
        raise OrchError(f"JOB_ID: no job {job_id}")
    return jobs


@click.command()
@click.argument("job_id", type=int, required=False)
@click.option("--study", "study_id", metavar="ID|NAME", help="Cancel every job of this study.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"cancelled": [...], "stopping": [...], "unchanged": [...], "not_answering": [...]}: '
                   "job ids by what happened (not_answering: the stopping jobs whose worker is silent).")
@pass_state
def cancel(obj: CliState, job_id: int | None, study_id: str | None, as_json: bool) -> None:
    """Cancel a job or a study: queued jobs never start; running ones stop within 15 s (one whose worker
    stopped answering ends cancelled when its lease expires: the ORCH_LEASE_TTL its worker took it
    with, 30 s by default).

    \b
    Examples:
      orch cancel 7
      orch cancel --study 3          # or by name: orch cancel --study groups
    """
    from shared.store.jobs import request_cancel
    from shared.store.reads import not_answering

    with obj.store.session() as s:
        outcome = request_cancel(s, select_jobs(obj, s, job_id, study_id))
        silent = not_answering(s, outcome["stopping"], obj.settings.lease_ttl)
    if as_json:
        click.echo(json.dumps({**outcome, "not_answering": list(silent)}))
        return
    meaning = {"cancelled": "cancelled", "stopping": "stopping (a job that ends before it stops keeps its result)",
               "unchanged": "unchanged (already ended)"}
    for key, ids in outcome.items():
        if ids:
            click.echo(f"{meaning.get(key, key)}: {', '.join(map(str, ids))}")
    if silent:  # nobody reads the flag: it took the lease's expiry, not the 15 s promised, unexplained
        jobs = f"job{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))}"
        click.echo(f"{jobs}: the worker is not answering; a live worker's sweeper ends "
                   f"{'them' if len(silent) > 1 else 'it'} cancelled when the lease expires "
                   f"(ORCH_LEASE_TTL, {' or '.join(f'{ttl:g}' for ttl in sorted(set(silent.values())))} s)")


def check_pinned_inputs(run: Job) -> None:
    """A scoring run's folder and checkpoint, where this host has them, as pinned at its submit: a run
    whose images were fixed since (the only remedy for a corrupt one) was requeued and failed again,
    "changed since the run was submitted"."""
    from shared.data import scan
    from shared.errors import CheckpointError, DataError
    from shared.scoring.inputs import verify_checkpoint, verify_folder
    from shared.spec import ScoreSpec, read_stored

    spec = read_stored(ScoreSpec, run.spec)
    if spec.inputs is None:
        return
    try:
        if Path(spec.data).is_dir():
            verify_folder(spec, scan(Path(spec.data)), spec.inputs)
        if Path(spec.checkpoint).is_file():
            verify_checkpoint(spec, spec.inputs)
    except (DataError, CheckpointError) as exc:
        raise OrchError(f"JOB_ID: scoring run {run.id} cannot run again: {exc}") from None


def check_training_folders(job: Job) -> None:
    """A training job's folders, which submit found on this host: a retry of a job that failed because
    its folder was gone said "requeued", and the job failed again with the same cause."""
    import socket

    from shared.spec import TrainSpec, read_stored

    spec = read_stored(TrainSpec, job.spec)
    for option, folder in (("--data", spec.data), ("--val", spec.val)):
        if folder is not None and not Path(folder).is_dir():
            raise OrchError(f"JOB_ID: job {job.id} cannot run again: {option} {folder}: no such folder on "
                            f"{socket.gethostname()}; restore it, or submit the job again with another folder")


def lost_parts(jobs: list[Job]) -> list[Job]:
    """The succeeded shards of a scoring run being retried whose part file is gone: the run cannot
    assemble without them (seen on this host; a part on another worker's disk reads as gone, and is
    scored again)."""
    retried = {job.id for job in jobs if job.kind == "score" and job.status in ("failed", "cancelled")}
    return [job for job in jobs if job.kind == "score_shard" and job.parent_id in retried
            and job.status == "succeeded" and not Path(str((job.result or {}).get("part"))).is_file()]


@click.command()
@click.argument("job_id", type=int, required=False)
@click.option("--study", "study_id", metavar="ID|NAME", help="Retry every failed or cancelled job of this study.")
@click.option("--json", "as_json", is_flag=True, help='Print {"job_ids": [...]}: the jobs requeued.')
@pass_state
def retry(obj: CliState, job_id: int | None, study_id: str | None, as_json: bool) -> None:
    """Requeue failed or cancelled jobs; training resumes from the last checkpoint.

    \b
    Examples:
      orch retry 7
      orch retry --study groups
    """
    from orchestrator.submission import require_broker, send_owed
    from shared.store.jobs import reset_for_retry
    from shared.store.outbox import owe

    require_broker(obj, unchanged="nothing was requeued")
    with obj.store.session() as s:
        selected = select_jobs(obj, s, job_id, study_id)
        shard = next((job for job in selected if job.id == job_id and job.kind == "score_shard"), None)
        if shard is not None:  # requeued alone it was cancelled at once, its scoring run having ended
            raise OrchError(f"JOB_ID: job {shard.id} is a shard of scoring run {shard.parent_id}: `orch retry "
                            f"{shard.parent_id}` requeues the run, its failed and cancelled shards with it")
        for run in selected:
            if run.kind == "score" and run.status in ("failed", "cancelled"):
                check_pinned_inputs(run)
            elif run.kind == "train" and run.status in ("failed", "cancelled"):
                check_training_folders(run)
        # a job a cancel is stopping reads "running": say why a retry of it did nothing
        states = {job.id: "stopping after orch cancel (retry it once it has stopped)"
                  if job.status == "running" and job.cancel_requested else str(job.status) for job in selected}
        requeued = reset_for_retry(s, selected, lost_parts(selected))
        ids = sorted(job.id for job in requeued)
        owed = [owe(s, job) for job in requeued if job.kind != "score"]  # a score job ends when its shards do
        shards_due = {job.parent_id for job in requeued if job.kind == "score_shard"}
        assembles = sorted(job.id for job in requeued if job.kind == "score" and job.id not in shards_due)
    send_owed(obj, owed)
    if as_json:
        click.echo(json.dumps({"job_ids": ids}))
    elif ids:
        click.echo(f"requeued: {', '.join(map(str, ids))}")
        if assembles:  # cancelled after its shards had scored: nothing to score again
            which = ", ".join(map(str, assembles))
            click.echo(f"score job {which}: every shard had scored its part; a worker assembles the CSV from them")
    else:  # say why: only failed or cancelled jobs are retried
        by_state: dict[str, list[int]] = {}
        for job, state in sorted(states.items()):
            by_state.setdefault(state, []).append(job)
        found = "; ".join(f"{state}: {', '.join(map(str, jobs))}" for state, jobs in by_state.items())
        click.echo(f"nothing to retry: only failed or cancelled jobs are ({found})")
