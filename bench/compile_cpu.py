"""`--compile` measured: orch's own training engine with and without torch.compile, on this device.

    .venv/bin/python bench/compile_cpu.py                 # resnet18, 112 px, 3 epochs of 640 images
    .venv/bin/python bench/compile_cpu.py --model resnet50 --size 64

Both runs train the same spec (precision `auto`, batch 64, the same synthetic JPEGs, a warm decode
cache) through `shared.engine.train`, one after the other in this process. For each: the first
epoch's wall time (for --compile it includes the compile), and the mean seconds and training images/s
of the later epochs (the steady state). Prints the speed-up of the steady state, the compile's cost, and
the epochs after which --compile has paid for itself (or "never" when it is slower).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import CLASSES, machine_line, synth_jpegs  # bench/ is on sys.path when run as a script

from shared.engine import train
from shared.spec import ModelSpec, TrainSpec


def run(data: Path, root: Path, args: argparse.Namespace, compiled: bool) -> dict[str, Any]:
    spec = TrainSpec(model=ModelSpec(arch=args.model, image_size=args.size), data=str(data / "train"),
                     val=str(data / "val"), epochs=args.epochs, batch_size=args.batch, compile=compiled)
    started = time.perf_counter()
    history: list[dict[str, Any]] = []
    train(spec, root / ("compiled" if compiled else "eager"), history.append, cache_dir=root / "cache")
    later = history[1:]
    return {"wall": time.perf_counter() - started, "first_s": history[0]["seconds"],
            "first_ips": history[0]["images_per_s"],
            "steady_ips": sum(e["images_per_s"] for e in later) / len(later),
            "steady_s": sum(e["seconds"] for e in later) / len(later)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=112, help="pixels [112]")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=640, help="training images per epoch [640]")
    parser.add_argument("--epochs", type=int, default=3, help="at least 2: the first holds the compile [3]")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first epoch holds the compile)")
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="orch-compile-") as tmp:
        root = Path(tmp)
        synth_jpegs(root, "train", args.images, args.size)
        synth_jpegs(root, "val", max(args.batch, args.images // 10), args.size, seed=1)
        eager = run(root / "data", root, args, compiled=False)
        compiled = run(root / "data", root, args, compiled=True)
    print(f"{args.model} at {args.size} px, batch {args.batch}, {args.images} images x {args.epochs} epochs, "
          f"classes {len(CLASSES)}")
    for name, r in (("eager", eager), ("--compile", compiled)):
        print(f"  {name:<10} first epoch {r['first_s']:6.1f} s ({r['first_ips']:6.1f} images/s), later epochs "
              f"{r['steady_s']:6.1f} s ({r['steady_ips']:6.1f} images/s), whole run {r['wall']:6.1f} s")
    speedup = compiled["steady_ips"] / eager["steady_ips"]
    cost = compiled["first_s"] - compiled["steady_s"]  # the first epoch (with validation) beyond a later one
    saved_per_epoch = eager["steady_s"] - compiled["steady_s"]
    pays = f"after {cost / saved_per_epoch:.1f} epochs of this size" if saved_per_epoch > 0 else "never"
    print(f"  steady-state speed-up {speedup:.3f}x, compile cost {cost:.1f} s, pays for itself {pays}")


if __name__ == "__main__":
    main()
