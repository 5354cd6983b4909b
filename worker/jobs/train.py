"""A training job: the shared engine, with each epoch and checkpoint recorded under the lease.

Checkpoint files are fenced (worker/checkpoints.py): this attempt writes files named for its token,
resumes from the file the store names, and records each new file as current in a fenced write.
"""
from __future__ import annotations

from typing import Any

from shared.spec import TrainSpec, parse
from shared.store import EpochFile
from shared.versions import installed_version
from worker import checkpoints
from worker.context import JobContext
from worker.progress import StepProgress


def run(ctx: JobContext) -> dict[str, Any]:
    import torch

    from shared.engine import train
    from shared.models import describe

    spec = parse(TrainSpec, ctx.spec)
    resume_from, broken = checkpoints.resume_point(ctx.lease)

    def on_epoch(metrics: dict[str, Any]) -> None:
        # train() has already written this epoch's file when it calls back; a replayed epoch
        # (one the resumed checkpoint holds) has none. The epoch and its file: one transaction.
        path = metrics.get("checkpoint")
        written = EpochFile(path, checkpoints.digest(path), bool(metrics["best"]), frozenset(broken)) if path else None
        ctx.lease.record_epoch(metrics, written)
        if written is not None:
            checkpoints.prune(ctx.lease, ctx.workdir)

    def on_model(classes: list[str]) -> None:
        # before the first epoch, not at the end: a running, cancelled or failed job had no params or GMACs
        ctx.lease.update(model_info=describe(spec.model_for_classes(len(classes))))

    result = train(spec, ctx.workdir, on_epoch=on_epoch, cache_dir=ctx.settings.cache_dir,
                   should_stop=ctx.should_stop, resume_from=resume_from,
                   name_for=checkpoints.file_name(ctx.lease.token), on_progress=StepProgress(ctx.lease),
                   on_note=ctx.lease.add_event, on_model=on_model)
    # Trained to the end: nothing resumes from here, so the fallback for a corrupt newest file goes
    # (a resnet50 with Adam's state is 281 MB a file; the best and the last stay).
    ctx.lease.drop_checkpoint("previous")
    checkpoints.prune(ctx.lease, ctx.workdir)
    if "val_hits" in result:  # its own column: kB a run, which the result (read by every listing) need not carry
        ctx.lease.update(val_hits=result["val_hits"])
    best = ctx.lease.checkpoints()["best"]
    return {
        "best_val_acc": result["best_val_acc"],
        "best_epoch": result["best_epoch"],
        "epochs": result["epochs"],
        "classes": list(result["classes"]),
        **{k: result[k] for k in ("val_images", "val_majority") if k in result},  # the report's chance level
        # and how far BatchNorm's running statistics moved from their start (analysis/running_stats.py)
        **{k: result[k] for k in ("bn_momentum", "steps_per_epoch") if k in result},
        "precision": result["precision"],  # what --precision auto ran (the spec keeps "auto")
        # what auto measured to choose it; the epochs resumed from (the supervisor adds them to wall_s)
        **{k: result[k] for k in ("bf16_speedup", "earlier_epochs_s") if k in result},
        "best_checkpoint": best.path,
        "startup": result["startup"],
        # what ran it: the report shows them beside the results (a worker may differ from the CLI)
        "versions": {"orch": installed_version("orch"), "torch": str(torch.__version__)},
    }
