"""int8 scoring on x86 CPUs: static post-training quantization, checked against fp32 before use.

x86 CPUs with AVX512-VNNI run int8 convolutions several times faster than fp32, and faster than
native bf16: resnet18 at 224 px, forward only, batch 64, channels_last: 197 int8 vs 88 bf16 vs
43 fp32 images/s on a 2-core AVX512-BF16 EPYC (bench/score_throughput.py has the end-to-end
numbers). So `auto` scoring on a CPU quantizes the network (PyTorch's FX graph mode, x86
backend: per-channel int8 weights, per-tensor uint8 activations with min/max ranges), calibrated
on a fixed sample of the folder being scored.

The calibration pass also gives the fp32 predictions on that sample, so the int8 network is
checked on it before it scores anything: below MIN_AGREEMENT, or if the network cannot be
quantized (an op the backend lacks, a torch without torch.ao.quantization), scoring runs in the
precision `auto` would otherwise pick and the result says why. The sample is drawn from the whole
folder, not from a shard, so every shard quantizes identically and a sharded run writes the same
CSV as an unsharded one.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

CALIBRATION_IMAGES = 16  # each costs one fp32 forward; the check below catches ranges that are off
MIN_AGREEMENT = 0.99  # the scoring target's own bar: int8 predictions must match fp32's


@dataclass(frozen=True)
class Int8Result:
    model: nn.Module | None  # the quantized network; None when scoring falls back
    agreement: float | None  # int8 vs fp32 predictions on the calibration sample
    reason: str | None  # why it fell back


def int8_supported() -> bool:
    return "x86" in torch.backends.quantized.supported_engines


def warm_up() -> None:
    """Convert a tiny network once, where int8 can run: the first conversion in a process imports
    some 480 modules (torch.fx passes, networkx...), half a second that the worker's fork server
    spends once (worker/fork_server.py), not every scoring job after it arrives."""
    if int8_supported():
        tiny = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
        quantize(tiny, torch.randn(2, 3, 8, 8))


def calibration_positions(n: int, k: int = CALIBRATION_IMAGES) -> np.ndarray:
    """k positions spread evenly over n images (a folder sorted by class gives every class a share)."""
    return np.unique(np.linspace(0, n - 1, num=min(n, k)).round().astype(np.int64))


def quantize(model: nn.Module, calibration: torch.Tensor) -> Int8Result:
    """`model` (fp32, eval, on the CPU) as an int8 network, if it agrees with fp32 on `calibration`.

    `calibration` is a normalised float batch, in the layout the model will be fed. `model` is
    converted without a copy (a tenth of a second for resnet18): the int8 network reuses its modules,
    so a caller that needs the fp32 network after a fallback loads it again.
    """
    try:
        with warnings.catch_warnings():
            # torch.ao.quantization warns that it moves to torchao; it is still what ships with torch
            warnings.simplefilter("ignore")
            quantized, reference = convert(model, calibration)
            with torch.inference_mode():
                predicted = quantized(calibration).argmax(1)
    except Exception as exc:  # an op without an int8 kernel, a torch without the module: fp32 it is
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Int8Result(None, None, f"int8 unavailable for this network ({first[:160]})")
    agreement = float((predicted == reference.argmax(1)).float().mean())
    if agreement < MIN_AGREEMENT:
        return Int8Result(None, agreement, f"int8 agreed with fp32 on {agreement:.1%} of the "
                                           f"calibration images (< {MIN_AGREEMENT:.0%})")
    return Int8Result(quantized, agreement, None)


def convert(model: nn.Module, calibration: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """(int8 network, fp32 logits of the calibration batch from the observing pass), unchecked: `quantize`
    is the checked path; this one serves a speed measurement, which needs the int8 network whatever
    its agreement (bench/efficiency.py's ceiling, calibrated on random tensors)."""
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    # min/max rather than the default histogram observer: a third of the calibration time, and
    # the agreement check above decides whether the ranges were good enough
    qconfig = QConfig(  # type: ignore[no-untyped-call]  # torch ships QConfig unannotated
        activation=MinMaxObserver.with_args(dtype=torch.quint8),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    prepared = prepare_fx(model.eval(), QConfigMapping().set_global(qconfig),
                          (calibration[:1],))
    with torch.no_grad():
        reference = prepared(calibration)  # observers pass values through: these are fp32 logits
    return convert_fx(prepared), reference
