"""`train(spec, workdir)`: seeded, resumable training on the decode cache.

Every epoch ends with an atomic checkpoint written before the epoch is reported, so a job killed at
any point resumes after its last complete epoch and ends with the metrics of a run that was never
interrupted. Standalone, those are last.pt (and best.pt when validation accuracy improves), and a
run resumes from last.pt. Under a worker (`name_for` given) each epoch gets its own file, named by
the worker for the epoch and the attempt's lease token, and the run resumes from the file the worker
names (`resume_from`, the store's current one): a stale attempt's files never replace the current
ones, since nothing ever looks for a file by a fixed name. The model,
optimizer, scheduler and RNG states are restored, and each epoch's data order and augmentation
come from a generator seeded by (seed, epoch), not from whatever ran before.

There is no DataLoader: images are decoded once into the memory-mapped cache, so a batch is one
gather from it in this process (worker processes would only copy it again). On CUDA the gather runs
one batch ahead on a thread, the uint8 batch is copied from pinned memory asynchronously and
augmented on the GPU (feed.py), cuDNN picks its fastest kernels (benchmark mode), and fp16 autocast
gets a gradient scaler. `spec.compile` runs the training step through torch.compile.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.atomic import atomic_path
from shared.config import load_settings
from shared.data.augment import augment
from shared.data.images import ImageSet, TrainData, load_train_data
from shared.engine.checkpoint import (
    FORMAT,
    checkpoint_spec,
    load_checkpoint,
    model_for,
    rng_state,
    save_atomic,
    set_rng_state,
    without_pretrained,
)
from shared.engine.feed import device_batches
from shared.engine.infer import VAL_BATCH_FACTOR, evaluate
from shared.engine.precision import Precision, default_device, resolve
from shared.engine.progress import Progress, in_phase
from shared.errors import CheckpointError, JobCancelled, NonFiniteLoss
from shared.spec import TrainSpec
from shared.val_hits import pack, set_identity

LAST, BEST = "last.pt", "best.pt"
HITS = "val_hits"  # an epoch's metrics: which validation images it got right (shared/val_hits.py)
FINITE_CHECK_EVERY = 16  # steps between loss checks: each check is one host sync on a GPU
STEP_MILESTONES = (0.5, 0.75)  # the ResNet paper's /10 points, as fractions of training

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class Run:
    """What one training run carries from epoch to epoch."""

    spec: TrainSpec
    classes: list[str]
    device: torch.device
    prec: Precision
    model: nn.Module  # the module whose state_dict is checkpointed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    net: nn.Module  # what the steps call: `model`, or its torch.compile wrapper
    scaler: torch.amp.GradScaler  # a pass-through unless fp16 autocast runs
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_at: int = 0  # the epochs the checkpoint resumed from held (0: a fresh start)
    startup: dict[str, float] = field(default_factory=dict)  # seconds to data, model, first step
    sources: dict[str, str] = field(default_factory=dict)  # the data's decode-cache files (`data_sources`)

    @property
    def epoch(self) -> int:
        return len(self.history)

    def best(self) -> tuple[float, int]:
        """(best val accuracy, its epoch); the earliest epoch wins a tie, as best.pt does."""
        if not self.history:
            return 0.0, 0
        top = max(self.history, key=lambda m: (m["val_acc"], -m["epoch"]))
        return top["val_acc"], top["epoch"]


def train(spec: TrainSpec, workdir: Path, on_epoch: EpochCallback | None = None, *,
          cache_dir: Path | None = None, should_stop: Callable[[], bool] | None = None,
          resume_from: Path | None = None, name_for: Callable[[int], str] | None = None,
          on_progress: Progress | None = None, on_note: Callable[[str, str], None] | None = None,
          on_model: Callable[[list[str]], None] | None = None) -> dict[str, Any]:
    """Train `spec` in `workdir`; see the module doc. With `name_for`, epoch N is written to
    workdir/name_for(N), on_epoch gets its path ("checkpoint") and whether it is the best so far
    ("best"), and the run resumes from `resume_from` only; without it, last.pt and best.pt.
    `on_progress` is told each batch decoded, trained and validated; `on_note` (kind, message) what a
    reader of the job's history should know: a resume on changed data (a warning), the precision
    `auto` measured its way to (info); `on_model` the data's classes once the model is built."""
    workdir = Path(workdir)
    cache = Path(cache_dir) if cache_dir is not None else load_settings().cache_dir
    started = time.perf_counter()
    # every DataError comes before the model
    data = load_train_data(Path(spec.data), Path(spec.val) if spec.val else None, spec.val_fraction,
                           spec.model.image_size, cache, progress=in_phase(on_progress, "decoding"))
    loaded = time.perf_counter()
    _stop_if_asked(should_stop, "after decoding its images")
    workdir.mkdir(parents=True, exist_ok=True)
    resumed = _resume_state(resume_from if name_for is not None else workdir / LAST, spec, data.classes)
    run = _setup(spec, data, resumed, cache)
    if on_model is not None:
        on_model(list(data.classes))
    _stop_if_asked(should_stop, "after building its model")
    probe = run.prec.probe if run.prec.probe is not None and run.prec.probe.measured_now else None
    if probe is not None and on_note is not None:  # a machine's first job: it measured what auto chose
        on_note("info", probe.says())
    run.startup = {"data_s": round(loaded - started, 3), **({"probe_s": round(probe.seconds, 3)} if probe else {}),
                   "build_s": round(time.perf_counter() - loaded - (probe.seconds if probe else 0.0), 3)}
    run.sources = data_sources(data)
    changed = resumed is not None and resumed.get("data") and resumed["data"] != run.sources
    if changed and on_note is not None:  # the images changed between attempts (a corrupt file replaced...)
        on_note("warning", f"resumed from epoch {run.epoch} on changed data: the training or validation folder's files "
                f"(names, sizes or modification times) differ from those the checkpoint was trained on")
    for metrics in run.history:  # repairs a crash between the checkpoint and the store's write
        if on_epoch is not None:
            on_epoch(_reported(metrics))
    while run.epoch < spec.epochs:
        metrics = _epoch(run, data, run.epoch + 1, should_stop, on_progress)
        improved = metrics["val_acc"] > run.best()[0] or run.epoch == 0
        run.history.append(metrics)
        _keep_hits_of_best_and_last(run)
        written = _write_checkpoints(run, workdir, improved, name_for)
        if on_epoch is not None:
            files = {"checkpoint": str(written), "best": improved} if name_for is not None else {}
            on_epoch({**_reported(metrics), **files})
    best_acc, best_epoch = run.best()
    fenced = name_for is not None  # the worker knows which file is the best: the store names it
    return {"best_val_acc": best_acc, "best_epoch": best_epoch, "epochs": run.epoch,
            "classes": list(data.classes), **_chance_inputs(data.val), **_running_stats_inputs(run, data),
            "precision": run.prec.name, **_val_hits(run, data.val),
            **({"bf16_speedup": round(run.prec.probe.speedup, 2)} if run.prec.probe is not None else {}),
            "last_checkpoint": None if fenced else str(workdir / LAST),
            "best_checkpoint": None if fenced else str(workdir / BEST), "startup": run.startup,
            # the epochs a resume took from the checkpoint ran in earlier attempts: the job's wall time
            # counts them (a resumed job looked cheaper than the same job run without a kill)
            **({"earlier_epochs_s": round(sum(m.get("seconds", 0.0) for m in run.history[:run.resumed_at]), 2)}
               if run.resumed_at else {})}


