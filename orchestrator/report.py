"""The leaderboard: one row per training job, or per config with mean ± std over seeds."""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from orchestrator.fields import TRAIN_FIELDS, axis_values
from orchestrator.metrics import METRICS
from shared.spec import TrainSpec, read_stored
from shared.store import Job, JobKind, Score

COLUMN_FOR = {"width_per_group": "width"}  # leaderboard columns named otherwise than their option
# a config is a grid cell less its seed: the spec's grid axes, so a new axis is a new column
CONFIG_KEYS = tuple(COLUMN_FOR.get(f.dest, f.dest) for f in TRAIN_FIELDS if f.axis and f.path != "seed")


def job_rows(session: Session, study_id: int | None) -> list[dict[str, Any]]:
    """Training jobs with at least one recorded epoch, with their best epoch and test accuracy."""
    query = select(Job).where(Job.kind == JobKind.train).options(selectinload(Job.epochs)).order_by(Job.id)
    if study_id is not None:
        query = query.where(Job.study_id == study_id)
    jobs = [job for job in session.scalars(query) if job.epochs]
    tests = latest_test_accuracy(session, [job.id for job in jobs])
    return [job_row(job, tests.get(job.id)) for job in jobs]


def latest_test_accuracy(session: Session, job_ids: list[int]) -> dict[int, float]:
    rows = session.execute(select(Score.source_job_id, Score.accuracy).where(
        Score.source_job_id.in_(job_ids), Score.accuracy.is_not(None)).order_by(Score.id))
    return {job_id: acc for job_id, acc in rows}


def job_row(job: Job, test_acc: float | None) -> dict[str, Any]:
    best = max(job.epochs, key=lambda e: (e.val_acc, -e.epoch))
    spec, info = read_stored(TrainSpec, job.spec), job.model_info or {}
    config = {COLUMN_FOR.get(k, k): v for k, v in axis_values(spec).items()}
    return {
        "id": job.id, "status": job.status, **config,
        "params": info.get("params"), "gmacs": info.get("gmacs"),
        "val_acc": best.val_acc, "val_loss": best.val_loss, "test_acc": test_acc,
        "epochs": len(job.epochs), "images_per_s": statistics.fmean(e.images_per_s for e in job.epochs),
        "wall_s": (job.result or {}).get("wall_s") or round(sum(e.seconds for e in job.epochs), 1),
    }


def rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Best first; rows without the metric last."""
    higher = METRICS[metric]
    present = [r for r in rows if r.get(metric) is not None]
    missing = [r for r in rows if r.get(metric) is None]
    present.sort(key=lambda r: r[metric], reverse=higher)
    return [{"rank": i, **row} for i, row in enumerate(present + missing, start=1)]


def group_over_seeds(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per config (everything but the seed): mean ± std of the metric and n seeds."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in CONFIG_KEYS)].append(row)
    out = []
    for key, members in groups.items():
        values = [m[metric] for m in members if m.get(metric) is not None]
        out.append({
            **dict(zip(CONFIG_KEYS, key)),
            f"{metric}_mean": statistics.fmean(values) if values else None,
            f"{metric}_std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None,
            "n": len(values), "seeds": sorted(m["seed"] for m in members),
            "params": members[0]["params"], "gmacs": members[0]["gmacs"],
            "images_per_s": statistics.fmean(m["images_per_s"] for m in members),
            "job_ids": [m["id"] for m in members],
        })
    return _rank_grouped(out, metric)


def _rank_grouped(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    key = f"{metric}_mean"
    higher = METRICS[metric]
    rows = sorted(rows, key=lambda r: (r[key] is None, -(r[key] or 0) if higher else (r[key] or 0)))
    return [{"rank": i, **row} for i, row in enumerate(rows, start=1)]


def for_display(rows: list[dict[str, Any]], metric: str, grouped: bool) -> list[dict[str, Any]]:
    """Table cells: `mean ± std` in one column, percentages with 2 decimals, rounded numbers."""
    shown = []
    for row in rows:
        row = dict(row)
        if grouped:
            mean, std = row.pop(f"{metric}_mean"), row.pop(f"{metric}_std")
            row = {"rank": row.pop("rank"), **{k: row.pop(k) for k in CONFIG_KEYS},
                   metric: _pm(mean, std, metric), **row}
            row["seeds"] = ",".join(map(str, row["seeds"]))
            row["job_ids"] = ",".join(map(str, row["job_ids"]))
        if row.get("params"):
            row["params"] = f"{row['params'] / 1e6:.2f}M"
        for key in ("val_acc", "test_acc") if not grouped else ():
            if row.get(key) is not None:
                row[key] = f"{100 * row[key]:.2f}%"
        for key in ("val_loss", "images_per_s", "gmacs"):
            if isinstance(row.get(key), float):
                row[key] = round(row[key], 3 if key == "gmacs" else 1 if key == "images_per_s" else 4)
        shown.append(row)
    return shown


def _pm(mean: float | None, std: float | None, metric: str) -> str:
    if mean is None:
        return ""
    scale, unit = (100.0, "%") if metric.endswith("acc") else (1.0, "")
    return f"{scale * mean:.2f} ± {scale * (std or 0):.2f}{unit}"
