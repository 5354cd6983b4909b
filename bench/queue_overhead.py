"""Queue overhead: how fast a job reaches a worker, and how much of a study's wall time is training.

    .venv/bin/python bench/queue_overhead.py                 # both parts, embedded and Redis
    .venv/bin/python bench/queue_overhead.py --part latency --jobs 20

1. Dispatch latency: `orch submit` one tiny job at a time to an idle worker and take the time from
   the job's insert (the CLI's transaction, just before it sends) to its start (the worker's lease),
   both from the store's own timestamps; p50 and p95 over --jobs jobs, on the embedded broker
   (SQLite + filesystem broker) and on Redis (a private redis-server) + the local PostgreSQL.
   Targets: p50 under 250 ms embedded, under 50 ms on Redis.
2. A study of --study-jobs one-epoch jobs (their folder sized so that a job trains for about
   --job-s seconds at this machine's ceiling) on 1 worker, then on 2 workers sharing the CPUs:
   jobs per minute and the share of the workers' wall time spent in training steps (the rest is
   queue, start-up, decoding, validation, checkpoints). Target: >= 85% for 20-second jobs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import CLASSES, machine_line, synth_jpegs  # bench/ is on sys.path when run as a script
from harness import Orch

LATENCY_TARGET_S = {"embedded": 0.250, "redis": 0.050}
SHARE_TARGET = 0.85
PG_ADMIN = os.environ.get("ORCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_and_postgres(root: Path) -> Iterator[dict[str, str]]:
    """A private redis-server and a fresh PostgreSQL database, as cluster-mode settings."""
    import psycopg

    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(root)], stdout=subprocess.DEVNULL)
    name = f"orch_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"
    try:
        yield {"ORCH_BROKER_URL": f"redis://127.0.0.1:{port}/0", "ORCH_DATABASE_URL": database}
    finally:
        redis.terminate()
        redis.wait()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def submit(orch: Orch, data: Path, size: int, batch: int) -> int:
    out = orch.cli_json("submit", "train", "--data", str(data / "train"), "--val", str(data / "val"),
                        "--model", "resnet18", "--image-size", str(size), "--batch-size", str(batch),
                        "--epochs", "1")
    return int(out["job_id"])


def submit_study(orch: Orch, data: Path, args: argparse.Namespace) -> list[int]:
    """The study as a user submits one: one `orch submit ablation`, a cell per seed (24 separate
    submits would be 24 CLI start-ups on the CPUs the first jobs train on)."""
    seeds = ",".join(str(seed) for seed in range(args.study_jobs))
    out = orch.cli("submit", "ablation", "--data", str(data / "train"), "--val", str(data / "val"),
                   "--model", "resnet18", "--image-size", str(args.size), "--batch-size", str(args.batch),
                   "--epochs", "1", "--seeds", seeds, "--json")
    return [int(i) for i in json.loads(out.splitlines()[0])["job_ids"]]


def dispatch_latencies(orch: Orch, data: Path, jobs: int) -> list[float]:
    """Seconds from each job's insert to its lease, one job at a time on an idle worker."""
    latencies = []
    for _ in range(jobs):
        job = orch.wait_finished([submit(orch, data, 32, 8)], poll=0.05)[0]
        latencies.append((job.started_at - job.created_at).total_seconds())
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def latency_part(root: Path, args: argparse.Namespace) -> None:
    tiny = root / "tiny"
    synth_jpegs(tiny, "train", 16, 32)
    synth_jpegs(tiny, "val", 8, 32, seed=1)
    for broker in ("embedded", "redis"):
        with redis_and_postgres(root) if broker == "redis" else _nothing() as env, \
                Orch(root / f"home-{broker}", env=env) as orch:
            if broker == "redis":
                orch.cli("db", "upgrade")
            orch.start_worker()
            dispatch_latencies(orch, tiny / "data", 2)  # the first jobs build the decode cache
            values = dispatch_latencies(orch, tiny / "data", args.jobs)
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        verdict = "met" if p50 < LATENCY_TARGET_S[broker] else "NOT met"
        print(f"dispatch latency, {broker:8s}: p50 {1000 * p50:6.1f} ms  p95 {1000 * p95:6.1f} ms  over {len(values)} "
              f"jobs (target p50 < {1000 * LATENCY_TARGET_S[broker]:.0f} ms: {verdict})")


@contextmanager
def _nothing() -> Iterator[dict[str, str]]:
    yield {}


def study_part(root: Path, args: argparse.Namespace) -> None:
    from efficiency import train_ceiling

    from shared.engine.precision import default_device, resolve
    from shared.spec import ModelSpec

    spec = ModelSpec(arch="resnet18", image_size=args.size, num_classes=len(CLASSES))
    rate = train_ceiling(spec, args.batch, resolve("auto", default_device()), 10.0)
    n_train = max(args.batch, round(rate * args.job_s / args.batch) * args.batch)
    data = root / "study"
    synth_jpegs(data, "train", n_train, args.size)
    # a tenth for validation, as in efficiency.py; not a whole batch: where the ceiling is slow
    # (fp32 on AVX2: 128 training images make 20 s) a batch would be half the training set
    synth_jpegs(data, "val", max(8, n_train // 10), args.size, seed=1)
    print(f"study: {args.study_jobs} jobs of 1 epoch, resnet18 at {args.size} px, {n_train} training images "
          f"(about {args.job_s:.0f} s at the ceiling's {rate:.1f} images/s)")
    for workers in (1, 2):
        with Orch(root / f"home-study-{workers}") as orch:
            threads = max(1, len(os.sched_getaffinity(0)) // workers)
            for _ in range(workers):
                orch.start_worker("--threads", str(threads))
            time.sleep(5)  # warm job processes, as workers left running have
            started = time.time()
            ids = submit_study(orch, data / "data", args)
            jobs = orch.wait_finished(ids, poll=0.5)
        summarize(jobs, workers, n_train, started)


def summarize(jobs: list[Any], workers: int, n_train: int, started: float) -> None:
    failed = [job.id for job in jobs if job.status != "succeeded"]
    end = max(job.finished_at for job in jobs).timestamp()
    first = min(job.created_at for job in jobs).timestamp()
    wall = end - min(first, started)
    steps = sum(n_train / e.images_per_s for job in jobs for e in job.epochs)
    share = steps / (wall * workers)
    verdict = "met" if share >= SHARE_TARGET else "NOT met"
    print(f"  {workers} worker{'s' if workers > 1 else ' '}: {len(jobs)} jobs in {wall:6.1f} s = "
          f"{60 * len(jobs) / wall:5.2f} jobs/min; training steps {share:.1%} of the workers' wall time "
          f"(target >= {SHARE_TARGET:.0%}: {verdict})" + (f"; failed: {failed}" if failed else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("both", "latency", "study"), default="both")
    parser.add_argument("--jobs", type=int, default=50, help="jobs for the latency percentiles [50]")
    parser.add_argument("--study-jobs", type=int, default=24, help="jobs in the study [24]")
    parser.add_argument("--job-s", type=float, default=20.0, help="seconds of training per study job [20]")
    parser.add_argument("--size", type=int, default=64, help="study image size [64]")
    parser.add_argument("--batch", type=int, default=64, help="study batch size [64]")
    args = parser.parse_args()
    if shutil.which("redis-server") is None and args.part != "study":
        raise SystemExit("redis-server is not installed (needed for the Redis latency part)")
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="orch-queue-bench-") as tmp:
        if args.part in ("both", "latency"):
            latency_part(Path(tmp), args)
        if args.part in ("both", "study"):
            study_part(Path(tmp), args)


if __name__ == "__main__":
    main()
