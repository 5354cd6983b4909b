"""Efficiency: orch end to end against the hardware's own ceiling, for training and for scoring.

    .venv/bin/python bench/efficiency.py                      # resnet18, 112 px, CPU or GPU
    .venv/bin/python bench/efficiency.py --model resnet50 --size 224 --mode train
    .venv/bin/python bench/efficiency.py --mode score --score-n 20000   # scoring alone, after a 1-epoch job

For each of training and scoring, the same model, precision and batch size run two ways:
- the ceiling: compute only, in this process: random tensors already on the device, forward +
  backward + optimizer step (training) or forward only (scoring), no data, no checkpoints;
  measured before and after orch's run and averaged, so a load change on a shared machine shows;
- orch end to end, as a user runs it: a real `orch worker` (idle and warm, like one left running),
  `orch submit` through the CLI, until the job is done: queue, start-up, decoding the JPEGs into the
  cache, augmentation, validation after every epoch, checkpoints, the store's writes.
images/s counts training images (epochs x the training folder) or scored images over the wall time
from the job's submit to its end. Training sizes its folder so that one epoch takes about
--epoch-s seconds at the ceiling's rate (the target is stated for an epoch of at least a minute).
The seed's loop (PIL per item, a DataLoader, fp32; batch 1 for scoring) is printed for reference.
Targets: training >= 90% of the ceiling, scoring 2,000 images >= 85%.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from common import CLASSES, machine_line, synth_jpegs  # bench/ is on sys.path when run as a script
from harness import Orch, wall_seconds

from shared.engine.precision import Precision, default_device, resolve
from shared.models import build_model
from shared.spec import ModelSpec

TRAIN_TARGET, SCORE_TARGET = 0.90, 0.85
UNSTABLE = 1.25  # before and after further apart than this: a measurement was disturbed


def timed_steps(step: Any, seconds: float, min_steps: int = 5, warmup: int = 3) -> float:
    """Seconds per call of `step()` after `warmup` calls, over at least `seconds` and `min_steps` calls."""
    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    started, calls = time.perf_counter(), 0
    while calls < min_steps or time.perf_counter() - started < seconds:
        step()
        calls += 1
    sync()
    return (time.perf_counter() - started) / calls


def train_ceiling(model_spec: ModelSpec, batch: int, prec: Precision, seconds: float) -> float:
    """images/s of forward + backward + fused Adam on random device tensors: no data, no checkpoints."""
    device = default_device()
    model = build_model(model_spec).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=prec.needs_grad_scaler)
    size = model_spec.image_size
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model_spec.num_classes, (batch,), device=device)

    def step() -> None:
        with prec.autocast(device):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return batch / timed_steps(step, seconds)


def score_ceiling(checkpoint: Path, batch: int, precision: str, seconds: float) -> float:
    """images/s of the forward pass alone on random device tensors, in the arithmetic orch's job ran."""
    from shared.engine import load_for_inference
    from shared.engine.quantize import convert

    device = default_device()
    model, spec, _ = load_for_inference(checkpoint)
    model = model.to(device).to(memory_format=torch.channels_last)
    size = spec.model.image_size
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    prec = resolve("fp32" if precision == "int8" else precision, device)
    if precision == "int8":
        # unchecked: on random tensors the checked `quantize` may find too little agreement and fall back,
        # and the "ceiling" was then fp32's (468 against 1776 images/s on an AVX512-VNNI EPYC)
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices, as quantize() hides them
            warnings.simplefilter("ignore")
            model = convert(model, x[:16])[0]

    def step() -> None:
        with torch.inference_mode(), prec.autocast(device):
            model(x)

    return batch / timed_steps(step, seconds)


def orch_train(orch: Orch, data: Path, args: argparse.Namespace) -> Any:
    out = orch.cli_json("submit", "train", "--data", str(data / "train"), "--val", str(data / "val"),
                        "--model", args.model, "--image-size", str(args.size), "--batch-size", str(args.batch),
                        "--epochs", str(args.epochs), "--precision", args.precision)
    return orch.wait_finished([out["job_id"]], poll=1.0)[0]  # a gentle poll: the job has both cores


def orch_score(orch: Orch, job_id: int, folder: Path, out: Path, batch: int) -> Any:
    submitted = orch.cli_json("submit", "score", "--job", str(job_id), "--data", str(folder), "--out", str(out),
                              "--batch-size", str(batch))
    return orch.wait_finished([submitted["job_id"]], poll=1.0)[0]  # gentle: the poll is a process of its own


