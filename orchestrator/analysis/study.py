"""One study's answer: configs ranked by a metric, each with its interval, its paired comparison
against the baseline and its convergence flag."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from orchestrator.analysis.chance import Chance, at_chance, chance_of, family_z, with_image_error
from orchestrator.analysis.configs import Config, common_fields, find_baseline, group_with_absent, varying_fields
from orchestrator.analysis.curves import convergence_note
from orchestrator.analysis.image_error import paired_hits
from orchestrator.analysis.stats import Comparison, Scale, Summary, compare, holm, single_difference, summarize
from orchestrator.metrics import METRICS
from shared.store.report_reads import RunRecord, StudyRecord

VALIDATION_ACCURACY = ("val_acc", "last_val_acc")  # the metrics a validation set's chance level applies to


def scale_of(metric: str) -> Scale:
    """Accuracy in points between 0 and 100%; a loss and images/s as they are, never below 0 (an
    interval of images/s reached -2.0 over four noisy seeds)."""
    accuracy = metric.endswith("acc")
    return Scale(100.0 if accuracy else 1.0, " points" if accuracy else "", METRICS[metric],
                 (0.0, 1.0) if accuracy else (0.0, math.inf))


@dataclass(frozen=True)
class ConfigResult:
    config: Config
    rank: int
    summary: Summary
    comparison: Comparison
    convergence: str | None  # None: the last epochs look settled
    test: Summary  # test accuracy over seeds, for scored runs (n=0 when none was scored)
    at_chance: bool | None  # val_acc not clearly above chance level (None: not judged)


@dataclass(frozen=True)
class StudyAnalysis:
    study: StudyRecord | None
    metric: str
    results: list[ConfigResult]  # best first
    baseline: ConfigResult
    baseline_how: str  # why it is the baseline: "--baseline", or which first config it is
    common: dict[str, Any]  # the settings every config shares
    varying: list[str]  # dotted names of the fields that separate configs
    chance: Chance | None  # chance level of val_acc (None for other metrics, or not known)
    # ranked by the best epoch: the config the last epochs rank first where it is another one (None: the same)
    first_by_last_epoch: Config | None = None
    absent_labels: dict[int, str] = field(default_factory=dict)  # job id -> config, of the jobs left out
    absent: list[tuple[int, str]] = field(default_factory=list)  # (job id, how far it got), left out
    nothing_learned: bool = False  # no config above chance, judged with the study's configs in view

    @property
    def runs(self) -> list[RunRecord]:
        return sorted((run for r in self.results for run in r.config.runs), key=lambda run: run.id)


def analyse(runs: list[RunRecord], metric: str, study: StudyRecord | None = None,
            baseline: str | None = None, by_job: bool = False,
            absent: dict[int, dict[str, Any]] | None = None) -> StudyAnalysis:
    """Group (by seedless spec, or one config per job), rank and compare. `absent`: the specs of the
    study's jobs left out of its statistics (not finished), which name their configs in its notes.

    Raises OrchError for a --baseline that names no single config.
    """
    submitted, absent_labels = group_with_absent(runs, by_job, absent)
    configs = rank_configs(submitted, metric)
    base, how = (find_baseline(configs, baseline), "--baseline") if baseline else default_baseline(submitted, metric, by_job)
    scale = scale_of(metric)
    base_values = base.by_seed(metric)
    # the comparisons' p-values, adjusted together: each decides its verdict with the others in view
    others = [config for config in configs if config is not base]
    # which validation images each seed got right, where recorded: their own sampling error counts too
    images = {id(c): None if by_job else paired_hits(c, base, metric) for c in others}
    adjusted = dict(zip(map(id, others), holm([None if by_job else compare(c.by_seed(metric), base_values, scale,
                                                                           images=images[id(c)]).p
                                               for c in others]), strict=True))
    planned = sum(len(set(c.by_seed(metric)) & set(base_values)) >= 2 for c in others)  # what a seed count plans for
    # validation accuracy only: the test set's most common class is not recorded
    chance = next((c for c in map(chance_of, configs) if c), None) if metric in VALIDATION_ACCURACY else None
    results, lasts = [], []
    for rank, config in enumerate(configs, start=1):
        values = config.by_seed(metric)
        comparison = (_baseline_row(values) if config is base
                      else single_difference(_only(values), _only(base_values), scale) if by_job
                      else compare(values, base_values, scale, adjusted[id(config)], planned, images[id(config)]))
        tests = list(config.by_seed("test_acc").values())
        summary = summarize(list(values.values()), scale)
        if chance is not None and chance.images:  # a validation accuracy: its images' error too
            summary = with_image_error(summary, chance.images, scale)
        elif metric == "test_acc" and (tested := test_images(config)):  # a test accuracy: its images' too
            summary = with_image_error(summary, tested, scale, "test")
        convergence = convergence_note(config) if judges_convergence(metric) else None
        # judged on each run's last epoch: the best epoch is picked on the very images it is judged
        # on, and a config at chance reads "above" it more often the more epochs it had to pick from
        last = summarize(list(config.by_seed("last_val_acc").values()), scale)
        lasts.append(last)
        results.append(ConfigResult(config, rank, summary, comparison, convergence,
                                    summarize(tests, scale_of("test_acc")), at_chance(chance, last)))
    z = family_z(len(configs))  # the study-wide claim, "nothing learned", with every config in view
    nothing = chance is not None and all(at_chance(chance, last, z) for last in lasts)
    return StudyAnalysis(study, metric, results, next(r for r in results if r.config is base), how,
                         common_fields(configs), varying_fields(configs), chance, _first_by_last_epoch(configs, metric),
                         absent_labels, nothing_learned=nothing)


def test_images(config: Config) -> int | None:
    """How many test images each of the config's scored runs was scored on, where they all agree."""
    counts = {run.test_images for run in config.runs if run.test_acc is not None}
    return counts.pop() if len(counts) == 1 else None


