"""The leaderboard: one row per training job (a study's configs over seeds: orchestrator.analysis)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from orchestrator.fields import SETTINGS, TRAIN_FIELDS, axis_values, setting_values
from orchestrator.metrics import METRICS
from shared.spec import TrainSpec, read_stored
from shared.store.report_reads import LeaderboardEntry, RunRecord, jobs_by_id, leaderboard_entries

COLUMN_FOR = {"width_per_group": "width"}  # leaderboard columns named otherwise than their option


def config_columns(spec: dict[str, Any]) -> dict[str, Any]:
    """The leaderboard's config columns: the spec's grid axes as built (so a new axis is a new column),
    seed included."""
    return axis_columns(read_stored(TrainSpec, spec))


def axis_columns(spec: TrainSpec) -> dict[str, Any]:
    return {COLUMN_FOR.get(k, k): v for k, v in axis_values(spec).items()}


def leaderboard(session: Session, study_id: int | None, metric: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The `limit` best training runs (0: all), ranked by `metric` (METRICS: best first, the lowest job id
    on a tie, runs without it last), and how many runs there are.

    Ranking needs only each run's numbers, which the store reduces, ranks and cuts in SQL; the config
    columns (a typed spec per row) are built for the rows shown.
    """
    shown, total = leaderboard_entries(session, study_id, metric=metric, descending=METRICS[metric], limit=limit)
    records = jobs_by_id(session, [entry.id for entry in shown])
    return [{"rank": place, **job_row(records[entry.id], entry)} for place, entry in enumerate(shown, 1)], total


def first_by_last_epoch(session: Session, study_id: int | None) -> LeaderboardEntry | None:
    """The run that ranks first by its last epoch's val_acc, picked by nothing (the leaderboard's
    val_acc is each run's best epoch, picked on the images it is measured on)."""
    first, _ = leaderboard_entries(session, study_id, metric="last_val_acc", limit=1)
    return first[0] if first else None


def leaderboard_header() -> list[str]:
    """job_row's columns, with rank first, for a leaderboard of no runs: a script reading its CSV
    finds the columns it reads (an empty store's CSV was no line at all). A test holds the two
    together."""
    axes = [COLUMN_FOR.get(f.dest, f.dest) for f in TRAIN_FIELDS if f.axis]
    settings = [f.dest for f in TRAIN_FIELDS if f.dest in SETTINGS]
    return ["rank", "id", "study", "status", *axes, "data", "val", *settings, "params", "gmacs", "val_acc",
            "last_val_acc", "val_loss", "test_acc", "test_precision", "epochs", "precision", "images_per_s", "wall_s"]


def job_row(run: RunRecord, entry: LeaderboardEntry) -> dict[str, Any]:
    spec = read_stored(TrainSpec, run.spec)  # once a row: the axes, then the settings beside them
    return {
        "id": run.id, "study": run.study, "status": run.status, **axis_columns(spec),
        "data": run.spec.get("data"), "val": run.spec.get("val"), **setting_values(spec),
        "params": run.model_info.get("params"), "gmacs": run.model_info.get("gmacs"),
        "val_acc": entry.val_acc, "last_val_acc": entry.last_val_acc, "val_loss": entry.val_loss,
        "test_acc": entry.test_acc, "test_precision": entry.test_precision,
        "epochs": entry.epochs, "precision": run.result.get("precision"), "images_per_s": entry.images_per_s,
        "wall_s": run.result.get("wall_s") or round(entry.seconds, 1),
    }
