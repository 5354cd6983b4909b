"""The Ray Tune side of bench/vs_ray.py, run in its own process: prints one JSON line.

The trainable is what a speed-aware Ray user writes for the same grid: the folder is decoded once
in the driver (PIL, the same resize and centre crop as orch's cache) and shared through Ray's object
store; each trial builds the same network as orch (shared.models.build_model, same spec), trains one
epoch with the same optimiser, batch size, augmentation and precision (bf16 autocast where the CPU
has it), validates on the same split, and reports val accuracy. One trial at a time with every core.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def decode_folder(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, val images, val labels): orch's 80/20 stratified split."""
    from shared.data import scan_labelled, split_indices
    from shared.data.cache import decode

    listing = scan_labelled(folder)
    images = np.stack([decode(path, size) for path in listing.files])
    labels = np.asarray(listing.labels, dtype=np.int64)
    train, val = split_indices(listing, 0.2)
    return images[train], labels[train], images[val], labels[val]


def trainable(config: dict[str, Any]) -> None:
    import ray
    import torch
    import torch.nn.functional as F
    from ray import tune

    from shared.data.augment import augment, to_input
    from shared.engine.precision import resolve
    from shared.models import build_model
    from shared.spec import ModelSpec

    x_train, y_train, x_val, y_val = ray.get(config["data"])
    torch.manual_seed(config["seed"])
    spec = ModelSpec(arch="resnet18", norm=config["norm"], image_size=config["size"], num_classes=2)
    model = build_model(spec).to(memory_format=torch.channels_last)
    prec = resolve(config["precision"], torch.device("cpu"))  # orch's --precision auto, as vs_ray.py found it
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(config["seed"])
    order = torch.randperm(len(x_train), generator=gen)
    model.train()
    for start in range(0, len(order), 64):
        rows = order[start:start + 64].numpy()
        x = augment(torch.from_numpy(x_train[rows]), gen, channels_last=True)
        with prec.autocast(torch.device("cpu")):
            loss = F.cross_entropy(model(x).float(), torch.from_numpy(y_train[rows]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.inference_mode(), prec.autocast(torch.device("cpu")):
        predicted = model(to_input(torch.from_numpy(x_val), channels_last=True)).argmax(1).numpy()
    tune.report({"val_acc": float((predicted == y_val).mean())})


def main() -> None:
    folder, size, norms, seeds = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4].split(",")
    precision = sys.argv[5]
    started = time.perf_counter()
    import ray
    from ray import tune

    cpus = len(os.sched_getaffinity(0))
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    data = ray.put(decode_folder(folder, size))
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as storage:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus}),  # one trial at a time, every core
            param_space={"norm": tune.grid_search(norms), "seed": tune.grid_search([int(s) for s in seeds]),
                         "size": size, "data": data, "precision": precision},
            tune_config=tune.TuneConfig(metric="val_acc", mode="max"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        results = tuner.fit()
        accs = sorted(round(r.metrics["val_acc"], 4) for r in results)
    wall = time.perf_counter() - started
    ray.shutdown()
    print(json.dumps({"wall_s": wall, "trials": len(accs), "val_accs": accs}))


if __name__ == "__main__":
    main()