def _reported(metrics: dict[str, Any]) -> dict[str, Any]:
    """An epoch as on_epoch gets it: its numbers (the hits go to the result, for two epochs only)."""
    return {k: v for k, v in metrics.items() if k != HITS}


def _keep_hits_of_best_and_last(run: Run) -> None:
    """The history (in every checkpoint) keeps the hits the result will name, not one set an epoch."""
    keep = {run.best()[1], run.epoch}
    for metrics in run.history:
        if metrics["epoch"] not in keep:
            metrics.pop(HITS, None)


def _val_hits(run: Run, val: ImageSet) -> dict[str, Any]:
    """{"val_hits": which validation images the best and the last epoch got right, and the set they
    are of}: the report pairs runs image by image with them. {} where an epoch lacks them (its
    checkpoint came from an orch before them)."""
    best, last = (next(m for m in run.history if m["epoch"] == e) for e in (run.best()[1], run.epoch))
    if HITS not in best or HITS not in last or val.labels is None:
        return {}
    source = Path(str(getattr(val.array, "filename", "") or "")).name
    return {"val_hits": {"set": set_identity(source, val.ids, val.labels.tolist()), "images": len(val),
                         "best": best[HITS], "last": last[HITS], "best_epoch": best["epoch"],
                         "last_epoch": last["epoch"]}}


def _running_stats_inputs(run: Run, data: TrainData) -> dict[str, Any]:
    """What the report judges BatchNorm's running statistics by (validation normalises with them): the
    steps an epoch takes, and the lowest momentum of the net's BatchNorm layers (torchvision's
    MobileNetV3 keeps 0.01: 21 steps left them 81% their initial values, and a model that had learned
    (95% after recomputing them) validated at chance). Nothing for a net without BatchNorm."""
    momenta = [m.momentum for m in run.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               and m.track_running_stats and m.momentum is not None]
    if not momenta:
        return {}
    return {"bn_momentum": float(min(momenta)),
            "steps_per_epoch": _steps_per_epoch(len(data.train), run.spec.batch_size)}


