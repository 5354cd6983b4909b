"""orch against Ray Tune on the same small study, side by side on this machine.

    .venv/bin/pip install 'ray[tune]'            # for this bench only: not a dependency of orch
    .venv/bin/python bench/vs_ray.py             # 3 norms x 2 seeds, resnet18, 64 px, 256 images, 1 epoch

The grid is the demo's question (BatchNorm vs LayerNorm vs InstanceNorm, two seeds) at the size
where start-up costs decide: 256 synth images at 64 px (20% split off for validation, as orch does
by default), resnet18 as orch builds it at 64 px (the small stem), one epoch, one trial at a time
with every core, bf16 autocast where the CPU has it.
- Ray: bench/ray_side.py in its own process, timed from before `ray.init()` to `Tuner.fit()`'s
  return, as a user's script runs every time (see its docstring for the trainable);
- orch: a worker already running, as `orch worker` is left running; timed from the start of
  `orch submit ablation ... --wait` (the CLI's own start-up included) to its exit. The time with
  the worker's start-up added is printed too.
Each side runs --reps times, alternating, and the medians are compared. Target: orch's study wall
time at most 0.8x Ray's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_line, synth_jpegs  # bench/ is on sys.path when run as a script
from harness import REPO, Orch

TARGET = 0.8


def ray_study(folder: Path, args: argparse.Namespace, precision: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "ray_side.py"), str(folder), str(args.size),
                           args.norms, args.seeds, precision], env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"ray side failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def orch_study(root: Path, rep: int, folder: Path, args: argparse.Namespace) -> tuple[float, float, list]:
    """(study wall with a running worker, the worker's own start-up, the jobs)."""
    with Orch(root / f"orch-{rep}") as orch:
        started = time.perf_counter()
        orch.start_worker()
        worker_s = time.perf_counter() - started
        time.sleep(5)  # a worker left running has its job process ready
        started = time.perf_counter()
        out = orch.cli("submit", "ablation", "--data", str(folder), "--model", "resnet18", "--norm", args.norms,
                       "--seeds", args.seeds, "--epochs", "1", "--image-size", str(args.size), "--wait", "--json")
        wall = time.perf_counter() - started
        jobs = orch.wait_finished(json.loads(out.splitlines()[0])["job_ids"])
    failed = [job.id for job in jobs if job.status != "succeeded"]
    if failed:
        raise SystemExit(f"orch jobs failed: {failed}")
    return wall, worker_s, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="images [256]")
    parser.add_argument("--size", type=int, default=64, help="pixels [64]")
    parser.add_argument("--norms", default="bn,ln,in")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--reps", type=int, default=2, help="runs of each side, alternating [2]")
    args = parser.parse_args()
    print(machine_line())
    import torch

    from shared.engine.precision import resolve  # what orch's `auto` trains in here: Ray's trials too
    precision = resolve("auto", torch.device("cpu")).name
    with tempfile.TemporaryDirectory(prefix="orch-vs-ray-") as tmp:
        folder = synth_jpegs(Path(tmp), "train", args.n, args.size)
        ray_walls, orch_walls, worker_starts = [], [], []
        for rep in range(args.reps):
            ray = ray_study(folder, args, precision)
            ray_walls.append(ray["wall_s"])
            wall, worker_s, jobs = orch_study(Path(tmp), rep, folder, args)
            orch_walls.append(wall)
            worker_starts.append(worker_s)
            ran = {str((job.result or {}).get("precision")) for job in jobs}
            if ran != {precision}:  # a probe near its threshold chose otherwise in orch's job process
                print(f"  warning: orch's jobs trained in {', '.join(sorted(ran))}, Ray's in {precision}: not comparable")
            print(f"run {rep + 1}: Ray {ray['wall_s']:.1f} s ({ray['trials']} trials, val acc {ray['val_accs']}); "
                  f"orch {wall:.1f} s ({len(jobs)} jobs, val acc "
                  f"{sorted(round(max(e.val_acc for e in j.epochs), 4) for j in jobs)}); worker start {worker_s:.1f} s")
    ray_s, orch_s = statistics.median(ray_walls), statistics.median(orch_walls)
    cold = orch_s + statistics.median(worker_starts)
    print(f"study of {len(args.norms.split(',')) * len(args.seeds.split(','))} cells, resnet18 at {args.size} px, "
          f"{args.n} images, 1 epoch (medians of {args.reps}):")
    print(f"  Ray Tune: {ray_s:.1f} s   orch: {orch_s:.1f} s  ->  {orch_s / ray_s:.2f}x Ray's "
          f"(target <= {TARGET}: {'met' if orch_s / ray_s <= TARGET else 'NOT met'}); "
          f"orch with its worker's start-up: {cold:.1f} s ({cold / ray_s:.2f}x)")


if __name__ == "__main__":
    main()
