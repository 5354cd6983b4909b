"""A training job: the shared engine, with each epoch and checkpoint recorded under the lease."""
from __future__ import annotations

from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from shared.spec import TrainSpec, parse
from worker.context import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    import torch

    from shared.engine import train
    from shared.models import describe

    spec = parse(TrainSpec, ctx.spec)
    best = {"val_acc": -1.0}

    def on_epoch(metrics: dict[str, Any]) -> None:
        # train() has already written the checkpoints for this epoch when it calls back.
        epoch = int(metrics["epoch"])
        ctx.lease.record_epoch(metrics)
        ctx.lease.record_checkpoint("last", str(ctx.workdir / "last.pt"), epoch, metrics.get("val_acc"))
        if metrics["val_acc"] > best["val_acc"]:
            best["val_acc"] = metrics["val_acc"]
            ctx.lease.record_checkpoint("best", str(ctx.workdir / "best.pt"), epoch, metrics["val_acc"])

    result = train(spec, ctx.workdir, on_epoch=on_epoch, cache_dir=ctx.settings.cache_dir,
                   should_stop=ctx.should_stop)
    ctx.lease.update(model_info=describe(spec.model_for_classes(len(result["classes"]))))
    return {
        "best_val_acc": result["best_val_acc"],
        "best_epoch": result["best_epoch"],
        "epochs": result["epochs"],
        "classes": list(result["classes"]),
        "best_checkpoint": str(Path(result["best_checkpoint"])),
        "startup": result["startup"],
        # what ran it: the report shows them beside the results (a worker may differ from the CLI)
        "versions": {"orch": package_version("orch"), "torch": torch.__version__},
    }
