"""Scoring throughput: the seed's batch-size-1 fp32 loop against orch's scoring, in one run.

    .venv/bin/python bench/score_throughput.py            # 400 synth JPEGs at 224 px, resnet18

Both sides start from the same checkpoint file and the same folder of JPEGs and end with one
predicted class per image, so each timing includes loading the model and decoding every image:
- seed: for each file in id order, PIL open, torchvision Resize/CenterCrop/ToTensor/Normalize,
  resnet18 forward at batch size 1 in fp32 under no_grad, argmax;
- orch: `shared.engine.score` with ScoreSpec's defaults (batch size, precision auto), a cold
  decode cache: what one `orch submit score` shard runs. On an x86 CPU `auto` is int8
  (shared/engine/quantize.py), and the time includes its calibration pass and fp32 check.
- orch, fp32 and bf16: the same with --precision fp32 (what batching alone gives) and bf16.
The network is resnet18 trained for 3 epochs on 400 other synth images at the same size (the
bench trains it first, about a minute), so agreement measures the arithmetic on a real
classifier: batching, and int8 or bf16 where `auto` picks them.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import CLASSES, machine_line, synth_jpegs  # bench/ is on sys.path when run as a script

from shared.data import list_numbered, write_synthetic
from shared.data.augment import MEAN, STD
from shared.engine import load_for_inference, score
from shared.engine.precision import cpu_has_native_bf16, default_device
from shared.engine.quantize import CALIBRATION_IMAGES
from shared.spec import ModelSpec, ScoreSpec, TrainSpec


def train_checkpoint(root: Path, size: int) -> tuple[Path, float]:
    """(best checkpoint, its val accuracy): resnet18 trained by orch's engine on synth images at `size` px.

    A trained network, not a random one: a random network's logits are near ties, so any change
    of arithmetic flips its predictions, and agreement would measure noise instead of fidelity.
    """
    from shared.engine import train

    write_synthetic(root / "train", classes=CLASSES, counts={"train": 400, "val": 100}, size=size, seed=1)
    spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=size), data=str(root / "train" / "train"),
                     val=str(root / "train" / "val"), epochs=3, batch_size=32, lr=1e-3)
    result = train(spec, root / "work", cache_dir=root / "train-cache")
    return Path(result["best_checkpoint"]), float(result["best_val_acc"])


def seed_loop(checkpoint: Path, folder: Path) -> tuple[list[int], float]:
    """The seed's scoring: one file, one forward pass, one .item() at a time."""
    from PIL import Image
    from torchvision import transforms

    started = time.perf_counter()
    model, spec, _ = load_for_inference(checkpoint)
    size = spec.model.image_size
    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
                             transforms.Normalize(MEAN, STD)])
    predictions = []
    with torch.no_grad():
        for _, path in list_numbered(folder):
            image = Image.open(path).convert("RGB")
            predictions.append(int(model(tf(image).unsqueeze(0)).argmax(1).item()))
    return predictions, time.perf_counter() - started


def orch_scoring(checkpoint: Path, folder: Path, cache: Path,
                 precision: str | None = None) -> tuple[dict[str, Any], float]:
    defaults = ScoreSpec(checkpoint=str(checkpoint), data=str(folder), out="/dev/null")
    started = time.perf_counter()
    out = score(checkpoint, folder, batch_size=defaults.batch_size, precision=precision or defaults.precision,
                cache_dir=cache)
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="images [400]")
    parser.add_argument("--size", type=int, default=224, help="pixels [224]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-score-bench-") as tmp:
        root = Path(tmp)
        folder = synth_jpegs(root, "test", args.n, args.size)
        started = time.perf_counter()
        checkpoint, val_acc = train_checkpoint(root, args.size)
        print(f"trained resnet18 at {args.size} px for 3 epochs in {time.perf_counter() - started:.0f} s: "
              f"val accuracy {val_acc:.1%}")
        seed, seed_s = seed_loop(checkpoint, folder)
        fast, fast_s = orch_scoring(checkpoint, folder, root / "cache")
        fp32, fp32_s = orch_scoring(checkpoint, folder, root / "cache-fp32", precision="fp32")
        bf16, bf16_s = orch_scoring(checkpoint, folder, root / "cache-bf16", precision="bf16")
    device = default_device()
    print(machine_line())
    print(f"data: {args.n} synth JPEGs at {args.size} px, resnet18, {len(CLASSES)} classes; "
          f"seed predicts {np.bincount(seed, minlength=len(CLASSES)).tolist()} per class")
    if fast.get("int8_agreement") is not None:
        print(f"int8 check on {CALIBRATION_IMAGES} calibration images: {fast['int8_agreement']:.1%} agree with fp32"
              f"{'; fell back: ' + fast['int8_fallback'] if fast['int8_fallback'] else ''}")
    batch = ScoreSpec.model_fields["batch_size"].default
    native = "" if device.type == "cuda" or cpu_has_native_bf16() else ", emulated on this CPU"
    line("seed (batch 1, fp32, PIL per file)", args.n, seed_s, seed_s, seed, seed)
    line(f"orch defaults (batch {batch}, {fast['precision']})", args.n, fast_s, seed_s, fast["labels"], seed)
    line(f"orch --precision fp32 (batch {batch})", args.n, fp32_s, seed_s, fp32["labels"], seed)
    line(f"orch --precision bf16 (batch {batch}{native})", args.n, bf16_s, seed_s, bf16["labels"], seed)


def line(name: str, n: int, seconds: float, baseline_s: float, predicted: list[int], fp32: list[int]) -> None:
    agree = sum(a == b for a, b in zip(predicted, fp32, strict=True))
    print(f"{name:42s} {n / seconds:7.1f} images/s  {seconds:6.1f} s  {baseline_s / seconds:5.2f}x  "
          f"agree with fp32 {agree}/{len(fp32)} ({100 * agree / len(fp32):.2f}%)")


if __name__ == "__main__":
    main()
