"""What the benchmarks share: their synthetic JPEG folders and the line that names the machine."""
from __future__ import annotations

import os
import platform
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from shared.data import write_synthetic
from shared.engine.precision import cpu_has_native_bf16, default_device

CLASSES = ["cat", "dog"]
# The CPU features that decide which arithmetic is fast: bf16 (AMX, AVX512-BF16), int8 (VNNI).
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


CHUNK = 500  # images per parallel writer


def synth_jpegs(root: Path, split: str, n: int, size: int, seed: int = 0) -> Path:
    """`n` synth JPEGs at `size` px in root/data/<split>, written on every core, then read once so
    that every side of a bench starts from the page cache."""
    folder = root / "data" / split
    chunks = [(root / "parts" / f"{split}-{i}", split, min(CHUNK, n - start), size, seed * 100_003 + i)
              for i, start in enumerate(range(0, n, CHUNK))]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_write_chunk, chunks))
    folder.mkdir(parents=True, exist_ok=True)
    for part, *_ in chunks:  # cat.12.jpg of chunk 3 becomes cat.3-12.jpg (test: 3012.jpg style ids)
        for path in (part / split).iterdir():
            path.rename(folder / _merged_name(path.name, part.name.rsplit("-", 1)[1], split))
    for path in folder.iterdir():
        path.read_bytes()
    return folder


def _write_chunk(job: tuple[Path, str, int, int, int]) -> None:
    out, split, n, size, seed = job
    write_synthetic(out, classes=CLASSES, counts={split: n}, size=size, seed=seed)


def _merged_name(name: str, chunk: str, split: str) -> str:
    if split == "test":  # numbered: ids must stay integers and unique
        return f"{int(chunk) * CHUNK + int(name.split('.')[0])}.jpg"
    cls, rest = name.split(".", 1)
    return f"{cls}.{chunk}-{rest}"


def cpu_model_and_flags() -> tuple[str, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return model, [f for f in FLAGS if f in flags]


def machine_line() -> str:
    device = default_device()
    model, flags = cpu_model_and_flags()
    gpu = f", GPU {torch.cuda.get_device_name()}" if device.type == "cuda" else ""
    return (f"machine: {model} ({', '.join(flags) or 'no avx2'}), {os.cpu_count()} cpus, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, device {device.type}{gpu}, native CPU bf16: {cpu_has_native_bf16()}")
