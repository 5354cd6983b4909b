"""Chance level: the validation accuracy of a model that always answers the most common class.

A config whose accuracy is not clearly above it has learned nothing the data shows, so where it
ranks is noise; the report says so rather than name "the best config" of a study where nothing learned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

from orchestrator.analysis.configs import Config
from orchestrator.analysis.stats import Scale, Summary, t_quantile

Z_95 = 1.96  # one-sided 2.5%: the seeds' mean accuracy against chance, in standard errors (`chance_error`)


@dataclass(frozen=True)
class Chance:
    level: float  # accuracy of always answering the most common class (1/classes when not recorded)
    images: int | None  # validation images per run, when recorded: the binomial test needs them
    how: str  # how the level was found, for the report's note


def chance_of(config: Config) -> Chance | None:
    """From what the worker recorded (the validation set's most common class); for runs recorded
    before that, 1/classes; None when neither is known (no run finished)."""
    for run in config.runs:
        if run.result.get("val_majority") is not None:
            return Chance(float(run.result["val_majority"]), run.result.get("val_images"), "the most common class")
    classes = [len(run.result["classes"]) for run in config.runs if run.result.get("classes")]
    if classes and classes[0] > 1:
        return Chance(1 / classes[0], None, f"1/{classes[0]} classes")
    return None


def at_chance(chance: Chance | None, summary: Summary, z: float = Z_95) -> bool | None:
    """True when the accuracy is not clearly above chance. With the validation images known: the
    seeds' mean within z standard errors of chance (`chance_error`). Without the count: the t
    interval over seeds, or one seed's value. None when it cannot be judged."""
    if chance is None or summary.mean is None:
        return None
    if chance.images:
        return summary.mean <= chance.level + z * chance_error(chance.level, chance.images, summary)
    if summary.ci is not None and summary.ci[0] != summary.ci[1]:
        return summary.ci[0] <= chance.level
    return summary.mean <= chance.level


def chance_error(level: float, images: int, summary: Summary) -> float:
    """The standard error of the seeds' mean accuracy under "learned nothing", every seed scored on
    the same validation images. One run at chance scores Binomial(images, level) / images, variance
    b = level (1 - level) / images. Seeds that err independently pool (b / seeds: three seeds at
    67/57/75% of 100 are far above 50%, where their t interval, 43.9..88.7, reached it); seeds that
    make the same mistakes are one run (b: three seeds at 56% each are 56 of 100, not 168 of 300,
    called above chance in 13% of simulated studies where they shared every mistake). Their spread
    over seeds, s^2, tells which: it estimates the independent part of b (correlation 1 - s^2 / b),
    so the mean's variance is (b - s^2) + s^2 / seeds, and s^2 / seeds alone where seeds vary more
    than their images allow."""
    binomial = level * (1 - level) / images
    n = summary.n
    spread = summary.std ** 2 if summary.std is not None and n > 1 else binomial  # one seed: b
    return math.sqrt(max(binomial - spread, 0.0) + spread / n)


def with_image_error(summary: Summary, images: int, scale: Scale, kind: str = "validation") -> Summary:
    """A validation (or test) accuracy's 95% interval that counts the images' own sampling error: over seeds
    alone, two seeds at 68% each on 100 images read "68.0..68.0", where scoring 100 other images of
    the same kind moves one run by about 9 points. Its half-width is the larger of the seeds' t
    interval and 1.96 standard errors of `chance_error`'s mean (with the seeds' accuracy in place of
    chance level, taken as (correct + 2) / (images + 4), Agresti and Coull's, so that 200 of 200 is not
    a point: 98.6..100); one seed keeps no interval (nothing says how much seeds differ)."""
    if summary.mean is None or summary.n < 2 or summary.ci is None or images <= 0:
        return summary
    seeds_half = t_quantile(summary.n - 1) * (summary.std or 0.0) / math.sqrt(summary.n)
    half = Z_95 * chance_error((summary.mean * images + 2) / (images + 4), images, summary)
    if half <= seeds_half:
        return summary
    low, high = scale.clip(summary.mean - half, summary.mean + half)
    note = f"the 95% interval counts the sampling error of the {images} {kind} images, wider than the seeds' spread"
    return replace(summary, ci=(low, high), note=note)


def family_z(configs: int) -> float:
    """The one-sided line a study's "some config learned" claim needs: with k configs one clears 1.96
    by luck far more often than 2.5% of the time (the study-wide warning was lost in 24% of studies of
    9 configs at chance); Bonferroni over the k configs."""
    return NormalDist().inv_cdf(1 - 0.025 / max(configs, 1))


def chance_note(labels: list[str], total: int, chance: Chance) -> str:
    """One line for the configs at chance; every config there (judged with the study's configs in
    view: `family_z`) makes the whole ranking noise."""
    # the binomial test over the images, said: a config whose t interval reaches chance may still be
    # clearly above it; and the last epoch, said: the best one, picked on these images, is above
    # chance by luck alone
    images = ", judged on each run's last epoch over its validation images, seeds that agree counting as one run"
    pooled = images if chance.images else ", judged on each run's last epoch"
    level = f"{100 * chance.level:.1f}% ({chance.how}{pooled})"
    if len(labels) == total:
        among = f", with {'both' if total == 2 else f'all {total}'} configs in view" if total > 1 else ""
        return (f"no config is clearly above chance level, {level}{among}: the ranking and the comparisons "
                "may be noise")
    return f"not clearly above chance level, {level}: {', '.join(labels)}"
