"""Learning curves over seeds, and whether a config had stopped learning when its runs ended.

A verdict on a config that was still improving may flip with more epochs (the demo's LayerNorm
ends near 55% after 4 epochs and reaches 97-99% with a longer schedule), so the report says so.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from orchestrator.analysis.configs import Config

# Over the last third of the epochs (at least the last step), on the mean over seeds:
RISE = 0.01  # validation accuracy still gaining a point an epoch or more
FALL = 0.05  # training loss still losing 5% of its value an epoch...
FALL_ABS = 0.02  # ...and at least 0.02 an epoch (a loss near 0 halving is no sign of more to learn)
# A training loss still above this share of chance level's, ln(classes), has barely started to fall;
# a schedule that decays the rate to 0 flattens its curve at the end without it having converged.
NEAR_CHANCE = 0.8
# A training loss that blew up: an lr of 10 ended one epoch at 22,209 on 2 classes, and read only "one
# epoch: no trend to judge". One epoch's mean is no proof below 100 x chance level's: a first epoch of
# ResNet-50 with LayerNorm averaged 7.06 on 2 classes (ln 2 = 0.69, so 10 x) and then learned. Over
# several epochs, a loss that rose to above RISEN x chance's has diverged too.
DIVERGED = 100.0
RISEN = 3.0
NOT_CONVERGED = "not converged: verdict may change with more epochs"
# more epochs do not mend a blown-up loss: said apart from NOT_CONVERGED, which promised they might
DIVERGED_NOTE = "diverged: its numbers are no measure of the config, and more epochs will not change that"


@dataclass(frozen=True)
class Curve:
    """A metric per epoch over a config's runs: the mean, and the lowest and highest seed."""

    epochs: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]


def curve(config: Config, key: str) -> Curve:
    """Each epoch that any run recorded; a run that stopped early leaves the later epochs' mean."""
    values: dict[int, list[float]] = {}
    for run in config.runs:
        for epoch in run.epochs:
            if epoch.get(key) is not None:
                values.setdefault(int(epoch["epoch"]), []).append(float(epoch[key]))
    epochs = sorted(values)
    return Curve(epochs, [statistics.fmean(values[e]) for e in epochs],
                 [min(values[e]) for e in epochs], [max(values[e]) for e in epochs])


def convergence_note(config: Config) -> str | None:
    """None when the last epochs look settled; else why the config may not have converged."""
    acc, loss = curve(config, "val_acc"), curve(config, "train_loss")
    classes = _classes(config)
    blown = _diverged(loss, classes)
    if blown:
        return blown
    if len(acc.epochs) < 2:
        return f"{NOT_CONVERGED} (one epoch: no trend to judge)"
    reasons = []
    since = window_start(acc.epochs)
    gain = (acc.mean[-1] - acc.mean[since]) / (acc.epochs[-1] - acc.epochs[since])
    if gain >= RISE:
        reasons.append(f"val_acc +{100 * gain:.1f} points an epoch since epoch {acc.epochs[since]}")
    reasons += _loss_reasons(loss, classes)
    return f"{NOT_CONVERGED} ({'; '.join(reasons)})" if reasons else None


def _diverged(loss: Curve, classes: int | None) -> str | None:
    """The flag of a config whose training loss ended far above guessing's, ln(classes): it diverged."""
    if not loss.epochs or not classes or classes < 2:
        return None
    last, chance = loss.mean[-1], math.log(classes)
    rose = len(loss.mean) > 1 and last > loss.mean[0] and last > RISEN * chance
    if math.isfinite(last) and last < DIVERGED * chance and not rose:
        return None
    how = (f"up from {loss.mean[0]:.4g} at epoch {loss.epochs[0]}, above {RISEN:g}" if rose and last < DIVERGED * chance
           else f"more than {DIVERGED:g}")
    return (f"{DIVERGED_NOTE} (train loss {last:.4g} at epoch {loss.epochs[-1]}, {how} x chance's "
            f"ln({classes}) = {chance:.3f}; a lower --lr)")


def diverged(note: str | None) -> bool:
    """Whether a convergence note is a divergence's."""
    return bool(note) and str(note).startswith(DIVERGED_NOTE)


def _loss_reasons(loss: Curve, classes: int | None) -> list[str]:
    if len(loss.epochs) < 2:
        return []
    reasons = []
    since = window_start(loss.epochs)
    drop = (loss.mean[since] - loss.mean[-1]) / (loss.epochs[-1] - loss.epochs[since])
    if drop >= FALL_ABS and drop >= FALL * loss.mean[since]:
        reasons.append(f"train loss -{drop:.3f} an epoch since epoch {loss.epochs[since]}")
    if classes and classes > 1 and loss.mean[-1] >= NEAR_CHANCE * math.log(classes):
        # 1.061 against 0.693 is not "near"; and 0.555 read as near with no bar said (within 20%)
        where = (f"near chance: within {1 - NEAR_CHANCE:.0%} of" if loss.mean[-1] <= math.log(classes)
                 else "above chance's")
        reasons.append(f"train loss {loss.mean[-1]:.3f} still {where} ln({classes}) = {math.log(classes):.3f}")
    return reasons


def _classes(config: Config) -> int | None:
    """The class count the worker found in the data (the spec's num_classes is only a default)."""
    counts = [len(run.result["classes"]) for run in config.runs if run.result.get("classes")]
    return counts[0] if counts else None


def window_start(epochs: list[int]) -> int:
    """Index of the first epoch of the last third of the run (at least one step before the end)."""
    return len(epochs) - 1 - max(1, len(epochs) // 3)
