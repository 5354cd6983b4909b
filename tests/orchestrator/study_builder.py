"""A finished study written straight into a store with the store's own functions: no worker, no training.

The default is the report's test grid: resnet50, norm bn/ln/in x groups 1/2/4 x seeds 0/1, three
epochs each, with curves that make bn best and ln still rising at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.config import load_settings
from shared.spec import ModelSpec, ScoreSpec, TrainSpec
from shared.store import JobKind, JobStatus, Lease, Store, Study, open_store
from shared.store import jobs as store_jobs
from shared.store.scoring_runs import add_score_run

NORM_LEVEL = {"bn": 0.90, "in": 0.80, "ln": 0.60}
SEED_EFFECT = {"bn": 0.01, "in": 0.03, "ln": 0.02}  # per seed and per doubling of groups: spread to pair
WIDTH = {1: 64, 2: 40, 4: 24}  # ResNeXt Table 2's width per group, as describe() records it


@dataclass
class Grid:
    name: str = "norms-groups"
    norms: tuple[str, ...] = ("bn", "ln", "in")
    groups: tuple[int, ...] = (1, 2, 4)
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 3
    scored: set[tuple[str, int, int]] = field(default_factory=set)  # (norm, groups, seed) with a test score
    score_precision: str | None = None  # what those scoring runs ran in


def open_home(home: Path, monkeypatch: object) -> Store:
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)  # type: ignore[attr-defined]
    return open_store(load_settings(home))


def curve(norm: str, groups: int, seed: int, epochs: int) -> list[dict[str, float]]:
    """bn and in settle by the last epoch; ln gains 8 points per epoch to the end."""
    top = NORM_LEVEL[norm] + 0.01 * groups.bit_length() + SEED_EFFECT[norm] * seed * groups.bit_length()
    rows = []
    for epoch in range(1, epochs + 1):
        rising = norm == "ln"
        acc = top - 0.08 * (epochs - epoch) if rising else top - (0.2 if epoch == 1 else 0.0)
        loss = 0.7 - 0.15 * epoch if rising else (0.5 if epoch == 1 else 0.3)
        rows.append({"epoch": epoch, "train_loss": loss, "val_loss": loss + 0.05, "val_acc": acc,
                     "images_per_s": 100.0 + groups, "seconds": 2.0, "lr": 0.001})
    return rows


def build_study(store: Store, grid: Grid | None = None) -> dict[tuple[str, int, int], int]:
    """The study's jobs, all succeeded, keyed by (norm, groups, seed) -> job id."""
    grid = grid or Grid()
    with store.session() as s:
        study = Study(name=grid.name, grid={"norm": ",".join(grid.norms), "groups": ",".join(map(str, grid.groups)),
                                            "seeds": ",".join(map(str, grid.seeds))})
        s.add(study)
        s.flush()
        study_id = study.id
    jobs = {}
    for norm in grid.norms:
        for groups in grid.groups:
            for seed in grid.seeds:
                jobs[(norm, groups, seed)] = add_run(store, study_id, norm, groups, seed, grid.epochs)
    for key in grid.scored:
        add_score(store, jobs[key], accuracy=NORM_LEVEL[key[0]] - 0.02, precision=grid.score_precision)
    return jobs


def add_run(store: Store, study_id: int | None, norm: str, groups: int, seed: int, epochs: int,
            lr: float = 1e-3, val_accs: list[float] | None = None, precision: str | None = None,
            data: str = "/data/train", val: str = "/data/val", **settings: Any) -> int:
    """One succeeded run with `curve`'s epochs, or with these val_acc values (one per epoch); its
    result names the precision it trained in where one is given."""
    spec = TrainSpec(model=ModelSpec(arch="resnet50", norm=norm, groups=groups, image_size=32, num_classes=2),
                     data=data, val=val, epochs=epochs, lr=lr, seed=seed, **settings)
    with store.session() as s:
        job_id = store_jobs.add_job(s, JobKind.train, spec, study_id=study_id).id
    lease = Lease.acquire(store, job_id, "lab-gpu-1:100", ttl=30)
    assert lease is not None
    lease.update(model_info={
        "arch": "resnet50", "groups": groups, "width_per_group": WIDTH[groups], "norm": norm,
        "params": 23_500_000 + 100_000 * groups, "gmacs": round(0.33 + 0.01 * groups, 3)})
    for metrics in curve(norm, groups, seed, epochs):
        if val_accs is not None:
            metrics["val_acc"] = val_accs[int(metrics["epoch"]) - 1]
        lease.record_epoch(metrics)
    ran = {"precision": precision} if precision else {}
    lease.finish(JobStatus.succeeded, result={"wall_s": 6.0, "versions": {"orch": "0.1.0", "torch": "2.14.1"}, **ran})
    return job_id


def add_score(store: Store, source_job_id: int, accuracy: float, precision: str | None = None,
              hits: dict[str, Any] | None = None) -> None:
    spec = ScoreSpec(checkpoint="/ckpt/best.pt", data="/data/test", out=f"/out/{source_job_id}.csv")
    with store.session() as s:  # a scoring run as the protocol records it, its one shard done
        job_id = add_score_run(s, spec, queue="orch", source_job_id=source_job_id)[0].id
    lease = Lease.acquire(store, job_id, "lab-gpu-1:100", ttl=30)
    assert lease is not None
    lease.begin_assembly()
    lease.complete_score({"accuracy": accuracy, **({"precision": precision} if precision else {})}, {
        "source_job_id": source_job_id, "out": spec.out, "n_images": hits["images"] if hits else 40, "accuracy": accuracy, "images_per_s": 500.0,
        "hits": hits})
