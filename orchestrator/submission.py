"""Turning CLI options into validated specs and queued jobs.

Everything is validated before anything is written: a grid with one bad cell queues nothing.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import SpecError
from shared.spec import Spec, TrainSpec, parse

if TYPE_CHECKING:
    from orchestrator.context import Context

# spec field -> the CLI option that sets it, so errors name what the user typed
OPTION_FOR_FIELD = {
    "model.arch": "--model", "model.norm": "--norm", "model.groups": "--groups",
    "model.width_per_group": "--width-per-group", "model.stem": "--stem",
    "model.image_size": "--image-size", "model.pretrained": "--pretrained", "model": "--model",
    "val_fraction": "--val-fraction", "batch_size": "--batch-size", "label_smoothing": "--label-smoothing",
    "weight_decay": "--weight-decay", "seed": "--seed", "data": "--data", "val": "--val",
    "shards": "--shards", "out": "--out", "labels": "--labels", "checkpoint": "--checkpoint",
}


def as_option_error(exc: SpecError) -> SpecError:
    """Rename a spec field in the message to the CLI option that sets it."""
    option = OPTION_FOR_FIELD.get(exc.field) or "--" + exc.field.rsplit(".", 1)[-1].replace("_", "-")
    message = str(exc).removeprefix(f"{exc.field}: ")
    return SpecError(option, message)


def parse_option(cls: type[Spec], data: dict[str, Any]) -> Any:
    try:
        return parse(cls, data)
    except SpecError as exc:
        raise as_option_error(exc) from None


def split_list(option: str, raw: str | None, convert: type = str) -> list[Any]:
    """'1,8,32' -> [1, 8, 32]; a bad item names the option."""
    if raw is None:
        return [None]
    items = [item.strip() for item in str(raw).split(",") if item.strip()]
    if not items:
        raise SpecError(option, f"expected a comma-separated list, got {raw!r}")
    try:
        return [convert(item) for item in items]
    except ValueError:
        raise SpecError(option, f"expected a comma-separated list of {convert.__name__} values, got {raw!r}") from None


def existing_path(option: str, raw: str | None, *, folder: bool) -> str | None:
    if raw is None:
        return None
    path = Path(raw).expanduser().resolve()
    if folder and not path.is_dir():
        raise SpecError(option, f"no such folder: {raw}")
    if not folder and not path.is_file():
        raise SpecError(option, f"no such file: {raw}")
    return str(path)


def train_spec_dict(options: dict[str, Any]) -> dict[str, Any]:
    """One cell's spec dict from single-valued options (None means: the spec's default)."""
    model = {"arch": options["model"], "norm": options["norm"], "groups": options["groups"],
             "width_per_group": options["width_per_group"], "stem": options["stem"],
             "image_size": options["image_size"], "pretrained": options["pretrained"]}
    spec: dict[str, Any] = {"model": {k: v for k, v in model.items() if v is not None}}
    for name in ("data", "val", "val_fraction", "epochs", "batch_size", "lr", "optimizer", "momentum",
                 "weight_decay", "schedule", "label_smoothing", "seed", "precision", "compile"):
        if options.get(name) is not None:
            spec[name] = options[name]
    return spec


# (key of the single-valued option, key of the comma-list option, its flag, item type)
GRID_AXES: tuple[tuple[str, str, str, type], ...] = (
    ("model", "model", "--model", str), ("norm", "norm", "--norm", str), ("groups", "groups", "--groups", int),
    ("width_per_group", "width_per_group", "--width-per-group", int), ("lr", "lr", "--lr", float),
    ("batch_size", "batch_size", "--batch-size", int), ("seed", "seeds", "--seeds", int),
)


def grid_specs(options: dict[str, Any]) -> list[TrainSpec]:
    """The cross product of the list-valued options, every cell validated; duplicates dropped."""
    axes = [split_list(flag, options.get(listed), conv) for _, listed, flag, conv in GRID_AXES]
    specs: dict[str, TrainSpec] = {}
    for values in itertools.product(*axes):
        cell = {**options, **{name: v for (name, _, _, _), v in zip(GRID_AXES, values)}}
        spec = parse_option(TrainSpec, train_spec_dict(cell))
        specs.setdefault(spec.spec_hash(), spec)
    return list(specs.values())


@dataclass
class Queued:
    job_ids: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # cells already done or running (idempotent studies)
    study_id: int | None = None



def queue_jobs(obj: "Context", specs: Sequence[Spec], *, kind: str, queue: str, study_name: str | None = None,
               grid: dict[str, Any] | None = None, **columns: Any) -> Queued:
    """Record the jobs (and the study, when `grid` is given), then send their tasks.

    The broker is checked first so that an unreachable broker leaves the store untouched.
    With a study name seen before, only cells that are missing, failed or cancelled are queued.
    """
    from shared.queue import check_broker, send_job
    from shared.store import Study
    from shared.store import jobs as store_jobs
    from shared.task_label import job_label

    check_broker(obj.celery)
    outcome = Queued()
    to_send: list[tuple[int, str, str]] = []
    with obj.store.session() as s:
        study = store_jobs.find_study(s, study_name) if study_name else None
        if grid is not None and study is None:
            study = Study(name=study_name, grid=grid)
            s.add(study)
            s.flush()
        existing = {job.spec_hash: job for job in study.jobs} if study is not None else {}
        for spec in specs:
            job = existing.get(spec.spec_hash())
            if job is not None and not store_jobs.reset_for_retry(s, [job]):
                outcome.skipped.append(job.id)
                continue
            if job is None:
                job = store_jobs.add_job(s, kind, spec, queue=queue,
                                         study_id=study.id if study is not None else None, **columns)
            to_send.append((job.id, job.kind, job_label(job)))
        outcome.study_id = study.id if study is not None else None
    outcome.job_ids = [job_id for job_id, _, _ in to_send]
    try:
        for job_id, job_kind, label in to_send:
            send_job(obj.celery, job_id, job_kind, queue, label)
    except Exception as exc:
        _mark_unsent(obj, outcome.job_ids, exc)
        raise
    return outcome


def _mark_unsent(obj: "Context", job_ids: list[int], exc: Exception) -> None:
    from sqlalchemy import update

    from shared.config import redact
    from shared.store import Job, JobStatus

    with obj.store.session() as s:
        s.execute(update(Job).where(Job.id.in_(job_ids), Job.status == JobStatus.queued).values(
            status=JobStatus.failed, error=redact(f"could not be queued: {exc}".splitlines()[0])))

