"""Turning CLI options into validated specs and queued jobs.

Everything is validated before anything is written: a grid with one bad cell queues nothing.
"""
from __future__ import annotations

import gc
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from orchestrator.fields import GRID_FIELDS, OptionField, cells, default_arch, parse_cells
from shared.spec import ModelSpec, Spec, TrainSpec

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from orchestrator.context import CliState
    from shared.store import Job, Study
    from shared.store.outbox import Owed

def train_specs(options: dict[str, Any], fields: Sequence[OptionField] = GRID_FIELDS,
                fixed: dict[str, Any] | None = None) -> list[TrainSpec]:
    """The cross product of the listed options (one cell when none is listed), every cell validated
    before anything is queued; duplicates dropped. `fixed` holds fields the CLI sets by path.

    Groups above 1 without a model (flag or project file) use resnet50, and say so on stderr.
    """
    default = default_arch(fields, options)
    if default is not None:
        dest, arch = default
        click.echo(f"orch: no --model given: using {arch} (the ResNeXt paper's base) for --groups above 1",
                   err=True)
        options = {**options, dest: arch}
    grid = cells(fields, options)
    specs: list[TrainSpec] = parse_cells(TrainSpec, fields, grid, fixed)
    if len(specs) < len(grid):  # `--seeds 0,0` said "queued 1 of 1 cells"
        click.echo(f"orch: note: {len(grid) - len(specs)} of {len(grid)} cells repeat another (a value given twice, "
                   "or one that is what the default builds, as --norm bn): each is queued once", err=True)
    return specs


def grid_specs(options: dict[str, Any], fixed: dict[str, Any] | None = None) -> list[TrainSpec]:
    return train_specs(options, GRID_FIELDS, fixed)


SLOW_FACTOR = 4  # a cell estimated at more than this many times the cheapest cell's multiply-adds is named


def slow_cells_warning(specs: Sequence[TrainSpec]) -> str | None:
    """One line naming the grid's cells whose models cost over SLOW_FACTOR x the cheapest's multiply-adds
    per image (estimated without torch): their jobs will take about that much longer. None if none do."""
    from shared.archs import estimate_macs

    costs = {key: estimate_macs(model) for key, model in _model_labels(specs).items()}
    cheapest = min(costs, key=lambda key: costs[key])
    slow = sorted((key for key in costs if costs[key] > SLOW_FACTOR * costs[cheapest]), key=lambda key: -costs[key])
    if not slow:
        return None
    named = ", ".join(f"{key} ({costs[key] / 1e9:.3g} GMACs, {costs[key] / costs[cheapest]:.0f}x)" for key in slow)
    return (f"orch: warning: {len(slow)} of {len(costs)} models are estimated at over {SLOW_FACTOR}x the multiply-adds "
            f"of the cheapest ({cheapest}: {costs[cheapest] / 1e9:.3g} GMACs per image), so their jobs will take "
            f"that much longer: {named}")


def _model_labels(specs: Sequence[TrainSpec]) -> dict[str, ModelSpec]:
    """The grid's distinct models, each labelled by the model fields that vary ("arch=resnet50 groups=8")."""
    models = {spec.model.spec_hash(): spec.model for spec in specs}
    dumps = [model.model_dump(mode="json") for model in models.values()]
    varying = [key for key in dumps[0] if len({json.dumps(d[key]) for d in dumps}) > 1]
    # named by the values as built (width_mult 1.0, not the None a default is stored as)
    built = [model.as_built().model_dump(mode="json") for model in models.values()]
    return {" ".join(f"{key}={d[key]}" for key in varying) or "the model": model
            for d, model in zip(built, models.values(), strict=True)}


@dataclass
class Queued:
    job_ids: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # cells already queued, running or done (idempotent studies)
    study_id: int | None = None


