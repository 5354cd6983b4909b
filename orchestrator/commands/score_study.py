"""`orch submit score --study S`: every succeeded training job of a study scored on one test folder.

A study's `--metric test_acc` compares configs over seeds, so each seed's best checkpoint needs
scoring on the same folder; one run per job, queued together, `--out` a folder of `<job id>.csv`.
Every check runs before anything is queued: a job whose checkpoint is missing refuses the whole study.
Jobs that already have a test accuracy on this folder are left as they are (`--again` scores them too),
so running it again after more seeds finished scores only the new ones.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from orchestrator.context import CliState
from orchestrator.tables import id_ranges
from shared.errors import OrchError, SpecError
from shared.spec import ScoreSpec
from shared.store.reads import TrainedJob


@dataclass(frozen=True)
class Planned:
    """One job's scoring run, checked, not yet queued."""

    job_id: int
    spec: ScoreSpec  # pinned


def score_study(obj: CliState, ref: str, options: dict[str, Any], *, again: bool, queue: str,
                wait: bool, as_json: bool) -> None:
    from orchestrator.studies import study_for
    from shared.store import reads

    with obj.store.session() as s:
        study = study_for(s, ref)
        jobs = reads.study_training_jobs(s, study.id)
        data = str(Path(options["data"]).expanduser().resolve())
        done = set() if again else reads.tested_on(s, [j.id for j in jobs if j.status == "succeeded"], data)
    name = study.name or str(study.id)
    chosen = [j for j in jobs if j.status == "succeeded" and j.id not in done]
    _say_left_out(name, jobs, done)
    if not chosen and not done:
        raise OrchError(f"--study: study {name} has no succeeded training job to score")
    folder = _out_folder(options["out"])
    if not chosen:  # run again once every job is scored: nothing to do is no failure
        if as_json:
            click.echo(json.dumps({"study": name, "runs": [], "already_scored": sorted(done)}))
        click.echo(f"study {name}: nothing to score", err=True)
        return
    planned = _plan(obj, chosen, options, folder)
    runs = _queue(obj, planned, queue)
    if as_json:
        click.echo(json.dumps({"study": name, "runs": runs, "already_scored": sorted(done)}))
    else:
        click.echo(f"study {name}: {len(runs)} scoring run{'s' if len(runs) != 1 else ''} queued, of jobs "
                   f"{id_ranges([r['source_job_id'] for r in runs])}, into {folder}", err=True)
        for run in runs:
            click.echo(f"queued job {run['job_id']} (scores job {run['source_job_id']} into {run['out']})")
    if wait:
        _wait_all(obj, name, runs)


def _out_folder(raw: str) -> Path:
    """--out with --study: a folder (made if missing, in a folder that exists) for one CSV per job."""
    out = Path(raw).expanduser().resolve()
    if out.suffix.lower() == ".csv" or (out.exists() and not out.is_dir()):
        raise SpecError("--out", f"with --study, a folder for one CSV per job (<job id>.csv), not the file {raw}; "
                                 "give a folder such as preds/")
    if not out.parent.is_dir():
        raise SpecError("--out", f"no such folder: {out.parent}")
    out.mkdir(exist_ok=True)
    return out


def _say_left_out(name: str, jobs: list[TrainedJob], done: set[int]) -> None:
    others = [f"{j.id} ({j.status})" for j in jobs if j.status != "succeeded"]
    if others:  # a failed or cancelled job's best is of the epochs it finished; a running one's may change
        click.echo(f"orch: note: study {name}: not scored, not succeeded: jobs {', '.join(others)}", err=True)
    if done:
        click.echo(f"orch: note: study {name}: jobs {id_ranges(sorted(done))} have a test accuracy on this folder "
                   "already: not scored again (--again scores them too)", err=True)


def _plan(obj: CliState, jobs: list[TrainedJob], options: dict[str, Any], folder: Path) -> list[Planned]:
    """Each job's pinned spec, with every check `orch submit score --job` makes; the folder and
    labels checked once for each set of class names (the jobs of a study share one)."""
    from orchestrator.commands.score import SCORE_FIELDS, best_checkpoint_of, check_inputs, check_written_by
    from orchestrator.fields import parse_option
    from shared.scoring.inputs import pin

    checked: dict[tuple[str, ...], tuple[dict[str, Any], Any]] = {}
    planned = []
    for job in jobs:
        try:
            ckpt, job_id, classes = best_checkpoint_of(job, obj.settings.artifacts)
        except SpecError as exc:  # its message names the job; the option given was --study
            raise SpecError("--study", f"{exc.message}; nothing was queued") from None
        out = folder / f"{job_id}.csv"
        key = tuple(classes)
        if key not in checked:
            checked[key] = check_inputs({**options, "out": str(out)}, classes)
        spec_dict, listing = checked[key]
        spec = pin(parse_option(ScoreSpec, SCORE_FIELDS, {**spec_dict, "checkpoint": ckpt, "out": str(out)}), listing)
        check_written_by(obj, "--study", job_id, ckpt, spec.inputs.checkpoint_sha256 if spec.inputs else "")
        planned.append(Planned(job_id, spec))
    return planned


def _queue(obj: CliState, planned: list[Planned], queue: str) -> list[dict[str, Any]]:
    from orchestrator.commands.score import queue_score

    runs = []
    for run in planned:
        parent_id, shard_ids = queue_score(obj, run.spec, source_job_id=run.job_id, queue=queue)
        runs.append({"source_job_id": run.job_id, "job_id": parent_id, "shard_job_ids": shard_ids, "out": run.spec.out})
    return runs


def _wait_all(obj: CliState, name: str, runs: list[dict[str, Any]]) -> None:
    """Follow every run's shards together, then the runs; one line each; exit 1 if any failed. As
    `orch submit score --wait`, it only reads: a run whose shard failed is failed by that shard or a sweeper."""
    from orchestrator.commands.score import INT8_SAID, written_line
    from orchestrator.progress import wait_for
    from shared.scoring.protocol import Verdict, observe

    started, parents = time.monotonic(), [run["job_id"] for run in runs]
    wait_for(obj, [i for run in runs for i in run["shard_job_ids"]], named=parents, noun="shard", started=started)
    assembling = [p for p in parents if observe(obj.store, p)[1] == Verdict.complete]
    if assembling:  # a run with a failed shard is not waited for: it has nothing to assemble
        wait_for(obj, assembling, summary=False, named=parents, started=started)
    failed, int8 = [], False
    for run in runs:
        parent, _, reason = observe(obj.store, run["job_id"])
        if parent is not None and parent.status == "succeeded":
            line = written_line(obj, parent.job_id, explain_int8=False)
            int8 = int8 or "scored in int8" in line
            click.echo(f"job {run['source_job_id']}: {line}", err=True)
            continue
        failed.append(run["job_id"])
        why = reason or (parent.error if parent is not None else None) or "`orch status ID` says why"
        click.echo(f"job {run['source_job_id']}: score job {run['job_id']} failed: {why}; no CSV written", err=True)
    if int8:
        click.echo(f"orch: note: int8{INT8_SAID}", err=True)
    if failed:
        runs_word = "scoring runs" if len(failed) > 1 else "scoring run"
        click.echo(f"study {name}: {runs_word} {id_ranges(failed)} wrote no CSV (why: the line of each above)", err=True)
        raise SystemExit(1)
    click.echo(f"study {name}: every job scored; `orch report --study {name} --metric test_acc` compares them",
               err=True)
