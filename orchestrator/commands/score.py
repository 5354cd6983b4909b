"""`orch submit score`: a checkpoint applied to a numbered test folder, sharded over the workers.

Everything that can be known at submit time is checked here (the checkpoint, the folder's names,
the labels' class count, --shards against the image count), with one-line exit-2 errors; what only
decoding can tell (a corrupt image) fails the job with its reason. The checkpoint's sha256 and the
folder's file list are pinned in the spec, so every shard scores exactly what was checked here.
The parent job is recorded but never sent: its shards are the tasks, and the protocol
(shared/scoring/protocol.py) assembles the CSV; `--wait` only reads.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from orchestrator.context import CliState, pass_state
from orchestrator.fields import option_fields, parse_option
from orchestrator.options import queue_names, spec_options
from shared.config import DEFAULT_QUEUE
from shared.errors import CheckpointError, DataError, OrchError, SpecError
from shared.scoring.inputs import pin
from shared.spec import ScoreSpec

if TYPE_CHECKING:
    from shared.data import Listing
    from shared.store.reads import TrainedJob


SCORE_FIELDS = option_fields(ScoreSpec, grid=False)
EXACTLY_ONE = "give exactly one of --job ID, --checkpoint FILE, --best-of STUDY, --study STUDY"
SOURCE_HELP: dict[str, dict[str, Any]] = {"checkpoint": {"required": False, "help": "Score this checkpoint file (written by orch)."},
               "out": {"help": "CSV to write (atomically, when every shard is done); with --study, a folder for "
                               "one <job id>.csv each."}}


@click.command()
@click.option("--job", "job_id", type=int, help="Score this training job's best checkpoint.")
@click.option("--best-of", metavar="ID|NAME", help="Score the best job of this study (id or name) by val accuracy.")
@click.option("--study", "study_ref", metavar="ID|NAME",
              help="Score every succeeded job of this study (one run each, --out a folder: <job id>.csv), "
                   "for `orch report --study S --metric test_acc`. Jobs with a test accuracy on this folder "
                   "already are skipped.")
@click.option("--again", is_flag=True, help="With --study: score the jobs already scored on this folder too.")
@spec_options(SCORE_FIELDS, SOURCE_HELP)
@click.option("--queue", default=DEFAULT_QUEUE, show_default=True, metavar="NAME", callback=queue_names,
              help="Celery queue to send to.")
@click.option("--no-labels", is_flag=True, help="Score without labels, where orch.toml gives test_labels.")
@click.option("--wait", is_flag=True, help="Follow progress until the CSV is written; exit 0 only if it was.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"job_id": N, "shard_job_ids": [...]}: the scoring run and its shards (with --study: '
                   '{"study", "runs": [{"source_job_id", "job_id", "shard_job_ids", "out"}], "already_scored"}).')
@pass_state
def score(obj: CliState, job_id: int | None, checkpoint: str | None, best_of: str | None, study_ref: str | None,
          again: bool, queue: str, no_labels: bool, wait: bool, as_json: bool, **options: Any) -> None:
    """Queue a scoring run: one `id,label` row per image, in numeric id order.

    \b
    Examples:
      orch submit score --job 7 --data data/test --out cat_dog.csv --wait
      orch submit score --best-of 3 --data data/test --out preds.csv --labels test_labels.csv
      orch submit score --checkpoint best.pt --data data/test --out p.csv --shards 4 --probs --header
      orch submit score --study norms --data data/test --labels test_labels.csv --out preds/ --wait
    """
    from orchestrator.paths import require_given
    from orchestrator.progress import report_queued

    require_given("--data", options["data"], folder=True, project_key="test")  # before the checkpoint is looked for
    if no_labels and click.get_current_context().get_parameter_source("labels") is ParameterSource.COMMANDLINE:
        raise OrchError("--no-labels: give --labels or --no-labels, not both")
    options["labels"] = None if no_labels else _labels_for_data(click.get_current_context(), options)
    if study_ref is not None:
        if any(x is not None for x in (job_id, checkpoint, best_of)):
            raise OrchError(EXACTLY_ONE)
        from orchestrator.commands.score_study import score_study

        return score_study(obj, study_ref, options, again=again, queue=queue, wait=wait, as_json=as_json)
    if again:
        raise OrchError("--again: only with --study (it scores again the jobs already scored on the folder)")
    ckpt, source_job_id, classes = resolve_checkpoint(obj, job_id, checkpoint, best_of)
    if best_of is not None:
        click.echo(f"orch: --best-of {best_of}: job {source_job_id} (the best val_acc of its succeeded jobs)", err=True)
    spec_dict, listing = check_inputs(options, classes)
    if source_job_id is not None:
        held_out = not warn_if_trained_on(obj, source_job_id, spec_dict["data"])
        if held_out and (spec_dict.get("labels") or listing.labels is not None):
            note_test_accuracy_replaced(obj, source_job_id, len(listing.files))
    spec = pin(parse_option(ScoreSpec, SCORE_FIELDS, {"checkpoint": ckpt, **spec_dict}), listing)
    if source_job_id is not None:
        option = "--job" if job_id is not None else "--best-of" if best_of is not None else "--checkpoint"
        check_written_by(obj, option, source_job_id, ckpt, spec.inputs.checkpoint_sha256 if spec.inputs else "")
    parent_id, shard_ids = queue_score(obj, spec, source_job_id=source_job_id, queue=queue)
    payload = {"job_id": parent_id, "shard_job_ids": shard_ids}
    if not as_json:
        plural = "s" if len(shard_ids) > 1 else ""
        click.echo(f"score job {parent_id}: {len(shard_ids)} shard{plural} (job{plural} {', '.join(map(str, shard_ids))})",
                   err=True)
    report_queued(obj, [parent_id], payload, wait=False, as_json=as_json)
    if wait and not wait_for_score(obj, parent_id, shard_ids):
        raise SystemExit(1)


def _labels_for_data(ctx: click.Context, options: dict[str, Any]) -> str | None:
    """--labels, unless they came from orch.toml's test_labels while --data names another folder
    than its test: those labels are the test folder's, and applied to another they scored 50% that
    the report took for the job's test accuracy."""
    labels, project_test = options.get("labels"), (ctx.default_map or {}).get("data")
    if labels is None or ctx.get_parameter_source("labels") is not ParameterSource.DEFAULT_MAP or project_test is None:
        return labels
    if Path(options["data"]).resolve() == Path(project_test).resolve():
        return labels
    click.echo(f"orch: note: not using orch.toml's test_labels: they label its test folder ({project_test}), "
               f"not {options['data']}; give --labels for it", err=True)
    return None


