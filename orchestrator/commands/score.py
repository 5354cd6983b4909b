"""`orch submit score`: a checkpoint applied to a numbered test folder, sharded over the workers.

Everything that can be known at submit time is checked here (the checkpoint, the folder's names,
the labels' class count, --shards against the image count), with one-line exit-2 errors; what only
decoding can tell (a corrupt image) fails the job with its reason. The parent job is recorded but
never sent: its shards are the tasks, and the last shard to finish assembles the CSV.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.context import Context, pass_context
from orchestrator.fields import option_fields, parse_option
from orchestrator.options import spec_options
from shared.config import DEFAULT_QUEUE
from shared.errors import CheckpointError, OrchError, SpecError
from shared.spec import ScoreSpec

if TYPE_CHECKING:
    from shared.data import Listing
    from shared.store import Job


SCORE_FIELDS = option_fields(ScoreSpec, grid=False)
SOURCE_HELP = {"checkpoint": {"required": False, "help": "Score this checkpoint file (written by orch)."}}


@click.command()
@click.option("--job", "job_id", type=int, help="Score this training job's best checkpoint.")
@click.option("--best-of", help="Score the best job of this study (id or name) by val accuracy.")
@spec_options(SCORE_FIELDS, SOURCE_HELP)
@click.option("--queue", default=DEFAULT_QUEUE, show_default=True, help="Celery queue to send to.")
@click.option("--wait", is_flag=True, help="Follow progress until the CSV is written; exit 0 only if it was.")
@click.option("--json", "as_json", is_flag=True, help="Print the ids as JSON.")
@pass_context
def score(obj: Context, job_id: int | None, checkpoint: str | None, best_of: str | None, queue: str,
          wait: bool, as_json: bool, **options: Any) -> None:
    """Queue a scoring run: one `id,label` row per image, in numeric id order.

    \b
    Examples:
      orch submit score --job 7 --data data/test --out cat_dog.csv --wait
      orch submit score --best-of 3 --data data/test --out preds.csv --labels test_labels.csv
      orch submit score --checkpoint best.pt --data data/test --out p.csv --shards 4 --probs --header
    """
    from orchestrator.commands.submit import report_queued

    ckpt, source_job_id, classes = resolve_checkpoint(obj, job_id, checkpoint, best_of)
    spec_dict = check_inputs(options, classes)
    spec = parse_option(ScoreSpec, SCORE_FIELDS, {"checkpoint": ckpt, **spec_dict})
    parent_id, shard_ids = queue_score(obj, spec, source_job_id=source_job_id, queue=queue)
    payload = {"job_id": parent_id, "shard_job_ids": shard_ids}
    if not as_json:
        click.echo(f"score job {parent_id}: {len(shard_ids)} shard{'s' if len(shard_ids) > 1 else ''} "
                   f"(jobs {', '.join(map(str, shard_ids))})", err=True)
    report_queued(obj, [parent_id], payload, wait=False, as_json=as_json)
    if wait and not wait_for_score(obj, parent_id, shard_ids):
        raise SystemExit(1)


def resolve_checkpoint(obj: Context, job_id: int | None, checkpoint: str | None,
                       best_of: str | None) -> tuple[str, int | None, list[str]]:
    """(checkpoint path, the training job it came from, its class names) for exactly one source."""
    if sum(x is not None for x in (job_id, checkpoint, best_of)) != 1:
        raise OrchError("give exactly one of --job ID, --checkpoint FILE, --best-of STUDY")
    from orchestrator.submission import existing_path
    from shared.store import Job

    with obj.store.session() as s:
        if job_id is not None:
            job = s.get(Job, job_id)
            if job is None or job.kind != "train":
                raise SpecError("--job", f"no training job {job_id}")
            return _best_of_job(s, job)
        if best_of is not None:
            return _best_of_job(s, _best_in_study(s, best_of))
        path = existing_path("--checkpoint", checkpoint, folder=False) or ""
        owner = _job_of_checkpoint(s, path)
    classes = (owner.result or {}).get("classes") if owner is not None else None
    if owner is not None and classes:
        return path, owner.id, list(classes)
    return path, owner.id if owner is not None else None, classes_in_file(path)


def _best_of_job(session: Any, job: Job) -> tuple[str, int, list[str]]:
    from sqlalchemy import select

    from shared.store import Checkpoint

    if job.status in ("queued", "running"):
        raise SpecError("--job", f"job {job.id} is {job.status}: its best checkpoint may still change; "
                                 "wait for it to end, or pass --checkpoint FILE")
    best = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job.id, Checkpoint.tag == "best")).one_or_none()
    if best is None or not Path(best.path).is_file():
        raise SpecError("--job", f"job {job.id} has no best checkpoint (status {job.status})")
    classes = (job.result or {}).get("classes")
    return best.path, job.id, list(classes) if classes else classes_in_file(best.path)


def _best_in_study(session: Any, study: str) -> Job:
    """The study's succeeded training job with the best val accuracy (the lowest id on a tie)."""
    from sqlalchemy import select

    from shared.store import Checkpoint, Job, Study
    from shared.store.jobs import find_study

    found = session.get(Study, int(study)) if study.isdigit() else find_study(session, study)
    if found is None:
        raise SpecError("--best-of", f"no study {study}")
    rows = session.execute(
        select(Job, Checkpoint.val_acc).join(Checkpoint, Checkpoint.job_id == Job.id)
        .where(Job.study_id == found.id, Job.status == "succeeded", Checkpoint.tag == "best",
               Checkpoint.val_acc.is_not(None))
    ).all()
    if not rows:
        raise SpecError("--best-of", f"study {found.id} has no succeeded training job with a val accuracy yet")
    return max(rows, key=lambda row: (row[1], -row[0].id))[0]


