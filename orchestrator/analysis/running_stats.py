"""BatchNorm's running statistics after few steps: what a validation (or test) accuracy is measured with.

In evaluation a BatchNorm layer normalises with running estimates of its inputs' mean and variance,
each step moving them `momentum` of the way from their start (mean 0, variance 1) toward the data's:
after n steps they hold (1 - momentum)^n of the start. torchvision's MobileNetV3 keeps a momentum of
0.01, so 21 steps (3 epochs of 200 images at batch 32) left them 81% their initial values, and a
model that had learned validated at chance: 50%, where recomputing the statistics gave 95%. The
report says so rather than let such a config rank as if its weights had learned nothing.
"""
from __future__ import annotations

from orchestrator.analysis.configs import Config

STILL_INITIAL = 0.5  # said where the running statistics hold more of their start than of the data


def running_stats_note(config: Config) -> str | None:
    """The note of a config whose least-trained run validated on BatchNorm statistics still more than
    STILL_INITIAL their initial values; None where every run had steps enough, or nothing says."""
    held = []
    for run in config.runs:
        momentum, per_epoch = run.result.get("bn_momentum"), run.result.get("steps_per_epoch")
        if momentum and per_epoch and run.epochs:
            steps = len(run.epochs) * int(per_epoch)
            held.append(((1 - float(momentum)) ** steps, steps, float(momentum)))
    if not held or max(held)[0] <= STILL_INITIAL:
        return None
    initial, steps, momentum = max(held)
    return (f"its BatchNorm running statistics, which evaluation normalises with, still hold {100 * initial:.0f}% of "
            f"their initial values after {steps} steps at momentum {momentum:g}: its accuracy may say little of "
            "its weights (more steps: more epochs, more images or a smaller --batch-size)")