def warn_if_trained_on(obj: CliState, job_id: int, data: str) -> bool:
    """A note on stderr when the scored folder is one the model saw in training: its accuracy is then
    no test accuracy, and the report leaves it out of test_acc (scoring a training set has its uses:
    finding mislabelled images). True when it is."""
    from shared.scoring.inputs import trained_on
    from shared.store import reads

    with obj.store.session() as s:
        job = reads.job(s, job_id)
        spec = dict(job.spec) if job is not None else {}
    role = trained_on(spec, data)
    if role:
        click.echo(f"orch: note: {data} is job {job_id}'s {role} folder: the accuracy scored on it is not a "
                   "held-out test accuracy, and reports do not show it as test_acc", err=True)
    return bool(role)


def note_test_accuracy_replaced(obj: CliState, job_id: int, n_images: int) -> None:
    """A note on stderr when the job has a test accuracy already: the report shows each job's latest,
    and a sanity check on 2 images replaced 59.50% on 200 with 100% without a word."""
    from sqlalchemy import select

    from shared.store import Score

    with obj.store.session() as s:
        last = s.execute(select(Score.accuracy, Score.n_images, Score.out)
                         .where(Score.source_job_id == job_id, Score.is_test, Score.accuracy.is_not(None))
                         .order_by(Score.id.desc()).limit(1)).first()
    accuracy, n, out = last if last is not None else (None, 0, "")
    if accuracy is not None:
        click.echo(f"orch: note: reports show job {job_id}'s latest test accuracy: {100 * accuracy:.2f}% on {n} images "
                   f"({out}) until this run of {n_images} images ends, then this run's where every image is "
                   "labelled", err=True)


