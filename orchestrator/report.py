"""The leaderboard: one row per training job (a study's configs over seeds: orchestrator.analysis)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from orchestrator.analysis.configs import run_value
from orchestrator.fields import axis_values
from orchestrator.metrics import METRICS
from shared.spec import TrainSpec, read_stored
from shared.store.report_reads import RunRecord, training_runs

COLUMN_FOR = {"width_per_group": "width"}  # leaderboard columns named otherwise than their option


def config_columns(spec: dict[str, Any]) -> dict[str, Any]:
    """The leaderboard's config columns: the spec's grid axes as built (so a new axis is a new column),
    seed included."""
    return {COLUMN_FOR.get(k, k): v for k, v in axis_values(read_stored(TrainSpec, spec)).items()}


def job_rows(session: Session, study_id: int | None) -> list[dict[str, Any]]:
    """Training jobs with at least one recorded epoch, with their best epoch and test accuracy."""
    return [job_row(run) for run in training_runs(session, study_id)]


def job_row(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id, "status": run.status, **config_columns(run.spec),
        "params": run.model_info.get("params"), "gmacs": run.model_info.get("gmacs"),
        **{metric: run_value(run, metric) for metric in ("val_acc", "val_loss", "test_acc")},
        "epochs": len(run.epochs), "images_per_s": run_value(run, "images_per_s"),
        "wall_s": run.result.get("wall_s") or round(sum(e["seconds"] for e in run.epochs), 1),
    }


def rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Best first; rows without the metric last."""
    higher = METRICS[metric]
    present = [r for r in rows if r.get(metric) is not None]
    missing = [r for r in rows if r.get(metric) is None]
    present.sort(key=lambda r: r[metric], reverse=higher)
    return [{"rank": i, **row} for i, row in enumerate(present + missing, start=1)]


def for_display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table cells: percentages with 2 decimals, parameters in millions, rounded numbers."""
    shown = []
    for row in rows:
        row = dict(row)
        if row.get("params"):
            row["params"] = f"{row['params'] / 1e6:.2f}M"
        for key in ("val_acc", "test_acc"):
            if row.get(key) is not None:
                row[key] = f"{100 * row[key]:.2f}%"
        for key in ("val_loss", "images_per_s", "gmacs"):
            if isinstance(row.get(key), float):
                row[key] = round(row[key], 3 if key == "gmacs" else 1 if key == "images_per_s" else 4)
        shown.append(row)
    return shown
