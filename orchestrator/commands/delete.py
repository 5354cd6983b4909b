"""`orch delete`: remove finished jobs, or a whole study, from the store and their files from disk."""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from orchestrator.commands.control import select_jobs
from orchestrator.context import CliState, pass_state
from orchestrator.tables import id_ranges
from shared.config import Settings
from shared.errors import OrchError


@dataclass
class Folders:
    """The job folders a delete removes, as this machine sees them."""

    present: dict[int, Path] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)  # no folder here (never written, or on another machine)
    bytes: int = 0
    others: bool = False  # ORCH_ARTIFACTS holds another store's store-id: nothing there is touched

    @property
    def mb(self) -> float:
        return round(self.bytes / 1e6, 1)


def job_folders(settings: Settings, store_id: str, job_ids: list[int]) -> Folders:
    """Each job's folder under ORCH_ARTIFACTS and the bytes it holds; only where the folder is this
    store's (its store-id file, which a worker writes): another store's job 7 is another job 7."""
    owner = settings.artifacts_owner
    found = owner.read_text().strip() if owner.is_file() else None
    folders = Folders(others=found is not None and found != store_id)
    for job_id in job_ids:
        path = settings.job_dir(job_id)
        if found != store_id or not path.is_dir():
            folders.missing.append(job_id)
            continue
        folders.present[job_id] = path
        folders.bytes += sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return folders


def described(study: str | None, by_kind: dict[str, list[int]]) -> str:
    """What goes, as one phrase: "study groups: 4 training runs (5-8), 1 scoring run (9)"."""
    parts = [f"{len(ids)} {kind if len(ids) != 1 else kind[:-1]} ({id_ranges(ids)})" for kind, ids in by_kind.items()]
    return (f"study {study}: " if study else "") + ", ".join(parts)


def confirm_or_refuse(what: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise OrchError("--yes: deleting asks first, and there is no terminal to ask at; pass --yes "
                        "(--dry-run shows what would go)")
    click.confirm(f"delete {what}?", abort=True)


@click.command()
@click.argument("job_id", type=int, required=False)
@click.option("--study", "study_ref", metavar="ID|NAME", help="Delete this study and every job of it.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted and how much disk it frees; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first (needed where there is no terminal, in a script).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"job_ids": [...], "study": NAME or null, "mb": N, "dry_run": BOOL, "folders_not_here": '
                   '[...], "not_removed": [...]}: the jobs deleted (with --dry-run: that would be), the MB of their '
                   'folders, the jobs with no folder on this machine, and what could not be removed.')
@pass_state
def delete(obj: CliState, job_id: int | None, study_ref: str | None, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete finished jobs (succeeded, failed or cancelled), or a study and its jobs: their rows (epochs,
    checkpoints, history, scores) and their folders under ORCH_ARTIFACTS (checkpoints, CSVs). A training
    job's scoring runs go with it; files written with `submit score --out` stay where they are. Queued
    or running jobs are refused (`orch cancel` them first). There is no undo: it asks first.

    \b
    Examples:
      orch delete --study groups --dry-run   # what would go, and the disk it frees
      orch delete --study groups             # asks, then deletes the study and its jobs
      orch delete 7 --yes                    # one job (and its scoring runs), without asking
    """
    from orchestrator.studies import study_for
    from shared.store import JobKind, Study, reads
    from shared.store.deletion import delete_jobs, kinds, not_finished, with_dependents

    with obj.store.session() as s:
        selected = select_jobs(obj, s, job_id, study_ref)
        shard = next((job for job in selected if job.id == job_id and job.kind == JobKind.score_shard), None)
        if shard is not None:
            raise OrchError(f"JOB_ID: job {shard.id} is a shard of scoring run {shard.parent_id}: `orch delete "
                            f"{shard.parent_id}` deletes the run with its shards")
        jobs = with_dependents(s, selected)
        busy = not_finished(jobs)
        if busy:
            listing = ", ".join(f"{job.id} ({job.status})" for job in busy)
            raise OrchError(f"{'JOB_ID' if job_id is not None else '--study'}: only finished jobs are deleted, and "
                            f"{listing} {'is' if len(busy) == 1 else 'are'} not: `orch cancel` "
                            f"{'it' if len(busy) == 1 else 'them'} first; nothing was deleted")
        study = s.get(Study, study_for(s, study_ref).id) if study_ref is not None else None
        name = (study.name or str(study.id)) if study is not None else None
        ids = [job.id for job in jobs]
        what = described(name, kinds(jobs)) if ids else f"study {name} (it has no jobs)"
        folders = job_folders(obj.settings, reads.store_id(s), [job.id for job in jobs if job.kind != JobKind.score_shard])  # a shard writes in its run's
        if not dry_run:
            confirm_or_refuse(f"{what} and {folders.mb} MB of their files", yes)
            delete_jobs(s, ids, study)
    removed_failures = [] if dry_run else _remove(folders)
    _say(as_json, dry_run, what, ids, name, folders, obj.settings.artifacts, removed_failures)
    if removed_failures:
        sys.exit(1)


def _remove(folders: Folders) -> list[str]:
    """Remove the job folders after the rows are gone (the other order left rows naming missing
    files when the commit failed); a folder that cannot be removed is only disk, said."""
    failures: list[str] = []
    for path in folders.present.values():
        try:
            shutil.rmtree(path)
        except OSError as exc:
            failures.append(f"{exc.filename or path} ({exc.strerror or type(exc).__name__})")
    return failures


def _say(as_json: bool, dry_run: bool, what: str, ids: list[int], study: str | None, folders: Folders,
         artifacts: Path, failures: list[str]) -> None:
    if as_json:
        click.echo(json.dumps({"job_ids": ids, "study": study, "mb": folders.mb, "dry_run": dry_run,
                               "folders_not_here": folders.missing, "not_removed": failures}))
        return
    verb = "would delete" if dry_run else "deleted"
    n = len(folders.present)
    disk = (f"{'would free' if dry_run else 'freed'} {folders.mb} MB ({n} job folder{'s' * (n != 1)} under "
            f"{artifacts / 'jobs'})" if n else "no job folder here to remove")
    click.echo(f"{verb} {what}; {disk}")
    if folders.others:
        click.echo(f"{artifacts} holds another store's files (its store-id is not this store's): no folder there "
                   "was touched")
    elif folders.missing and folders.present:
        click.echo(f"jobs without a folder here: {', '.join(map(str, folders.missing))} (never written, or on "
                   "another machine's ORCH_ARTIFACTS)")
    for failure in failures:
        click.echo(f"orch: warning: not removed: {failure}", err=True)