def check_written_by(obj: CliState, option: str, job_id: int, path: str, found: str) -> None:
    """The checkpoint file is the one job `job_id` wrote, by the sha256 it recorded: two stores sharing
    one ORCH_ARTIFACTS (ORCH_DATABASE_URL changed, ORCH_HOME kept) number their jobs alike, and the
    other store's job 1 wrote over this one's checkpoints: its model was scored as this job's, unsaid."""
    from shared.store import reads

    with obj.store.session() as s:
        recorded = reads.recorded_digest(s, job_id, path)
    if recorded is not None and recorded != found:
        raise SpecError(option, f"{path} is not the file job {job_id} wrote (sha256 {found[:12]}, recorded "
                                f"{recorded[:12]}): something wrote over it, such as another store's job {job_id} "
                                "where two stores share one ORCH_ARTIFACTS folder; the run is refused")


def resolve_checkpoint(obj: CliState, job_id: int | None, checkpoint: str | None,
                       best_of: str | None) -> tuple[str, int | None, list[str]]:
    """(checkpoint path, the training job it came from, its class names) for exactly one source."""
    if sum(x is not None for x in (job_id, checkpoint, best_of)) != 1:
        raise OrchError(EXACTLY_ONE)
    from orchestrator.paths import existing_path
    from shared.store import reads

    with obj.store.session() as s:
        if job_id is not None:
            trained = reads.training_job(s, job_id)
            if trained is None:
                raise SpecError("--job", reads.not_training(s, job_id) or f"no training job {job_id}")
            return best_checkpoint_of(trained, obj.settings.artifacts)
        if best_of is not None:
            return best_checkpoint_of(_best_in_study(s, best_of), obj.settings.artifacts)
        path = existing_path("--checkpoint", checkpoint, folder=False) or ""
        owner = reads.job_of_checkpoint(s, path)
    if owner is not None and owner.classes:
        return path, owner.id, owner.classes
    return path, owner.id if owner is not None else None, classes_in_file(path)


def _best_in_study(session: Any, ref: str) -> TrainedJob:
    from shared.store import reads
    from shared.store.report_reads import resolve_study

    study = resolve_study(session, ref)
    if study is None:
        raise SpecError("--best-of", f"no study {ref}")
    best = reads.best_in_study(session, study.id)
    if best is None:
        raise SpecError("--best-of", f"study {study.id} has no succeeded training job with a val accuracy yet")
    return best


def best_checkpoint_of(job: TrainedJob, artifacts: Path) -> tuple[str, int, list[str]]:
    if job.status in ("queued", "running"):
        raise SpecError("--job", f"job {job.id} is {job.status}: its best checkpoint may still change; "
                                 "wait for it to end, or pass --checkpoint FILE")
    if job.best is None:
        raise SpecError("--job", f"job {job.id} has no best checkpoint (status {job.status})")
    if not Path(job.best).is_file() and Path(job.best).parent.is_dir():  # its folder is here, the file not
        raise SpecError("--job", f"job {job.id}'s best checkpoint {job.best} is missing (deleted or moved?); "
                                 "--checkpoint FILE scores a copy of it")
    if not Path(job.best).is_file():  # recorded by a worker whose ORCH_ARTIFACTS this host does not see
        raise SpecError("--job", f"job {job.id}'s best checkpoint {job.best} is not on this host (its ORCH_ARTIFACTS "
                                 f"here: {artifacts}); every host of a lab needs the workers' "
                                 "artifacts folder at the same path")
    if job.status in ("cancelled", "failed"):  # scored as if trained: nothing said it had stopped part way
        click.echo(f"orch: note: job {job.id} is {job.status}: its best checkpoint is of the epochs it finished, "
                   f"not of the whole run (`orch retry {job.id}` resumes it)", err=True)
    return job.best, job.id, job.classes or classes_in_file(job.best)