def queue_jobs(obj: CliState, specs: Sequence[Spec], *, kind: str, queue: str, study_name: str | None = None,
               grid: dict[str, Any] | None = None, **columns: Any) -> Queued:
    """Record the jobs (and the study, when `grid` is given) with their owed messages, then send them.

    With a study name seen before, only cells that are missing, failed or cancelled are queued.
    """
    from shared.store import JobKind
    from shared.store import jobs as store_jobs
    from shared.store.outbox import owe

    outcome = Queued()
    study_name = _study_name(study_name)

    def record(s: Session) -> list[Owed]:
        owed = []
        study = _study_to_extend(s, study_name) if study_name else None
        before = None
        if grid is not None and study is None:
            study = store_jobs.add_study(s, study_name, grid)
        elif grid is not None and study is not None:  # extended: the page's "as submitted" shows every value
            before = dict(study.grid)
            study.grid = merged_grid(study.grid, grid)
        existing = {stored_hash(job): job for job in study.jobs} if study is not None else {}
        added = False
        for spec in specs:
            job = existing.get(spec.spec_hash())
            if job is not None and not store_jobs.reset_for_retry(s, [job], by="its study's submit again"):
                outcome.skipped.append(job.id)
                continue
            if job is None:
                added = True
                job = store_jobs.add_job(s, JobKind(kind), spec, queue=queue,
                                         study_id=study.id if study is not None else None, **columns)
            owed.append(owe(s, job))
        if before is not None and added and study is not None and grid is not None:  # cells new to the study
            _note_changed_settings(study.name or str(study.id), before, grid)
        outcome.study_id = study.id if study is not None else None
        return owed

    outcome.job_ids = [row.job_id for row in record_and_send(obj, queue, record)]
    return outcome


def _study_name(name: str | None) -> str | None:
    """--study as every other command finds it: they strip the name, so a study stored as ' norms ' was
    found by none of them, and one named '' or '  ' (an unset shell variable) by no name at all."""
    from shared.errors import OrchError

    if name is None:
        return None
    if not name.strip():
        raise OrchError(f"--study: empty name {name!r}; give a name such as norms, or leave --study out")
    return name.strip()


def _study_to_extend(session: Session, ref: str) -> Study | None:
    """The study named `ref`, or whose id it is (every other command reads `--study 2` as id 2 first);
    None for a new name. A new study cannot be named by a number: it would be found by id elsewhere."""
    from shared.errors import OrchError
    from shared.store import Study
    from shared.store import jobs as store_jobs

    study = store_jobs.find_study(session, ref)
    if study is None and ref.strip().isdigit():
        study = session.get(Study, int(ref))
        if study is None:
            raise OrchError(f"--study: no study has id {ref}, and a new study's name cannot be a number "
                            "(every command would read it as an id); give a name such as norms")
    return study


def _note_changed_settings(study: str, before: dict[str, Any], now: dict[str, Any]) -> None:
    """A note when a setting the study had one value of has another one now: an extension meant to
    add seeds made a new config instead (--epochs 1 into an --epochs 2 study), which then ranked first."""
    fixed = {f.dest for f in GRID_FIELDS if not f.listed}  # the axes (norm, lr, seeds) are there to extend
    changed = [f"--{key.replace('_', '-')} {before[key]} -> {value}" for key, value in now.items()
               if key in fixed and key in before and before[key] != value]
    if changed:
        click.echo(f"orch: note: study {study} was submitted with other settings ({'; '.join(changed)}): these "
                   "cells are other configs than its earlier ones", err=True)
    # one axis given new values extends the study (--norm gn beside bn,ln,in); several at once is
    # another grid, which the report then ranks and compares with the first one as if it were one
    axes = {f.dest for f in GRID_FIELDS if f.listed}
    # an axis not given now is at its default; one given moves when it holds a value the study's lacks
    moved = [key for key in sorted(axes & set(now)) if not _values(now[key]) <= _values(before.get(key))]
    if len(moved) > 1:
        was = " ".join(f"--{k.replace('_', '-')} {before[k]}" for k in sorted(axes & set(before))) or "its defaults"
        is_now = " ".join(f"--{k.replace('_', '-')} {now[k]}" for k in moved)
        click.echo(f"orch: note: study {study} was submitted as {was}; these cells ({is_now}) differ in "
                   f"{', '.join(moved)} at once: another grid, which its report will rank and compare with the "
                   "first as one study; --study NEW_NAME starts a study of their own", err=True)


