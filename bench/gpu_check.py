"""GPU check: efficiency.py's training comparison on CUDA, with the GPU's busy share sampled by NVML.

    bash bench/gpu_check.sh                  # sets up .venv with the [gpu] extra, then runs this

For resnet18 and resnet50 at 224 px (bf16 autocast, channels_last, batch 256): the compute-only
ceiling, then orch end to end (a real `orch worker` on the GPU, `orch submit train`), while a
thread samples NVML's utilisation counter every 100 ms. The busy share is the mean of the samples
taken while the job's epochs ran (training steps and validation; start-up and decoding excluded).
Target: >= 90% busy during training. Sized to finish in under 8 minutes on one H100/H200-class GPU.
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import CLASSES, machine_line, synth_jpegs  # bench/ is on sys.path when run as a script
from efficiency import TRAIN_TARGET, train_ceiling, train_split
from harness import Orch, wall_seconds

BUSY_TARGET = 0.90


class UtilisationSampler(threading.Thread):
    """(unix time, GPU busy %) every `interval` seconds from NVML, for GPU 0."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        import pynvml

        pynvml.nvmlInit()
        self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        self.interval, self.samples, self.stopping = interval, [], threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            busy = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
            self.samples.append((time.time(), float(busy)))

    def busy_share(self, windows: list[tuple[float, float]]) -> float:
        inside = [busy for at, busy in self.samples if any(start <= at <= end for start, end in windows)]
        return sum(inside) / (100.0 * len(inside)) if inside else float("nan")


def epoch_windows(job: Any) -> list[tuple[float, float]]:
    """(start, end) unix times of each epoch (its steps and validation), from the store's rows."""
    return [(e.recorded_at.timestamp() - e.seconds, e.recorded_at.timestamp()) for e in job.epochs]


def check(orch: Orch, data: Path, model: str, args: argparse.Namespace, sampler: UtilisationSampler) -> None:
    from shared.engine.precision import default_device, resolve
    from shared.spec import ModelSpec

    spec = ModelSpec(arch=model, image_size=args.size, num_classes=len(CLASSES))
    prec = resolve("bf16", default_device())
    before = train_ceiling(spec, args.batch, prec, args.ceiling_s)
    out = orch.cli_json("submit", "train", "--data", str(data / "train"), "--val", str(data / "val"),
                        "--model", model, "--image-size", str(args.size), "--batch-size", str(args.batch),
                        "--epochs", str(args.epochs), "--precision", "bf16")
    job = orch.wait_finished([out["job_id"]])[0]
    after = train_ceiling(spec, args.batch, prec, args.ceiling_s)
    if job.status != "succeeded":
        raise SystemExit(f"{model}: job {job.id} {job.status}: {job.error}")
    rate, ceiling = args.epochs * args.n / wall_seconds(job), (before + after) / 2
    busy = sampler.busy_share(epoch_windows(job))
    print(f"{model} at {args.size} px, bf16, batch {args.batch}, {args.n} images x {args.epochs} epochs")
    print(f"  ceiling {ceiling:8.1f} images/s (before {before:.1f}, after {after:.1f}); orch end to end "
          f"{rate:8.1f} images/s: ratio {rate / ceiling:.3f} (target >= {TRAIN_TARGET:.2f})")
    print(f"  {train_split(job, args.n)}")
    print(f"  GPU busy during the epochs: {busy:.1%} (target >= {BUSY_TARGET:.0%}: "
          f"{'met' if busy >= BUSY_TARGET else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--n", type=int, default=12800, help="training images [12800]")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--ceiling-s", type=float, default=10.0)
    args = parser.parse_args()
    print(machine_line())
    sampler = UtilisationSampler()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="orch-gpu-check-") as tmp, Orch(Path(tmp) / "home") as orch:
        started = time.monotonic()
        synth_jpegs(Path(tmp), "train", args.n, args.size)
        synth_jpegs(Path(tmp), "val", args.n // 10, args.size, seed=1)
        print(f"wrote {args.n + args.n // 10} synth JPEGs in {time.monotonic() - started:.0f} s")
        orch.start_worker("--gpus", "0")
        time.sleep(10)  # the worker's first job process imports torch and creates its CUDA context
        for model in args.models.split(","):
            check(orch, Path(tmp) / "data", model, args, sampler)
    sampler.stopping.set()


if __name__ == "__main__":
    main()