def _job_of_checkpoint(session: Any, path: str) -> Job | None:
    """The training job that wrote this checkpoint file, when the store knows it."""
    from sqlalchemy import select

    from shared.store import Checkpoint, Job

    job_id = session.scalar(select(Checkpoint.job_id).where(Checkpoint.path == path).limit(1))
    return session.get(Job, job_id) if job_id is not None else None


def classes_in_file(path: str) -> list[str]:
    """A checkpoint the store does not describe: read its class names (this path imports torch)."""
    from shared.engine.checkpoint import load_checkpoint

    try:
        return [str(c) for c in load_checkpoint(Path(path))["classes"]]
    except CheckpointError as exc:
        raise SpecError("--checkpoint", str(exc)) from None


def check_inputs(options: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """The spec fields, with every problem the folder and labels can show without decoding."""
    from orchestrator.submission import existing_path
    from shared.data import read_labels_csv, scan
    from shared.scoring import check_folder_classes, check_label_classes, check_labels_cover, check_shards

    data = existing_path("--data", options["data"], folder=True) or ""
    listing: Listing = scan(Path(data))  # empty folder, non-numeric name, mixed layouts
    labels_path = existing_path("--labels", options.get("labels"), folder=False)
    if labels_path:
        labels = read_labels_csv(Path(labels_path))
        check_label_classes(labels, classes)
        check_labels_cover(labels, listing)
    check_folder_classes(listing, classes)
    check_shards(options.get("shards") or 1, listing)
    spec = {"data": data, "out": _out_path(options["out"]), "labels": labels_path}
    spec.update({k: options[k] for k in ("shards", "batch_size", "precision", "probs", "header")
                 if options.get(k) is not None})
    return spec


def _out_path(raw: str) -> str:
    out = Path(raw).expanduser().resolve()
    if out.is_dir():
        raise SpecError("--out", f"{raw} is a folder; give a file name such as {Path(raw) / 'preds.csv'}")
    if not out.parent.is_dir():
        raise SpecError("--out", f"no such folder: {out.parent}")
    return str(out)


def queue_score(obj: Context, spec: Any, *, source_job_id: int | None, queue: str) -> tuple[int, list[int]]:
    """Record the parent and its shards, and the shards' owed messages, in one transaction, then send
    the shards (never the parent: it is sent for assembly when its shards are done)."""
    from orchestrator.submission import send_owed
    from shared.celery_app import check_broker
    from shared.store import JobKind
    from shared.store.jobs import add_job
    from shared.store.outbox import owe

    check_broker(obj.celery)  # before anything is written: a down broker leaves the store as it was
    with obj.store.session() as s:
        parent = add_job(s, JobKind.score, spec, queue=queue, source_job_id=source_job_id)
        shards = [add_job(s, JobKind.score_shard, spec, queue=queue, parent_id=parent.id,
                          source_job_id=source_job_id, shard=i) for i in range(spec.shards)]
        parent_id, owed = parent.id, [owe(s, job) for job in shards]
    send_owed(obj, owed)
    return parent_id, [row.job_id for row in owed]


def wait_for_score(obj: Context, parent_id: int, shard_ids: list[int]) -> bool:
    """Follow the shards, then the parent; a parent whose shard died unreported is failed here."""
    from orchestrator.progress import wait_for
    from shared.scoring import ShardState, parent_outcome
    from shared.store import jobs as store_jobs

    if not wait_for(obj, shard_ids):
        outcome, reason = parent_outcome([ShardState.of(j) for j in store_jobs.shard_jobs(obj.store, parent_id)])
        if outcome == "failed" and reason:
            store_jobs.fail_parent(obj.store, parent_id, reason)
    if not wait_for(obj, [parent_id]):
        return False
    from shared.store import Job

    with obj.store.session() as s:
        parent = s.get(Job, parent_id)
        result = (parent.result if parent is not None else None) or {}
    accuracy = f"; accuracy {100 * result['accuracy']:.2f}%" if result.get("accuracy") is not None else ""
    click.echo(f"wrote {result.get('out')}: {result.get('n')} rows{accuracy}", err=True)
    return True