def judges_convergence(metric: str) -> bool:
    """Whether training had settled says nothing about a throughput (its rows say "-", not "yes")."""
    return metric != "images_per_s"


def default_baseline(configs: list[Config], metric: str, by_job: bool = False) -> tuple[Config, str]:
    """The study's first config (`configs` in the order of their first job: the first value of each
    axis as the grid listed it), unless it has fewer than half the seeds of the config with the most
    (or fewer than 2, when another has 2): then the first config with that many. Chosen before any
    result is read: the best config as the baseline made every other look worse than it is (in a
    study of 4 equal configs with 3 seeds, 16% of studies called one "worse"). Not one with a few
    seeds: a one-seed baseline would leave every comparison one seed to pair (no interval, no
    p-value). Not only the one with the most either: a cancelled run of the first config made a
    later one, diverged, the baseline of the whole study."""
    seeds = [len(config.by_seed(metric)) for config in configs]
    enough = max(2, math.ceil(max(seeds) / 2)) if max(seeds) >= 2 else 1
    chosen = next(i for i, n in enumerate(seeds) if n >= enough)
    first = "the lowest job id" if by_job else "the study's first config"
    if chosen == 0:
        return configs[0], f"{first}, chosen before the results"
    if enough == 1:  # it read "at least 1 seeds (..., and 2 to pair)" of a study whose first test_acc was scored once
        return configs[chosen], f"the first config with a {metric} value (none has 2 seeds of it), chosen before the results"
    return configs[chosen], (f"the first config with at least {enough} seeds (half the most any config has, and "
                             f"2 to pair), chosen before the results")


def rank_configs(configs: list[Config], metric: str) -> list[Config]:
    """Best mean first; configs without the metric last, in their original order."""
    higher = METRICS[metric]

    def key(config: Config) -> tuple[bool, float]:
        values = list(config.by_seed(metric).values())
        if not values:
            return True, 0.0
        mean = sum(values) / len(values)
        return False, -mean if higher else mean

    return sorted(configs, key=key)


def _first_by_last_epoch(configs: list[Config], metric: str) -> Config | None:
    """Where picking each run's best epoch on the validation images changes which config comes first,
    the config its last epochs rank first: the pick, not the config, may be what won."""
    if metric != "val_acc" or len(configs) < 2:
        return None
    first = rank_configs(configs, "last_val_acc")[0]
    return None if first is configs[0] else first


def _only(values: dict[int, float]) -> float | None:
    """A single job's value (by_job: one run per config)."""
    return next(iter(values.values()), None)


def _baseline_row(values: dict[int, float]) -> Comparison:
    return Comparison(sorted(values), 0.0, None, None, None, "baseline", "baseline")