def _chance_inputs(val: ImageSet) -> dict[str, Any]:
    """What the report judges chance level by: the validation images and their most common class's share."""
    if val.labels is None or not len(val):
        return {}
    return {"val_images": len(val), "val_majority": float(np.bincount(val.labels).max() / len(val))}


def data_sources(data: TrainData) -> dict[str, str]:
    """The decode-cache files the training and validation images came from: their names digest every
    file's path, size and modification time (shared/data/cache.py), so a resume can tell the images
    changed since the checkpoint's epochs. {} where the arrays are not cache files."""
    names = {role: Path(str(getattr(images.array, "filename", "") or "")).name
             for role, images in (("train", data.train), ("val", data.val))}
    return names if all(names.values()) else {}


def _resume_state(path: Path | None, spec: TrainSpec, classes: list[str]) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    state = load_checkpoint(path)
    if checkpoint_spec(state, path) != spec:
        raise CheckpointError(f"{path}: was written by a different spec; train in a new folder")
    if list(state["classes"]) != classes:
        raise CheckpointError(f"{path}: classes {state['classes']} differ from the data's {classes}")
    return state


def _setup(spec: TrainSpec, data: TrainData, resumed: dict[str, Any] | None, cache: Path) -> Run:
    device = default_device()
    # a resume keeps what the checkpoint's epochs ran in (auto could measure otherwise on this worker)
    prec = resolve(spec.precision, device, cache_dir=cache, trained_in=resumed.get("precision") if resumed else None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every step has the same shapes: tune each conv once
        torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls on Ampere and newer
    torch.manual_seed(spec.seed)
    model = model_for(spec if resumed is None else without_pretrained(spec), data.classes).to(device)
    if prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(spec, model)
    total_steps = spec.epochs * _steps_per_epoch(len(data.train), spec.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(spec.schedule, total_steps))
    net: nn.Module = torch.compile(model) if spec.compile else model  # type: ignore[assignment]
    scaler = torch.amp.GradScaler(device.type, enabled=prec.needs_grad_scaler)
    run = Run(spec, list(data.classes), device, prec, model, optimizer, scheduler, net, scaler)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        set_rng_state(resumed["rng"])
        run.history = [dict(m) for m in resumed["history"]]
        run.resumed_at = len(run.history)
    return run


def _optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD, fused (one kernel for all parameters) where this torch and device have it:
    a resnet18 Adam step takes 11 instead of 15 ms on the CPU, ~2% of a training step."""
    cls: type[torch.optim.Optimizer]
    options: dict[str, Any]
    if spec.optimizer == "sgd":
        cls, options = torch.optim.SGD, {"momentum": spec.momentum}
    else:
        cls, options = torch.optim.Adam, {}
    try:
        return cls(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel here: the per-tensor loop
        return cls(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, **options)


def _lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the base lr at each optimizer step (the scheduler steps once per batch)."""
    def cosine(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))

    def step_decay(step: int) -> float:
        return 0.1 ** sum(step >= m * total_steps for m in STEP_MILESTONES)

    return {"cosine": cosine, "step": step_decay}.get(schedule, lambda step: 1.0)


