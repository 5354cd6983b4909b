"""Numeric precision: where bf16 autocast and channels_last pay off, and where they do not.

`auto` means bf16 autocast on a GPU that has bf16 (Ampere and newer) or on a CPU with native bf16
(AMX or AVX512-BF16) where it trains measurably faster than fp32 (bf16_probe.py: on one such Xeon it
did not), fp16 autocast with a gradient scaler on an older GPU, and fp32 elsewhere;
scoring on an x86 CPU runs int8 instead (see quantize.py). A CPU without native
bf16 emulates it, 2.8x slower than fp32 (resnet18 training at 112 px on the 2-core Cascade Lake
these notes were measured on: 49.5 vs 17.6 images/s). channels_last is used everywhere: on that
CPU oneDNN's fp32 convolutions train 1.07-1.25x faster in it (64 to 224 px) and infer 1.2-1.6x
faster, measured step by step in alternation with NCHW. Weights stay fp32 under autocast, so
checkpoints always hold fp32.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from shared.engine.bf16_probe import Bf16Probe, bf16_probe
from shared.engine.quantize import int8_supported

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    name: str  # "bf16", "fp16" (a GPU without bf16), "fp32" or "int8" (scoring, quantize.py): what runs
    autocast_dtype: torch.dtype | None
    channels_last: bool
    probe: Bf16Probe | None = None  # what `auto` measured on this CPU to choose between bf16 and fp32

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none."""
        return self.autocast_dtype == torch.float16

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[object]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


def resolve(precision: str, device: torch.device, *, scoring: bool = False, cache_dir: Path | None = None,
            trained_in: str | None = None) -> Precision:
    """The Precision that `precision` (auto, fp32, bf16; int8 when scoring) means on `device`;
    `cache_dir` keeps the bf16 probe's answer for the machine (without it, for this process only).
    `trained_in`: what a checkpoint's epochs ran in (a resume, a scoring fallback), which `auto` keeps
    on a CPU that runs it natively: a resume on a worker with other threads, or on another machine of a
    lab, would otherwise measure again and could switch precision half-way through a job.

    Scoring on an x86 CPU quantizes to int8 under `auto` (see quantize.py: 2.2x bf16 and 4.6x fp32
    on an AVX512-BF16 EPYC); training, and validation during training, never do. int8 asked for
    on a GPU runs fp32: the int8 kernels are the CPU's.
    """
    allowed = ("auto", "fp32", "bf16", "int8") if scoring else ("auto", "fp32", "bf16")
    if precision not in allowed:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(allowed)}")
    cpu_int8 = device.type == "cpu" and int8_supported()
    probe = None
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if gpu_has_bf16() else "fp16"
        elif scoring and cpu_int8:
            precision = "int8"
        elif trained_in == "fp32" or (trained_in == "bf16" and cpu_has_native_bf16()):
            precision = trained_in
        elif cpu_has_native_bf16():
            probe = bf16_probe(cache_dir)
            precision = "bf16" if probe.pays else "fp32"
        else:
            precision = "fp32"
    if precision == "fp16":  # only ever chosen by `auto`, on a GPU without bf16
        return Precision("fp16", torch.float16, channels_last=True)
    if precision == "bf16":
        return Precision("bf16", torch.bfloat16, channels_last=True, probe=probe)
    if precision == "int8" and cpu_int8:
        return Precision("int8", None, channels_last=True)
    return Precision("fp32", None, channels_last=True, probe=probe)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16, from torch's cpuinfo where it can tell, else /proc/cpuinfo."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(f in flags for f in CPU_BF16_FLAGS)


@lru_cache(maxsize=1)
def gpu_has_bf16() -> bool:
    """bf16 tensor cores (Ampere and newer); older GPUs get fp16 autocast with a gradient scaler."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
