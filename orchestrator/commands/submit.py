"""`orch submit train|ablation|score`: validate, record, send by name; --wait follows progress."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from orchestrator.commands.score import score
from orchestrator.context import CliState, pass_state
from orchestrator.fields import GRID_FIELDS, TRAIN_FIELDS
from orchestrator.options import queue_names, spec_options
from orchestrator.paths import existing_path
from orchestrator.submission import queue_jobs, slow_cells_warning, train_specs
from shared.config import DEFAULT_QUEUE
from shared.errors import OrchError
from shared.spec import TrainSpec


@click.group()
def submit() -> None:
    """Queue jobs: a training run, an ablation grid, or a scoring run.

    \b
    Examples:
      orch submit train --data data/train --val data/val --model resnet18 --epochs 2 --wait
      orch submit ablation --data data/train --val data/val --norm bn,ln,in --seeds 0,1 --study norms
      orch submit score --job 1 --data data/test --labels data/test_labels.csv --out preds.csv --wait
    """


def command_options(listable: bool, json_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """What train and ablation add to the spec's own options: where to send, and how to report
    (`json_help`: the keys --json prints, for a script's writer)."""
    options = [
        click.option("--queue", default=DEFAULT_QUEUE, show_default=True, metavar="NAME", callback=queue_names,
                     help="Celery queue to send to."),
        click.option("--wait", is_flag=True, help="Follow progress until every job ends; exit 0 only if all succeeded."),
        click.option("--json", "as_json", is_flag=True, help=json_help),
    ]
    if listable:
        options.append(click.option("--study", "study_name", metavar="NAME",
                                    help="Study name (or an existing study's id): submitting again queues "
                                         "only the cells missing, failed or cancelled."))

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


MODEL_HELP = {"model.arch": {"default_text": "resnet18; resnet50 when --groups asks for more than 1"}}


def resolve_paths(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Absolute paths (the worker may run elsewhere in the tree), checked before anything is queued;
    the fields the data decides (the class count the model is built for); and notes on the data, for
    the caller to print once every cell is checked (an error is one line, with no note before it)."""
    from shared.data import split_indices, unread_images_note, unsplit_classes, val_classes_note
    from shared.errors import DataError
    from shared.torch_files import not_a_torch_file

    options = dict(options)
    options["data"] = existing_path("--data", options["data"], folder=True, required=True)
    options["val"] = existing_path("--val", options.get("val"), folder=True)
    options["pretrained"] = existing_path("--pretrained", options.get("pretrained"), folder=False)
    problem = options["pretrained"] and not_a_torch_file(Path(options["pretrained"]))
    if problem:
        raise OrchError(f"--pretrained: {problem}")
    listing = _scanned("--data", options["data"])
    classes = listing.classes
    notes = [unread_images_note(Path(options["data"]))]
    if options.get("image_size") is None:  # neither on the command line nor in an orch.toml
        notes.append(_default_size_note(options["data"], listing.files))
    if options["val"]:
        if Path(options["val"]) == Path(options["data"]):
            notes.append("--val is the training folder: validation accuracy will be measured on images the model "
                         "trains on (leave --val out to hold out --val-fraction of them)")
        if options.get("val_fraction") is not None:  # given, and taken for nothing: say which wins
            notes.append(f"--val-fraction {options['val_fraction']} is not used: --val {options['val']} is the "
                         "validation set")
        notes.append(unread_images_note(Path(options["val"])))
        notes.append(val_classes_note(_scanned("--val", options["val"], least=1), classes))
    else:  # the worker splits --data: a folder too small for it failed there, after the queue
        fraction = options.get("val_fraction") or TrainSpec.model_fields["val_fraction"].default
        try:
            split_indices(listing, fraction)
        except DataError as exc:
            raise OrchError(f"--data: {exc}") from None
        alone = unsplit_classes(listing)
        if alone:
            notes.append(f"--data: {_listed_classes(alone)} one image, which it trains on: the validation images "
                         "split off hold none of it, and their accuracy says nothing of it (--val FOLDER sets them)")
    return options, {"model.num_classes": len(classes)}, [f"orch: note: {note}" for note in notes if note]


def _listed_classes(names: list[str]) -> str:
    """'class b has' or 'classes b, c have' (the first five)."""
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"class {shown} has" if len(names) == 1 else f"classes {shown} have each"


def _default_size_note(data: str, files: list[Path]) -> str | None:
    """Where the spec's default size (224, ImageNet's) is at least twice the training images' side:
    32-px images upsampled to 224 cost some 49x the compute a step, for nothing they hold (a walk
    queued 10 epochs at 224 px from 32-px images with an example from --help)."""
    from orchestrator.commands.init import image_size_of
    from shared.spec import ModelSpec

    default = ModelSpec.model_fields["image_size"].default
    side = image_size_of(files)
    if 2 * side > default:
        return None
    return (f"no --image-size: training at the default {default} px, {default / side:.0f}x the side of {data}'s "
            f"images ({side} px), about {(default / side) ** 2:.0f}x the compute a step; --image-size {side} "
            "trains at their size (`orch init` writes it to orch.toml)")


def _say(notes: list[str]) -> None:
    """The data's notes, once the jobs are queued: a refused submit says one line, its error."""
    for note in notes:
        click.echo(note, err=True)


def _scanned(option: str, folder: str, **kwargs: Any) -> Any:
    """The folder's labelled listing; its problem named with the option ("no JPEG or PNG images" said
    which folder, not which of --data and --val)."""
    from shared.data import scan_labelled
    from shared.errors import DataError

    try:
        return scan_labelled(Path(folder), **kwargs)
    except DataError as exc:
        raise OrchError(f"{option}: {exc}") from None


@submit.command()
@spec_options(TRAIN_FIELDS, MODEL_HELP)
@command_options(listable=False, json_help='Print {"job_id": N} (with --wait, before it follows the job; '
                 "the exit code says how it ended).")
@pass_state
def train(obj: CliState, wait: bool, as_json: bool, queue: str, **options: Any) -> None:
    """Queue one training job. Options not given come from the nearest orch.toml (see orch init),
    then from the spec's defaults.

    \b
    Examples:
      orch submit train --data data/train --val data/val --model resnet18 --image-size 64 --epochs 3 --wait
      orch submit train --data data/train --model resnet50 --groups 32 --norm gn --image-size 64 --epochs 2
    (--image-size: the default is ImageNet's 224 px, about 12x the compute of 64 px a step)
    """
    options, fixed, notes = resolve_paths(options)
    spec = train_specs(options, TRAIN_FIELDS, fixed)[0]
    queued = queue_jobs(obj, [spec], kind="train", queue=queue)
    _say(notes)
    from orchestrator.progress import report_queued

    report_queued(obj, queued.job_ids, {"job_id": queued.job_ids[0]}, wait=wait, as_json=as_json)


@submit.command()
@spec_options(GRID_FIELDS, MODEL_HELP)
@command_options(listable=True, json_help='Print {"study_id": N, "job_ids": [...], "skipped": [...]}: the '
                 "jobs queued now, and the cells already queued, running or done (--study NAME again).")
@pass_state
def ablation(obj: CliState, wait: bool, as_json: bool, queue: str, study_name: str | None, **options: Any) -> None:
    """Queue a study: one training job per cell of the grid.

    The options whose help says "Comma list" (the spec's grid axes) take comma lists; the grid
    is their cross product. Every cell is checked first: a cell that cannot be built (groups on
    resnet18, say) or cannot train (InstanceNorm on 1x1 maps) refuses the whole grid and queues
    nothing; cells estimated at over 4x the cheapest cell's multiply-adds are named on stderr. Groups above 1 with no --model
    use resnet50, the ResNeXt paper's base. Options not given come from the nearest orch.toml
    (see orch init), then from the spec's defaults.

    \b
    Examples:
      orch submit ablation --data data/train --val data/val --model resnet50 \\
          --norm bn,ln,in --groups 1,8,32 --seeds 0,1,2
      orch submit ablation --data data/train --model resnet18 --lr 0.01,0.001 --study lr-sweep --wait
      orch submit ablation --data data/train --model resnet50 --attention none,se,cbam --seeds 0,1
      orch submit ablation --data data/train --model shufflenet_v1 --groups 1,3,8 --width-mult 0.5,1.0
      cd data && orch init && orch submit ablation --groups 1,8,32   # resnet50, data from orch.toml
      orch report --study 1
    """
    options, fixed, notes = resolve_paths(options)
    specs = train_specs(options, GRID_FIELDS, fixed)
    warning = slow_cells_warning(specs)
    if warning:
        click.echo(warning, err=True)
    grid = {k: v for k, v in options.items() if v is not None}
    queued = queue_jobs(obj, specs, kind="train", queue=queue, study_name=study_name, grid=grid)
    _say(notes)
    payload = {"study_id": queued.study_id, "job_ids": queued.job_ids, "skipped": queued.skipped}
    if not as_json:
        skipped = f"; {len(queued.skipped)} cells already queued, running or done" if queued.skipped else ""
        click.echo(f"study {queued.study_id}: queued {len(queued.job_ids)} of {len(specs)} cells{skipped}", err=True)
    from orchestrator.progress import report_queued

    # --wait follows the study to its end: the cells queued now and those already queued, running or done
    report_queued(obj, queued.job_ids, payload, wait=wait, as_json=as_json, also_follow=queued.skipped)


submit.add_command(score)
