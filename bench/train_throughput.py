"""Training throughput: the seed's hand-written loop against orch's engine, in one run.

    .venv/bin/python bench/train_throughput.py          # 1000 synth JPEGs at 112 px, resnet18, 3 epochs

Both sides train torchvision's resnet18 (ImageNet stem at 112 px) with a new 2-class fc on the
same folder of JPEGs for 3 epochs:
- seed: a Dataset that PIL-opens each file per item (Resize, ToTensor, Normalize), DataLoader
  batch 128 with shuffle, Adam lr 1e-4, fp32;
- orch: `shared.engine.train` with TrainSpec's defaults (batch 64, Adam, cosine, precision auto,
  20% of the folder split off for validation), a cold decode cache.
images/s counts training images over the whole wall time of each side: for orch that includes
decoding the cache, validating and writing checkpoints after every epoch, none of which the seed
does, so the ratio is conservative. orch's own per-epoch training rate is printed too. The two
sides take turns step by step in one process, so a change in the load of a shared machine during
the run falls on both alike.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import machine_line, synth_jpegs  # bench/ is on sys.path when run as a script
from torch import nn

from shared.data import scan_labelled
from shared.data.augment import MEAN, STD
from shared.engine import train
from shared.engine.precision import default_device, resolve
from shared.spec import ModelSpec, TrainSpec


class SeedLoop:
    """The seed's training, one step per call, so that the two sides can take turns."""

    def __init__(self, folder: Path, size: int, epochs: int):
        from PIL import Image
        from torch.utils.data import DataLoader, Dataset
        from torchvision import models, transforms

        started = time.perf_counter()
        listing = scan_labelled(folder)
        tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                 transforms.Normalize(MEAN, STD)])

        class Files(Dataset):  # type: ignore[type-arg]
            def __len__(self) -> int:
                return len(listing.files)

            def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
                return tf(Image.open(listing.files[i]).convert("RGB")), listing.labels[i]  # type: ignore[index]

        torch.manual_seed(0)
        self.model = models.resnet18()
        self.model.fc = nn.Linear(self.model.fc.in_features, len(listing.classes))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        loader = DataLoader(Files(), batch_size=128, shuffle=True)
        self.batches = (batch for _ in range(epochs) for batch in loader)
        self.total = epochs * len(listing.files)
        self.images, self.seconds = 0, time.perf_counter() - started

    def step(self) -> bool:
        """One training step, its data loading included; False when every epoch is done."""
        started = time.perf_counter()
        batch = next(self.batches, None)
        if batch is not None:
            x, y = batch
            self.model.train()
            loss = nn.functional.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.images += len(y)
        self.seconds += time.perf_counter() - started
        return batch is not None


def interleaved(folder: Path, size: int, epochs: int, root: Path) -> tuple[SeedLoop, float, list[dict[str, Any]]]:
    """Both sides in one process, taking turns step by step: load swings on a shared machine hit both.

    orch polls `should_stop` before each of its steps; there the seed runs steps until it has
    trained on the same share of its images. orch's seconds are train()'s wall time less those.
    """
    seed = SeedLoop(folder, size, epochs)
    # stem="imagenet": the seed's torchvision resnet18 has it at every size (orch's auto picks it from 65 px)
    spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=size, stem="imagenet"), data=str(folder),
                     epochs=epochs)
    orch_total = epochs * _train_count(folder)
    history: list[dict[str, Any]] = []
    turns: list[float] = []  # seconds the seed ran at each of orch's polls
    epoch_start = 0

    def take_turn() -> bool:
        started = time.perf_counter()
        while seed.images < seed.total * min(1.0, (len(turns) + 1) * spec.batch_size / orch_total) and seed.step():
            pass
        turns.append(time.perf_counter() - started)
        return False

    def on_epoch(metrics: dict[str, Any]) -> None:
        nonlocal epoch_start
        # images_per_s timed orch's steps with the seed's turns among them; the epoch's last poll
        # comes after its steps, before validation
        n = orch_total / epochs
        steps_s = n / metrics["images_per_s"] - sum(turns[epoch_start:-1])
        history.append({**metrics, "images_per_s": n / steps_s})
        epoch_start = len(turns)

    started = time.perf_counter()
    train(spec, root / "work", on_epoch, cache_dir=root / "cache", should_stop=take_turn)
    orch_seconds = time.perf_counter() - started - sum(turns)
    while seed.step():
        pass
    return seed, orch_seconds, history


def _train_count(folder: Path) -> int:
    """Images orch trains on: the folder less the validation fraction it splits off by default."""
    from shared.data import split_indices

    return len(split_indices(scan_labelled(folder), TrainSpec.model_fields["val_fraction"].default)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="images [1000]")
    parser.add_argument("--size", type=int, default=112, help="pixels [112]")
    parser.add_argument("--epochs", type=int, default=3, help="epochs [3]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-train-bench-") as tmp:
        root = Path(tmp)
        folder = synth_jpegs(root, "train", args.n, args.size)
        seed, orch_s, history = interleaved(folder, args.size, args.epochs, root)
        orch_n = args.epochs * _train_count(folder)
    report(args, seed.images, seed.seconds, orch_n, orch_s, history)


def report(args: argparse.Namespace, seed_n: int, seed_s: float, orch_n: int, orch_s: float,
           history: list[dict[str, Any]]) -> None:
    device = default_device()
    prec = resolve(TrainSpec.model_fields["precision"].default, device)
    seed_rate, orch_rate = seed_n / seed_s, orch_n / orch_s
    print(machine_line())
    print(f"data: {args.n} synth JPEGs at {args.size} px, resnet18 (ImageNet stem), {args.epochs} epochs")
    print(f"seed  (PIL per item, batch 128, fp32):              {seed_rate:7.1f} images/s  ({seed_s:.1f} s)")
    print(f"orch  (batch {TrainSpec.model_fields['batch_size'].default}, {prec.name}"
          f"{', channels_last' if prec.channels_last else ''}, cold cache, val + checkpoints): "
          f"{orch_rate:7.1f} images/s  ({orch_s:.1f} s)")
    train_s = sum(orch_n / len(history) / m["images_per_s"] for m in history)
    print("orch  training steps only, per epoch: " + ", ".join(f"{m['images_per_s']:.1f}" for m in history)
          + f" images/s; all epochs {orch_n / train_s:.1f} images/s ({orch_n / train_s / seed_rate:.2f}x the seed)")
    print(f"speed-up (whole runs): {orch_rate / seed_rate:.2f}x")


if __name__ == "__main__":
    main()
