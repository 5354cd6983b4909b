"""`orch submit train|ablation|score`: validate, record, send by name; --wait follows progress."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from orchestrator.context import Context, pass_context
from orchestrator.submission import existing_path, grid_specs, parse_option, queue_jobs, train_spec_dict
from shared.config import DEFAULT_QUEUE
from shared.spec import ARCHS, NORMS, PRECISIONS, TrainSpec


@click.group()
def submit() -> None:
    """Queue jobs: a training run, an ablation grid, or a scoring run."""


def training_options(listable: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options train and ablation share; in an ablation the grid axes take comma lists."""
    many = " (comma list)" if listable else ""
    num = str if listable else None
    options = [
        click.option("--data", required=True, help="Training folder: ImageFolder or flat cat.1.jpg layout."),
        click.option("--val", help="Validation folder (default: split --val-fraction off --data)."),
        click.option("--val-fraction", type=float, help="Fraction of --data held out when --val is not given [0.2]."),
        click.option("--model", default="resnet18", show_default=True, help=f"Architecture{many}: {', '.join(ARCHS)}."),
        click.option("--norm", help=f"Normalisation{many}: {', '.join(NORMS)} [bn]."),
        click.option("--groups", type=num or int, help=f"ResNeXt cardinality{many}, bottleneck depths only [1]."),
        click.option("--width-per-group", type=num or int, help=f"Width per group{many} [chosen to keep FLOPs]."),
        click.option("--stem", type=click.Choice(["auto", "imagenet", "small"]), help="Stem [auto: small at <= 64 px]."),
        click.option("--epochs", type=int, help="Epochs [10]."),
        click.option("--batch-size", type=num or int, help=f"Batch size{many} [64]."),
        click.option("--lr", type=num or float, help=f"Learning rate{many} [0.001]."),
        click.option("--optimizer", type=click.Choice(["adam", "sgd"]), help="Optimizer [adam]."),
        click.option("--schedule", type=click.Choice(["cosine", "step", "none"]), help="LR schedule [cosine]."),
        click.option("--label-smoothing", type=float, help="Label smoothing [0]."),
        click.option("--weight-decay", type=float, help="Weight decay [0]."),
        click.option("--image-size", type=int, help="Image size in pixels, >= 32 [224]."),
        click.option("--precision", type=click.Choice(PRECISIONS), help="auto: bf16 where the hardware has it [auto]."),
        click.option("--pretrained", help="A local torchvision state_dict file (never downloaded)."),
        click.option("--compile", is_flag=True, default=None,
                     help="torch.compile the training step: faster steps on a GPU after a compile of minutes."),
        click.option("--queue", default=DEFAULT_QUEUE, show_default=True, help="Celery queue to send to."),
        click.option("--wait", is_flag=True, help="Follow progress until every job ends; exit 0 only if all succeeded."),
        click.option("--json", "as_json", is_flag=True, help="Print the ids as JSON."),
    ]
    if listable:
        options.append(click.option("--seeds", default="0", show_default=True, help="Seeds (comma list)."))
        options.append(click.option("--study", "study_name", help="Study name: submitting again queues only missing or failed cells."))
    else:
        options.append(click.option("--seed", type=int, help="Random seed [0]."))

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def resolve_paths(options: dict[str, Any]) -> dict[str, Any]:
    """Absolute paths (the worker may run elsewhere in the tree), checked before anything is queued."""
    from shared.data import check_folder

    options = dict(options)
    options["data"] = existing_path("--data", options["data"], folder=True)
    options["val"] = existing_path("--val", options.get("val"), folder=True)
    options["pretrained"] = existing_path("--pretrained", options.get("pretrained"), folder=False)
    check_folder(options["data"], labelled=True)
    if options["val"]:
        check_folder(options["val"], labelled=True)
    return options


@submit.command()
@training_options(listable=False)
@pass_context
def train(obj: Context, wait: bool, as_json: bool, queue: str, **options: Any) -> None:
    """Queue one training job.

    \b
    Examples:
      orch submit train --data data/train --val data/val --model resnet34 --epochs 10
      orch submit train --data data/train --model resnet50 --groups 32 --norm gn --wait
    """
    spec = parse_option(TrainSpec, train_spec_dict(resolve_paths(options)))
    queued = queue_jobs(obj, [spec], kind="train", queue=queue)
    report_queued(obj, queued.job_ids, {"job_id": queued.job_ids[0]}, wait=wait, as_json=as_json)


@submit.command()
@training_options(listable=True)
@pass_context
def ablation(obj: Context, wait: bool, as_json: bool, queue: str, study_name: str | None, **options: Any) -> None:
    """Queue a study: one training job per cell of the grid.

    --model, --norm, --groups, --width-per-group, --lr, --batch-size and --seeds take comma
    lists; the grid is their cross product. Every cell is checked first: a cell that cannot
    be built (groups on resnet18, say) refuses the whole grid and queues nothing.

    \b
    Examples:
      orch submit ablation --data data/train --val data/val --model resnet50 \\
          --norm bn,ln,in --groups 1,8,32 --seeds 0,1,2
      orch submit ablation --data data/train --model resnet18 --lr 0.01,0.001 --study lr-sweep --wait
      orch report --study 1
    """
    options = resolve_paths(options)
    specs = grid_specs(options)
    grid = {k: v for k, v in options.items() if v is not None}
    queued = queue_jobs(obj, specs, kind="train", queue=queue, study_name=study_name, grid=grid)
    payload = {"study_id": queued.study_id, "job_ids": queued.job_ids, "skipped": queued.skipped}
    if not as_json:
        skipped = f"; {len(queued.skipped)} cells already done or running" if queued.skipped else ""
        click.echo(f"study {queued.study_id}: queued {len(queued.job_ids)} of {len(specs)} cells{skipped}", err=True)
    report_queued(obj, queued.job_ids, payload, wait=wait, as_json=as_json)


def report_queued(obj: Context, job_ids: list[int], payload: dict[str, Any], *, wait: bool, as_json: bool) -> None:
    """Print what was queued; with --wait follow it and exit 1 unless every job succeeded."""
    if as_json:
        click.echo(json.dumps(payload))
    else:
        for job_id in job_ids:
            click.echo(f"queued job {job_id}")
    if wait and job_ids:
        from orchestrator.progress import wait_for

        if not wait_for(obj, job_ids):
            raise SystemExit(1)


from orchestrator.commands.score import score  # noqa: E402

submit.add_command(score)