def classes_in_file(path: str) -> list[str]:
    """A checkpoint the store does not describe: read its class names (this path imports torch)."""
    from shared.engine.checkpoint import load_checkpoint

    try:
        return [str(c) for c in load_checkpoint(Path(path), mmap=True)["classes"]]
    except CheckpointError as exc:
        raise SpecError("--checkpoint", str(exc)) from None


def check_inputs(options: dict[str, Any], classes: list[str]) -> tuple[dict[str, Any], Listing]:
    """The spec fields and the folder's listing, with every problem the folder and labels can show
    without decoding."""
    from orchestrator.paths import existing_path, output_path
    from shared.data import read_labels_csv, scan, unread_images_note
    from shared.scoring.inputs import (
        check_folder_classes,
        check_label_classes,
        check_labels_agree,
        check_labels_cover,
        check_shards,
    )

    data = existing_path("--data", options["data"], folder=True, required=True) or ""
    try:
        listing: Listing = scan(Path(data))  # empty folder, non-numeric name, mixed layouts
    except DataError as exc:  # the folder's problem, under the option's name as every other error
        raise DataError(str(exc) if str(exc).startswith("--data") else f"--data: {exc}") from None
    labels_path = existing_path("--labels", options.get("labels"), folder=False)
    if labels_path:
        labels = read_labels_csv(Path(labels_path))
        check_label_classes(labels, classes)
        mismatch = check_labels_cover(labels, listing)  # a CSV numbered from 1 is named as such first
    partial = check_folder_classes(listing, classes)
    unread = unread_images_note(Path(data))
    if unread:
        click.echo(f"orch: note: --data: {unread}", err=True)
    if labels_path:  # a labelled folder: the CSV may only say what its names say
        check_labels_agree(labels, listing, classes)
        if mismatch:
            click.echo(f"orch: note: {mismatch}", err=True)
    if partial:
        click.echo(f"orch: note: {partial}", err=True)
    check_shards(options.get("shards") or 1, listing)
    out = output_path("--out", options["out"], "preds.csv")
    check_out_is_no_input(out, listing, labels_path)
    spec: dict[str, Any] = {"data": data, "out": str(out), "labels": labels_path}
    # every other option of the spec as given (a new ScoreSpec field needs no line here: --names had none)
    spec.update({f.dest: options[f.dest] for f in SCORE_FIELDS
                 if f.dest not in spec and f.dest != "checkpoint" and options.get(f.dest) is not None})
    return spec, listing


def check_out_is_no_input(out: Path, listing: Listing, labels: str | None) -> None:
    """The CSV is written over --out: never over an input (the labels became the predictions, and an
    image of --data a CSV that the next scoring of the folder failed on)."""
    from shared.data import IMAGE_SUFFIXES

    if labels is not None and out == Path(labels):
        raise SpecError("--out", f"{out} is the --labels file; writing the predictions there would replace "
                                 "the labels; give another file such as preds.csv")
    if out.suffix.lower() in IMAGE_SUFFIXES or out in set(listing.files):
        raise SpecError("--out", f"{out} is an image's name (the predictions are a CSV); give a file such "
                                 "as preds.csv")


def queue_score(obj: CliState, spec: Any, *, source_job_id: int | None, queue: str) -> tuple[int, list[int]]:
    """Record the parent and its shards, and the shards' owed messages, in one transaction, then send
    the shards (never the parent: it is sent for assembly when its shards are done)."""
    from orchestrator.submission import record_and_send
    from shared.store.outbox import owe
    from shared.store.scoring_runs import add_score_run

    parent_ids = []

    def record(s: Any) -> list[Any]:
        parent, shards = add_score_run(s, spec, queue=queue, source_job_id=source_job_id)
        parent_ids.append(parent.id)
        return [owe(s, job) for job in shards]

    owed = record_and_send(obj, queue, record)
    return parent_ids[0], [row.job_id for row in owed]