def _values(value: Any) -> set[str]:
    """An axis's values as given ('1,8' and '8,1' are the same values)."""
    return {x.strip() for x in str(value).split(",") if x.strip()} if value is not None else set()


def merged_grid(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """A study's options over its submissions: each option's comma list with the values of both, in
    the order first given (`--width-mult 0.5,1.0`, then `0.5,1.0,1.4`: 0.5,1.0,1.4), and under
    GRID_SUBMISSIONS each submission as given: the merge alone read as one grid that was never submitted
    (none,se without --pretrained and cbam with it showed as all three with it)."""
    from shared.store.schema import GRID_SUBMISSIONS

    merged = dict(before)
    first = {key: value for key, value in before.items() if key != GRID_SUBMISSIONS}
    merged[GRID_SUBMISSIONS] = [*before.get(GRID_SUBMISSIONS, [first]), now]
    for key, value in now.items():
        if key not in merged or merged[key] == value:
            merged[key] = value
            continue
        items = [str(x).strip() for x in (*str(merged[key]).split(","), *str(value).split(","))]
        merged[key] = ",".join(dict.fromkeys(x for x in items if x))
    return merged


def require_broker(obj: CliState, queues: Sequence[str] = (), unchanged: str = "") -> None:
    """BrokerUnavailable (one line) unless the broker answers, before a command changes anything;
    `unchanged` says what the failure left as it was ("nothing was requeued")."""
    from shared.broker_errors import broker_boundary
    from shared.celery_app import check_broker
    from shared.errors import BrokerUnavailable

    try:
        with broker_boundary():
            check_broker(obj.celery, queues=queues)
    except BrokerUnavailable as exc:
        raise BrokerUnavailable(f"{exc}; {unchanged}" if unchanged else str(exc)) from None


def record_and_send(obj: CliState, queue: str, record: Callable[[Session], list[Owed]]) -> list[Owed]:
    """Check the broker (an unreachable one leaves the store untouched), run `record` in one
    transaction, then send the messages it owes.

    The garbage collector is paused from the insert to the send: a full collection of the CLI's heap
    (celery, kombu, sqlalchemy and pydantic loaded) takes 80 ms, and when one fell there it was most
    of a job's dispatch latency on Redis. The process ends soon after; the collection runs later.
    """
    require_broker(obj, [queue], unchanged="nothing was recorded or queued")
    gc.disable()
    try:
        with obj.store.session() as s:
            owed = record(s)
        send_owed(obj, owed)
    finally:
        gc.enable()
    if owed:
        note_unread_queue(obj, queue)
    return owed


def note_unread_queue(obj: CliState, queue: str) -> None:
    """A queue of another name than the default that no running worker reads, said at submit (a
    `--queue typo` was queued with nothing said, and waited for ever). The default queue is not asked:
    the question costs a second, and every worker reads that one unless told otherwise."""
    from orchestrator.workers import unread_queues
    from shared.config import DEFAULT_QUEUE

    unread = unread_queues(obj, [queue]) if queue != DEFAULT_QUEUE else None
    if unread:
        click.echo(f"orch: note: {unread[1]}", err=True)


def stored_hash(job: Job) -> str:
    """A recorded job's spec hash as its spec reads today: a field added since it was submitted takes
    its default (as every reader's does), so a study submitted again after an upgrade finds its cells."""
    from shared.spec import SPEC_FOR_KIND, read_stored

    return read_stored(SPEC_FOR_KIND[str(job.kind)], job.spec).spec_hash()


def send_owed(obj: CliState, owed: Sequence[Any]) -> None:
    """Send the messages just committed; if the broker fails now, a worker's relay sends them."""
    from shared.delivery import deliver_or_defer

    error = deliver_or_defer(obj.celery, obj.store, owed)
    if error:
        ids = ", ".join(str(row.job_id) for row in owed)
        click.echo(f"orch: the broker failed while sending ({error}); job(s) {ids} are recorded and a "
                   "worker will send them when the broker answers", err=True)