def train_split(job: Any, n_train: int) -> str:
    """Where orch's wall time went: start-up, steps, validation, the rest (checkpoints, store, queue)."""
    startup = (job.result or {}).get("startup", {})
    steps = sum(n_train / e.images_per_s for e in job.epochs)
    validation = sum(e.seconds for e in job.epochs) - steps
    wall = wall_seconds(job)
    # the bf16 probe too where this job measured it (the bench measured first, into the job's home: the job
    # reads that answer where its thread count is the bench's, and measures again where it is not)
    into_job = sum(startup.get(key, 0) for key in ("take_s", "store_s", "probe_s", "build_s"))
    rest = wall - steps - validation - startup.get("data_s", 0) - into_job
    return (f"steps {steps:.1f} s, validation {validation:.1f} s, decode+cache {startup.get('data_s', 0):.1f} s, "
            f"take+store+build {into_job:.2f} s (warm child: {startup.get('warm')}), "
            f"queue+checkpoints+store writes {rest:.1f} s")


def shard_timings(orch: Orch, scored: Any) -> dict[str, float]:
    """A one-shard score's stage timings (empty for another shard count)."""
    from sqlalchemy import select

    from shared.store import Job

    store = orch.store()
    try:
        with store.session() as s:
            shards = list(s.scalars(select(Job).where(Job.parent_id == scored.id)))
    finally:
        store.dispose()
    return dict((shards[0].result or {}).get("timings", {})) if len(shards) == 1 else {}


def score_split(orch: Orch, scored: Any) -> str:
    """Where a one-shard score's wall time went, from the shard's own timings."""
    laps = shard_timings(orch, scored)
    if not laps:
        return "not one shard"
    inside = sum(laps.values())
    return (", ".join(f"{name[:-2]} {seconds:.2f}" for name, seconds in laps.items())
            + f", the rest (queue, input checks, part file, assembly) {wall_seconds(scored) - inside:.2f} s")


def fixed_cost_budget(n: int, ceiling: float, outside_s: float) -> str:
    """What the target leaves for everything but inference (queue, load, decode, int8 conversion, part
    file): on a fast int8 CPU a 2,000-image score is about a second of compute, and this says whether
    any run of that size could meet the target there."""
    compute_s = n / ceiling
    budget_s = n / (SCORE_TARGET * ceiling) - compute_s
    return (f"at the ceiling {n} images are {compute_s:.2f} s of inference: the target leaves {budget_s:.2f} s "
            f"for everything else; this job spent {outside_s:.2f} s outside inference")


def report(name: str, ceiling: tuple[float, float], orch_rate: float, target: float, detail: str) -> None:
    mean = sum(ceiling) / 2
    print(f"{name}")
    print(f"  ceiling (compute only)     {mean:8.1f} images/s  (before {ceiling[0]:.1f}, after {ceiling[1]:.1f})")
    print(f"  orch end to end            {orch_rate:8.1f} images/s  ({detail})")
    unstable = max(ceiling) > UNSTABLE * min(ceiling)
    verdict = "unknown: the ceiling moved" if unstable else "met" if orch_rate / mean >= target else "NOT met"
    print(f"  ratio {orch_rate / mean:.3f}  (target >= {target:.2f}: {verdict})")
    if unstable:  # something else ran during one of them: the mean is no ceiling; run again
        print(f"  warning: the two ceiling measurements differ by more than {UNSTABLE - 1:.0%}: "
              f"the machine was not quiet; against the higher one the ratio is {orch_rate / max(ceiling):.3f}")


def seed_train_rate(folder: Path, size: int, steps: int) -> float:
    from train_throughput import SeedLoop

    seed = SeedLoop(folder, size, epochs=1)
    seed.seconds = 0.0  # its set-up (building the model) is not a step
    for _ in range(steps):
        if not seed.step():
            break
    return seed.images / seed.seconds


