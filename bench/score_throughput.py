"""Scoring throughput: the seed's batch-size-1 fp32 loop against orch's scoring, in one run.

    .venv/bin/python bench/score_throughput.py            # 400 synth JPEGs at 224 px, resnet18

Both sides start from the same checkpoint file and the same folder of JPEGs and end with one
predicted class per image, so each timing includes loading the model and decoding every image:
- seed: for each file in id order, PIL open, torchvision Resize/CenterCrop/ToTensor/Normalize,
  resnet18 forward at batch size 1 in fp32 under no_grad, argmax;
- orch: `shared.engine.score` with ScoreSpec's defaults (batch size, precision auto), a cold
  decode cache: what one `orch submit score` shard runs.
- orch, channels_last: the same pipeline with the input in channels_last on the CPU too. `auto`
  and `fp32` keep NCHW on a CPU without native bf16 (a training measurement, see
  shared/engine/precision.py); for batched inference this line measures whether that still holds.
The weights are an untrained resnet18 whose BatchNorm statistics were set on these images, so
its predictions depend on the input (they are not all one class); agreement measures numerics
(batching, bf16 where `auto` picks it), not skill.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from shared.data import list_numbered, load_listing, scan, write_synthetic
from shared.data.augment import MEAN, STD
from shared.engine import load_for_inference, score
from shared.engine.checkpoint import model_for, save_atomic
from shared.engine.infer import probabilities
from shared.engine.precision import default_device, resolve
from shared.spec import ModelSpec, ScoreSpec, TrainSpec

CLASSES = ["cat", "dog"]


def make_checkpoint(path: Path, folder: Path, size: int) -> None:
    """resnet18 with BatchNorm statistics measured on (up to) 64 of the images, in orch's format."""
    from shared.data.cache import decode

    torch.manual_seed(0)
    spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=size), data=str(folder))
    model = model_for(spec, CLASSES)
    files = [p for _, p in list_numbered(folder)[:64]]
    batch = torch.from_numpy(np.stack([decode(p, size) for p in files])).permute(0, 3, 1, 2).float() / 255
    batch = (batch - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the calibration passes
    model.train()
    with torch.no_grad():
        for chunk in batch.split(16):
            model(chunk)
    save_atomic({"model": model.state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 0, "rng": {},
                 "spec": spec.model_dump(mode="json"), "classes": CLASSES, "history": [], "best_val_acc": 0.0,
                 "best_epoch": 0}, path)


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


def orch_scoring(checkpoint: Path, folder: Path, cache: Path) -> tuple[list[int], float]:
    defaults = ScoreSpec(checkpoint=str(checkpoint), data=str(folder), out="/dev/null")
    started = time.perf_counter()
    out = score(checkpoint, folder, batch_size=defaults.batch_size, precision=defaults.precision, cache_dir=cache)
    return list(out["labels"]), time.perf_counter() - started


def channels_last_scoring(checkpoint: Path, folder: Path, cache: Path) -> tuple[list[int], float]:
    """engine.score's steps with channels_last forced on: what `resolve` would pick if it chose it."""
    defaults = ScoreSpec(checkpoint=str(checkpoint), data=str(folder), out="/dev/null")
    started = time.perf_counter()
    model, spec, _ = load_for_inference(checkpoint)
    images = load_listing(scan(folder), spec.model.image_size, cache)
    device = default_device()
    prec = dataclasses.replace(resolve(defaults.precision, device), channels_last=True)
    probs = probabilities(model.to(device), images, defaults.batch_size, prec, device)
    return [int(p) for p in probs.argmax(axis=1)], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="images [400]")
    parser.add_argument("--size", type=int, default=224, help="pixels [224]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-score-bench-") as tmp:
        root = Path(tmp)
        write_synthetic(root / "data", classes=CLASSES, counts={"test": args.n}, size=args.size)
        folder, checkpoint = root / "data" / "test", root / "best.pt"
        make_checkpoint(checkpoint, folder, args.size)
        for _, path in list_numbered(folder):
            path.read_bytes()  # both sides then read from the page cache
        seed, seed_s = seed_loop(checkpoint, folder)
        fast, fast_s = orch_scoring(checkpoint, folder, root / "cache")
        cl, cl_s = channels_last_scoring(checkpoint, folder, root / "cache-cl")
    device = default_device()
    prec = resolve(ScoreSpec.model_fields["precision"].default, device)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device.type}")
    print(f"data: {args.n} synth JPEGs at {args.size} px, resnet18, {len(CLASSES)} classes; "
          f"seed predicts {np.bincount(seed, minlength=len(CLASSES)).tolist()} per class")
    batch = ScoreSpec.model_fields["batch_size"].default
    line("seed (batch 1, fp32, PIL per file)", args.n, seed_s, seed_s, seed, seed)
    line(f"orch defaults (batch {batch}, {prec.name}{', channels_last' if prec.channels_last else ', NCHW'})",
         args.n, fast_s, seed_s, fast, seed)
    line(f"orch, channels_last (batch {batch}, {prec.name})", args.n, cl_s, seed_s, cl, seed)


def line(name: str, n: int, seconds: float, baseline_s: float, predicted: list[int], fp32: list[int]) -> None:
    agree = sum(a == b for a, b in zip(predicted, fp32))
    print(f"{name:42s} {n / seconds:7.1f} images/s  {seconds:6.1f} s  {baseline_s / seconds:5.2f}x  "
          f"agree with fp32 {agree}/{len(fp32)} ({100 * agree / len(fp32):.2f}%)")


if __name__ == "__main__":
    main()
