"""Store scale: is `orch status` and `orch report` still quick for a lab that keeps every run?

Fills a fresh store with --jobs training jobs in --studies studies and --epochs epoch rows each
(10,000 jobs, 100 studies, 200,000 epochs by default), then times the commands a user types, as a
user runs them (a fresh `orch` process each time, the median of --repeat runs), on SQLite and on
PostgreSQL. Jobs are added with the store's own `add_job` and epochs as its `Epoch` rows in bulk
(one transaction per study): a lease write per epoch would take an hour to fill and is not what is
measured. Target: every command under 1 s, the HTML report of one study under 5 s.

    .venv/bin/python bench/store_scale.py                      # SQLite and PostgreSQL
    .venv/bin/python bench/store_scale.py --backend sqlite --jobs 2000 --epochs 10
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import Orch  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
NORMS, GROUPS, SEEDS = ("bn", "ln", "in"), (1, 8, 32), (0, 1, 2)


def main() -> None:
    args = parse_args()
    print(f"store scale: {args.jobs} jobs in {args.studies} studies, {args.jobs * args.epochs} epoch rows")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = {backend: run_backend(backend, args) for backend in backends}
    print_results(results, args)
    failures = [(b, name) for b, rows in results.items() for name, s in rows.items() if s > limit_for(name)]
    if failures:
        print("over target: " + ", ".join(f"{b} {name}" for b, name in failures))
        sys.exit(1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20, help="epoch rows per job")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="orch-scale-") as tmp:
        env, drop = database_env(backend, Path(tmp))
        try:
            orch = Orch(Path(tmp) / "home", env=env)
            started = time.perf_counter()
            job_id, study = fill(orch, args)
            print(f"{backend}: filled in {time.perf_counter() - started:.0f} s")
            html = Path(tmp) / "report.html"
            commands = {
                "orch --help": ["--help"],
                "orch status": ["status"],
                f"orch status {job_id}": ["status", str(job_id)],
                f"orch report --study {study}": ["report", "--study", study],
                "orch report": ["report"],
                f"orch report --study {study} --html": ["report", "--study", study, "--html", str(html)],
            }
            return {name: time_command(orch, argv, args.repeat) for name, argv in commands.items()}
        finally:
            drop()


def database_env(backend: str, tmp: Path) -> tuple[dict[str, str], Any]:
    if backend == "sqlite":
        return {}, lambda: None
    import psycopg

    name = f"orch_scale_{int(time.time())}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    url = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"
    return {"ORCH_DATABASE_URL": url}, drop


def fill(orch: Orch, args: argparse.Namespace) -> tuple[int, str]:
    """The store as a lab leaves it: finished studies of norms x groups x seeds, every epoch recorded."""
    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Epoch, JobKind, JobStatus, Study
    from shared.store.jobs import add_job
    from shared.store.schema import utcnow

    store = orch.store()
    rng = random.Random(0)
    per_study = math.ceil(args.jobs / args.studies)
    last_job = 0
    try:
        for index in range(args.studies):
            with store.session() as s:
                study = Study(name=f"study-{index}", grid={"norm": list(NORMS), "groups": list(GROUPS)})
                s.add(study)
                s.flush()
                for n in range(min(per_study, args.jobs - index * per_study)):
                    norm, groups, seed = NORMS[n % 3], GROUPS[(n // 3) % 3], SEEDS[(n // 9) % 3]
                    spec = TrainSpec(model=ModelSpec(arch="resnet50", norm=norm, groups=groups, image_size=32,
                                                     num_classes=2), data="/data/train", val="/data/val",
                                     epochs=args.epochs, seed=seed + 3 * (n // 27))
                    job = add_job(s, JobKind.train, spec, study_id=study.id)
                    level = rng.uniform(0.5, 0.95)
                    s.add_all(Epoch(job_id=job.id, epoch=e, train_loss=1.0 / e, val_loss=1.2 / e,
                                    val_acc=level * (1 - 0.5 / e), images_per_s=100.0, seconds=10.0)
                              for e in range(1, args.epochs + 1))
                    job.status, job.attempts, job.worker_host = JobStatus.succeeded, 1, "lab-gpu-1:100"
                    job.started_at = job.finished_at = utcnow()
                    job.model_info = {"arch": "resnet50", "groups": groups, "norm": norm, "params": 23_500_000,
                                      "gmacs": 0.33}
                    job.result = {"best_val_acc": level, "versions": {"orch": "0.1.0", "torch": "2.14.1"}}
                    last_job = job.id
    finally:
        store.dispose()
    return last_job, f"study-{args.studies // 2}"


def time_command(orch: Orch, argv: list[str], repeat: int) -> float:
    """The median wall time of a fresh `orch` process, as a user's shell sees it: after one untimed
    run, with Python's bytecode cache as a user's install has it (some sandboxes turn it off with
    PYTHONDONTWRITEBYTECODE; compiling orch's modules from source every time adds about 0.1 s)."""
    env = {k: v for k, v in orch.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "orchestrator", *argv], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def limit_for(name: str) -> float:
    return 5.0 if "--html" in name else 1.0


def print_results(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    names = list(next(iter(results.values())))
    width = max(len(n) for n in names)
    print(f"\n{'command':<{width}}  " + "  ".join(f"{b:>10}" for b in results) + "  target")
    for name in names:
        cells = "  ".join(f"{results[b][name]:>9.2f}s" for b in results)
        print(f"{name:<{width}}  {cells}  < {limit_for(name):.0f} s")
    print(f"(median of {args.repeat} fresh processes each, after one untimed; `orch --help` is the CLI's own start-up)")


if __name__ == "__main__":
    main()
