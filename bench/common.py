"""What both benchmarks share: their synthetic JPEG folder and the line that names the machine."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from shared.data import write_synthetic
from shared.engine.precision import cpu_has_native_bf16, default_device

CLASSES = ["cat", "dog"]


def synth_jpegs(root: Path, split: str, n: int, size: int) -> Path:
    """`n` synth JPEGs at `size` px in root/data/<split>, read once so both sides start from the page cache."""
    write_synthetic(root / "data", classes=CLASSES, counts={split: n}, size=size)
    folder = root / "data" / split
    for path in folder.iterdir():
        path.read_bytes()
    return folder


def machine_line() -> str:
    device = default_device()
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, device {device.type}, native bf16: {cpu_has_native_bf16()}")