def wait_for_score(obj: CliState, parent_id: int, shard_ids: list[int]) -> bool:
    """Follow the shards, then the parent. Reads only: a parent whose shard failed is failed by that
    shard or by a worker's sweeper (shared/scoring/protocol.py), never by the CLI."""
    from orchestrator.progress import wait_for
    from shared.scoring.protocol import Verdict, observe

    started = time.monotonic()
    shards_ok = wait_for(obj, shard_ids, named=[parent_id], noun="shard", started=started)
    parent, verdict, reason = observe(obj.store, parent_id)
    if not shards_ok and verdict != Verdict.complete:  # a shard failed, or Ctrl-C
        if verdict == Verdict.failed:
            click.echo(f"score job {parent_id}: {reason}; no CSV written", err=True)
        return False
    # the shards' line said how many succeeded
    if not wait_for(obj, [parent_id], summary=False, named=[parent_id], started=started):
        return False
    click.echo(written_line(obj, parent_id), err=True)
    return True


def written_line(obj: CliState, parent_id: int, explain_int8: bool = True) -> str:
    """'wrote preds.csv: 100 rows; ...' of a succeeded scoring run, its CSV delivered to this host."""
    from shared.scoring.protocol import observe

    parent, _, _ = observe(obj.store, parent_id)
    result = (parent.result if parent is not None else None) or {}
    where = deliver_here(result, assembled_by(obj, parent_id))
    return f"wrote {result.get('out')}{where}: {score_line(result, explain_int8)}"


def assembled_by(obj: CliState, parent_id: int) -> str | None:
    """The worker that wrote the CSV, as `orch status` names it ("HOST via shard job N")."""
    from shared.store import reads

    with obj.store.session() as s:
        row = reads.job(s, parent_id)
        return row.worker_host if row is not None else None


def deliver_here(result: dict[str, Any], worker: str | None) -> str:
    """Make --out on this host hold the run's CSV. The assembling worker wrote `out` on its own
    machine: on another host of a lab the CLI said "wrote" of a file that was not there (or was an
    older run's). The run's copy in ORCH_ARTIFACTS (shared between hosts) is copied over; '' when
    --out already held it, else what happened, for the "wrote" line."""
    from shared.scoring.csv_parts import write_atomic

    out, kept = Path(str(result.get("out"))), Path(str(result["kept"])) if result.get("kept") else None
    if kept is None or not kept.is_file():
        if out.is_file():
            return ""
        return (f" on the worker's machine ({worker or 'the assembling worker'}), not this one: ORCH_ARTIFACTS "
                f"({kept.parent if kept else 'its run folder'}) is not shared with this host")
    if out.is_file() and out.read_bytes() == kept.read_bytes():
        return ""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, [kept])
    return f" (copied from {kept}: {worker or 'the worker'} wrote it on its machine)"


INT8_SAID = (" (a quantized copy of the network: a few predictions may differ from the checkpoint's own; "
             "--precision fp32 scores it as trained)")


def score_line(result: dict[str, Any], explain_int8: bool = True) -> str:
    """'100 rows; accuracy 56.00% (50 of 100 labelled)': how many images the accuracy stands on."""
    n = int(result.get("n") or 0)
    line = f"{n} row{'' if n == 1 else 's'}"
    precision = result.get("precision")
    if result.get("int8_fallback"):  # --precision int8 asked for it: say what ran instead, and why
        line += f"; ran {precision}, not int8: {result['int8_fallback']}"
    elif precision:  # int8 said every time: its predictions can differ from the checkpoint's on a few images
        line += f"; scored in {precision}" + (INT8_SAID if "int8" in precision and explain_int8 else "")
    if result.get("accuracy") is None:
        return line
    labelled = result.get("labelled")
    of = f" ({labelled} of {n} labelled)" if labelled is not None and labelled != n else ""
    why = f"; not the job's test_acc in reports: {result['not_test_acc']}" if result.get("not_test_acc") else ""
    return f"{line}; accuracy {100 * result['accuracy']:.2f}%{of}{why}"