def _steps_per_epoch(images: int, batch_size: int) -> int:
    """The optimizer steps of one epoch over `images`: the lr schedule's unit and the BN note's."""
    return len(_batches(np.arange(images), batch_size))


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches; a last batch of one image joins the one before (BatchNorm needs two)."""
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def _stop_if_asked(should_stop: Callable[[], bool] | None, where: str) -> None:
    """A stop asked during a start-up phase (a decode, the bf16 probe): before the next one, not at the
    first step. A worker stopping waited out its 10-s grace for a job still starting up, and another
    worker took a newer job before this one was back in the queue."""
    if should_stop is not None and should_stop():
        raise JobCancelled(f"stopped {where}, before its first step")


def _epoch(run: Run, data: TrainData, epoch: int, should_stop: Callable[[], bool] | None,
           on_progress: Progress | None = None) -> dict[str, Any]:
    lr = float(run.optimizer.param_groups[0]["lr"])
    start = time.perf_counter()
    train_loss = _train_epoch(run, data.train, epoch, should_stop, on_progress)
    train_seconds = time.perf_counter() - start
    if should_stop is not None and should_stop():
        raise JobCancelled(f"cancelled at epoch {epoch} before validation")
    checked = evaluate(run.net, data.val, run.spec.batch_size * VAL_BATCH_FACTOR, run.prec, run.device,
                       in_phase(on_progress, "validation", epoch))
    if not math.isfinite(checked.loss):  # a diverged model: retrying cannot help
        raise NonFiniteLoss(f"validation loss is {checked.loss} at epoch {epoch}: the model diverged; try a lower --lr")
    return {"epoch": epoch, "train_loss": train_loss, "val_loss": checked.loss, "val_acc": checked.accuracy,
            "images_per_s": len(data.train) / train_seconds, "seconds": time.perf_counter() - start,
            "lr": lr, HITS: pack(checked.hits.tolist())}


def _train_epoch(run: Run, images: ImageSet, epoch: int, should_stop: Callable[[], bool] | None,
                 on_progress: Progress | None = None) -> float:
    """One pass over `images`; returns the mean train loss. No host sync but the periodic loss check."""
    spec, device = run.spec, run.device
    gen = torch.Generator().manual_seed(spec.seed * 1_000_003 + epoch)
    order = torch.randperm(len(images), generator=gen).numpy()
    run.model.train()
    losses: list[torch.Tensor] = []
    batches = _batches(order, spec.batch_size)
    step_started = time.perf_counter()
    seen = 0
    for step, (batch, labels) in enumerate(device_batches(images, batches, device), start=1):
        if should_stop is not None and should_stop():
            raise JobCancelled(f"cancelled at epoch {epoch} step {step}")
        x = augment(batch, gen, channels_last=run.prec.channels_last)
        with run.prec.autocast(device):
            assert labels is not None  # a training batch always has its labels (only scoring's may not)
            loss = F.cross_entropy(run.net(x).float(), labels, label_smoothing=spec.label_smoothing)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        losses.append(loss.detach() * len(batch))
        if "first_step_s" not in run.startup:
            _time_first_step(run, step_started)
        if step % FINITE_CHECK_EVERY == 0:
            _check_finite(losses, step - FINITE_CHECK_EVERY, epoch)
        if on_progress is not None:
            seen += len(batch)
            on_progress("training", epoch, seen, len(images))
    _check_finite(losses, len(losses) - len(losses) % FINITE_CHECK_EVERY, epoch)
    return float(torch.stack(losses).sum().item()) / len(images)


def _time_first_step(run: Run, started: float) -> None:
    """The run's first step (kernel selection, allocations): one sync, once per run."""
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    run.startup["first_step_s"] = round(time.perf_counter() - started, 3)


def _check_finite(losses: list[torch.Tensor], first: int, epoch: int) -> None:
    """NonFiniteLoss naming the first bad step among losses[first:] (step numbers are 1-based)."""
    recent = torch.stack(losses[first:]) if losses[first:] else None
    if recent is None or bool(torch.isfinite(recent).all()):
        return
    bad = int((~torch.isfinite(recent)).nonzero()[0, 0])
    value = recent[bad].item()
    raise NonFiniteLoss(f"train loss is {'nan' if math.isnan(value) else 'inf'} at epoch {epoch} step {first + bad + 1}")


def _write_checkpoints(run: Run, workdir: Path, improved: bool, name_for: Callable[[int], str] | None) -> Path:
    """The epoch's file under the worker's name for it; standalone, last.pt and best.pt first when
    improved (a crash in between redoes this epoch, identically). Returns the file written."""
    best_acc, best_epoch = run.best()
    state = {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": run.epoch,
        "rng": rng_state(),
        "spec": run.spec.model_dump(mode="json"),
        "classes": list(run.classes),
        "history": [dict(m) for m in run.history],
        "data": dict(run.sources),
        "best_val_acc": best_acc,
        "best_epoch": best_epoch,
        "precision": run.prec.name,  # what `auto` ran: a resume and a scoring fallback keep it
    }
    # the folder again: deleted under a running job (a clean-up by hand), the write failed the job for good
    workdir.mkdir(parents=True, exist_ok=True)
    if name_for is not None:  # fenced files: the store's row says which one is current
        save_atomic(state, workdir / name_for(run.epoch))
        return workdir / name_for(run.epoch)
    with atomic_path(workdir / LAST) as tmp:  # renamed to last.pt after best.pt is published
        torch.save(state, tmp)
        if improved:
            _publish_copy(tmp, workdir / BEST)
    return workdir / LAST


def _publish_copy(src: Path, dest: Path) -> None:
    """dest := a copy of src, atomically; a hard link when the file system has them (no second write)."""
    with atomic_path(dest) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