def run_training(orch: Orch, root: Path, args: argparse.Namespace) -> Any:
    device = default_device()
    prec = resolve(args.precision, device, cache_dir=orch.home / "cache")  # auto: the job's own choice
    spec = ModelSpec(arch=args.model, image_size=args.size, num_classes=len(CLASSES))
    before = train_ceiling(spec, args.batch, prec, args.ceiling_s)
    n_train = max(args.batch * 4, math.ceil(before * args.epoch_s / args.batch) * args.batch)
    synth_jpegs(root, "train", n_train, args.size)
    synth_jpegs(root, "val", max(args.batch, n_train // 10), args.size, seed=1)
    job = orch_train(orch, root / "data", args)
    after = train_ceiling(spec, args.batch, prec, args.ceiling_s)
    if job.status != "succeeded":
        raise SystemExit(f"training job {job.id} {job.status}: {job.error}")
    rate = args.epochs * n_train / wall_seconds(job)
    print(f"training: {args.model} at {args.size} px, batch {args.batch}, {prec.name}, {n_train} training + "
          f"{max(args.batch, n_train // 10)} validation images, {args.epochs} epochs")
    report("", (before, after), rate, TRAIN_TARGET, f"{wall_seconds(job):.1f} s: {train_split(job, n_train)}")
    if args.seed:
        print(f"  seed loop (PIL per item, DataLoader batch 128, fp32): "
              f"{seed_train_rate(root / 'data' / 'train', args.size, args.seed_steps):.1f} images/s")
    return job


def quick_checkpoint(orch: Orch, root: Path, args: argparse.Namespace) -> Any:
    """--mode score: a checkpoint to score, from one short epoch (what scoring measures is the network's
    arithmetic, not its accuracy; int8's agreement check runs on it as on any other)."""
    synth_jpegs(root, "train", args.batch * 4, args.size)
    synth_jpegs(root, "val", args.batch, args.size, seed=1)
    job = orch_train(orch, root / "data", argparse.Namespace(**{**vars(args), "epochs": 1}))
    if job.status != "succeeded":
        raise SystemExit(f"training job {job.id} {job.status}: {job.error}")
    return job


def run_scoring(orch: Orch, root: Path, job: Any, args: argparse.Namespace) -> None:
    from score_throughput import seed_loop

    folder = synth_jpegs(root, "test", args.score_n, args.size, seed=2)
    checkpoint = Path((job.result or {})["best_checkpoint"])
    batch = args.score_batch
    # the ceiling before and after the job, as for training: a machine whose speed drifts shows
    expected = resolve("auto", default_device(), scoring=True).name
    before = score_ceiling(checkpoint, batch, expected, args.ceiling_s)
    scored = orch_score(orch, job.id, folder, root / "preds.csv", batch)
    if scored.status != "succeeded":
        raise SystemExit(f"score job {scored.id} {scored.status}: {scored.error}")
    precision = (scored.result or {}).get("precision") or "fp32"
    if precision != expected:  # int8 fell back: the job ran another arithmetic than measured before
        before = score_ceiling(checkpoint, batch, precision, args.ceiling_s)
    after = score_ceiling(checkpoint, batch, precision, args.ceiling_s)
    wall = wall_seconds(scored)
    print(f"scoring: {args.score_n} images at {args.size} px, batch {batch}, {precision}")
    report("", (before, after), args.score_n / wall, SCORE_TARGET, f"{wall:.1f} s: {score_split(orch, scored)}")
    infer_s = shard_timings(orch, scored).get("infer_s")
    if infer_s:  # the same forward passes as the ceiling: far below it, the machine slowed during the job
        share = args.score_n / infer_s / ((before + after) / 2)
        print(f"  the job's own inference: {args.score_n / infer_s:.1f} images/s, {share:.0%} of the ceiling")
        if share > UNSTABLE:  # the same forward passes cannot run this much faster than the ceiling
            print("  warning: the job's inference outran the ceiling: they did not run the same arithmetic; "
                  "the verdict above is void")
        print(f"  {fixed_cost_budget(args.score_n, (before + after) / 2, wall - infer_s)}")
    if args.seed:
        subset = synth_jpegs(root / "seed", "test", min(200, args.score_n), args.size, seed=3)
        _, seconds = seed_loop(checkpoint, subset)
        print(f"  seed loop (batch 1, fp32, PIL per file): {min(200, args.score_n) / seconds:.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("both", "train", "score"), default="both",
                        help="score: only scoring, of a checkpoint from one short epoch [both]")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=112, help="pixels [112]")
    parser.add_argument("--batch", type=int, default=64, help="training batch [64]")
    parser.add_argument("--score-batch", type=int, default=64, help="scoring batch [64]")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--epoch-s", type=float, default=65.0, help="seconds an epoch takes at the ceiling [65]")
    parser.add_argument("--score-n", type=int, default=2000, help="images to score [2000]")
    parser.add_argument("--ceiling-s", type=float, default=15.0, help="seconds of each ceiling measurement [15]")
    parser.add_argument("--no-seed", dest="seed", action="store_false", help="skip the seed loops")
    parser.add_argument("--seed-steps", type=int, default=15, help="seed training steps to time [15]")
    parser.add_argument("--worker-args", default="", help="extra `orch worker` arguments")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="orch-efficiency-") as tmp, Orch(Path(tmp) / "home") as orch:
        orch.start_worker(*args.worker_args.split())
        time.sleep(5)  # let the worker's first job process finish warming up, as a worker left running has
        job = quick_checkpoint(orch, Path(tmp), args) if args.mode == "score" else run_training(orch, Path(tmp), args)
        if args.mode != "train":
            run_scoring(orch, Path(tmp), job, args)


if __name__ == "__main__":
    main()
