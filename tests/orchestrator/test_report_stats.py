"""The report's statistics against values worked out by hand.

For 2 degrees of freedom the t distribution has a closed form, F(t) = 1/2 + t / (2 sqrt(2 + t^2)),
so the intervals and p-values of a 3-seed paired test are checked without scipy:
  the 97.5% quantile solves t / sqrt(2 + t^2) = 0.95, t = sqrt(2 * 0.9025 / 0.0975) = 4.30265;
  a two-sided p-value is 1 - t / sqrt(2 + t^2).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from orchestrator.analysis.configs import Config, config_hash, find_baseline, group_runs
from orchestrator.analysis.curves import convergence_note
from orchestrator.analysis.stats import Scale, compare, paired_power, seeds_for_power, summarize
from orchestrator.analysis.study import analyse
from shared.errors import OrchError
from shared.store.report_reads import RunRecord

ACC = Scale(100.0, " points", True, (0.0, 1.0))
LOSS = Scale(1.0, "", False)
T2 = math.sqrt(2 * 0.9025 / 0.0975)  # the 97.5% quantile of t with 2 degrees of freedom


def test_the_closed_form_quantile_is_the_one_used() -> None:
    from orchestrator.analysis.stats import t_quantile

    assert t_quantile(2) == pytest.approx(T2, abs=1e-9)
    assert T2 == pytest.approx(4.302653, abs=1e-6)


def test_three_seeds_paired_by_hand() -> None:
    # differences 0.02, 0.04, 0.03: mean 0.03, sd 0.01, se 0.01/sqrt(3), t = 3 sqrt(3)
    comp = compare({0: 0.52, 1: 0.54, 2: 0.53}, {0: 0.50, 1: 0.50, 2: 0.50}, ACC)
    t = 3 * math.sqrt(3)
    assert comp.seeds == [0, 1, 2]
    assert comp.diff == pytest.approx(0.03)
    half = T2 * 0.01 / math.sqrt(3)
    assert comp.ci == pytest.approx((0.03 - half, 0.03 + half))
    assert comp.p == pytest.approx(1 - t / math.sqrt(2 + t * t))  # 0.035099
    assert comp.p == pytest.approx(0.035099, abs=1e-6)
    assert comp.outcome == "better"
    assert comp.verdict.startswith("better: +3.00 points, 95% CI [+0.52, +5.48] points, p=0.035")


def test_lower_is_better_for_a_loss() -> None:
    comp = compare({0: 0.52, 1: 0.54, 2: 0.53}, {0: 0.50, 1: 0.50, 2: 0.50}, LOSS)
    assert comp.outcome == "worse" and comp.verdict.startswith("worse: +0.03")


def test_one_config_interval_by_hand() -> None:
    summary = summarize([0.5, 0.6, 0.7], ACC)  # mean 0.6, sd 0.1
    half = T2 * 0.1 / math.sqrt(3)
    assert summary.n == 3 and summary.mean == pytest.approx(0.6) and summary.std == pytest.approx(0.1)
    assert summary.ci == pytest.approx((0.6 - half, 0.6 + half))
    assert summary.note == ""


def test_an_interval_is_cut_at_the_metric_range() -> None:
    summary = summarize([0.9, 1.0, 0.95], ACC)  # mean 0.95, sd 0.05: the t interval reaches 1.074
    assert summary.ci is not None and summary.ci[1] == 1.0
    assert summary.ci[0] == pytest.approx(0.95 - T2 * 0.05 / math.sqrt(3))
    assert summarize([0.9, 1.0, 0.95], LOSS).ci[1] > 1.0  # type: ignore[index]  # a loss has no ceiling


def test_n_equals_one_has_no_interval_and_says_so() -> None:
    summary = summarize([0.7], ACC)
    assert (summary.n, summary.mean, summary.std, summary.ci) == (1, 0.7, None, None)
    assert "n=1" in summary.note and "no interval" in summary.note
    comp = compare({3: 0.7}, {3: 0.6}, ACC)
    assert comp.seeds == [3] and comp.diff == pytest.approx(0.1)
    assert comp.ci is None and comp.p is None and comp.seeds_needed is None
    assert comp.outcome == "unclear" and "+10.00 points on the one common seed (3)" in comp.verdict
    assert "no interval or p-value" in comp.verdict


def test_unequal_seeds_pair_only_the_common_ones() -> None:
    # the config has seeds 0, 1, 2 and the baseline 0 and 1: seed 2 is left out of the pairing
    config, base = {0: 0.60, 1: 0.64, 2: 0.99}, {0: 0.50, 1: 0.50}
    comp = compare(config, base, ACC)
    assert comp.seeds == [0, 1]
    assert comp.diff == pytest.approx(0.12)  # (0.10 + 0.14) / 2; seed 2's 0.99 would move it
    # two pairs: sd = 0.02 sqrt(2)/2 ... = |0.10 - 0.14| / sqrt(2); df 1: quantile tan(pi * 0.475)
    sd = 0.04 / math.sqrt(2)
    half = math.tan(math.pi * 0.475) * sd / math.sqrt(2)
    assert comp.ci == pytest.approx((0.12 - half, 0.12 + half))
    t = 0.12 / (sd / math.sqrt(2))  # 6.0; with 1 degree of freedom p = 1 - 2 atan(t) / pi
    assert comp.p == pytest.approx(1 - 2 * math.atan(t) / math.pi)
    assert summarize(list(config.values())).n == 3  # the config's own interval keeps all its seeds


def test_missing_seeds_leave_one_or_no_pair() -> None:
    assert compare({0: 0.6, 2: 0.7}, {0: 0.5, 1: 0.5}, ACC).seeds == [0]
    none = compare({2: 0.7}, {0: 0.5, 1: 0.5}, ACC)
    assert none.seeds == [] and none.diff is None and none.outcome == "not paired"
    assert "no seed in common" in none.verdict
    assert compare({}, {0: 0.5}, ACC).verdict == "not compared: no value recorded"  # e.g. never scored


def test_a_constant_metric_divides_nothing_by_zero_and_says_so() -> None:
    summary = summarize([1.0, 1.0, 1.0], ACC)
    assert summary.std == 0.0 and summary.ci == (1.0, 1.0) and "zero variance" in summary.note
    same = compare({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0}, ACC)
    assert same.diff == 0.0 and same.p is None and same.outcome == "no difference"
    assert same.verdict.startswith("no detectable difference: identical on all 2 seeds (zero variance")
    # +0.1 on both seeds (to rounding): no spread is no certainty (a point is one image of 100); the
    # sign test says 2 seeds of one sign are p = 0.5, and 6 are the fewest that pass at 5%
    shifted = compare({0: 0.9, 1: 0.8}, {0: 0.8, 1: 0.7}, ACC)
    assert shifted.p == 0.5 and shifted.ci is None and shifted.outcome == "unclear"
    assert shifted.verdict == ("no detectable difference with n=2 seeds (+10.00 points on every one of 2 seeds (zero "
                               "spread: no t interval; sign test p=0.5)); the same sign on 6 seeds would be one")
    six = compare({s: 0.9 for s in range(6)}, {s: 0.8 for s in range(6)}, ACC)
    assert six.outcome == "better" and six.p == pytest.approx(0.03125) and six.verdict.startswith("better: +10.00")


def test_seeds_for_80_percent_power() -> None:
    # G*Power's table for a two-sided paired t-test at alpha 0.05 and power 0.80:
    # dz 0.5 -> 34 pairs (power 0.808), dz 0.8 -> 15, dz 1.0 -> 10;
    # the normal approximation ((1.960 + 0.842) / dz)^2 + 1.96^2 / 2 gives 33.3, 14.2, 9.8
    assert [seeds_for_power(d) for d in (0.5, 0.8, 1.0)] == [34, 15, 10]
    assert paired_power(0.5, 34) == pytest.approx(0.8078, abs=5e-4)
    assert paired_power(0.5, 33) < 0.80 <= paired_power(0.5, 34)
    assert seeds_for_power(0.0) is None and seeds_for_power(0.01) is None  # beyond 1000 seeds


def test_no_detectable_difference_names_the_seeds_that_would_detect_it() -> None:
    # differences 0.10 and 0.02: mean 0.06, sd 0.0566, dz 1.06: between G*Power's dz 1.0 (10 pairs) and
    # dz 1.2 (8 pairs; the normal approximation, 8.9, runs low at so few pairs)
    comp = compare({0: 0.60, 1: 0.52}, {0: 0.50, 1: 0.50}, ACC)
    assert comp.outcome == "unclear" and comp.seeds_needed == 10
    assert comp.verdict.startswith("no detectable difference with n=2 seeds (+6.00 points")
    assert f"about {comp.seeds_needed} seeds would detect 6.00 points at 80% power" in comp.verdict


def run(job_id: int, seed: int, acc: list[float], loss: list[float] | None = None, classes: int = 0,
        **spec: object) -> RunRecord:
    model = {"arch": "resnet50", "norm": spec.pop("norm", None), "groups": spec.pop("groups", 1)}
    epochs = [{"epoch": i + 1, "train_loss": (loss or [0.3] * len(acc))[i], "val_loss": 0.4, "val_acc": a,
               "images_per_s": 100.0, "seconds": 1.0} for i, a in enumerate(acc)]
    return RunRecord(id=job_id, status="succeeded", spec={"model": model, "data": "/d", "lr": 0.001, "seed": seed,
                                                          **spec},
                     model_info={"norm": "bn", "gmacs": 0.3}, result={"classes": [f"c{i}" for i in range(classes)]},
                     worker_host="h:1", started_at=None,
                     finished_at=None, epochs=epochs)


def test_any_spec_field_separates_configs_and_the_label_names_only_what_varies() -> None:
    # label_smoothing is no grid axis and no name the report knows: it separates configs all the same
    runs = [run(1, 0, [0.5]), run(2, 1, [0.6]), run(3, 0, [0.7], lr=0.01), run(4, 0, [0.8], label_smoothing=0.1)]
    configs = group_runs(runs)
    assert [len(c.runs) for c in configs] == [2, 1, 1]  # the seeds of one spec share a config
    assert config_hash(runs[0].spec) == config_hash(runs[1].spec) != config_hash(runs[2].spec)
    assert [c.label for c in configs] == ["lr=0.001 label_smoothing=0", "lr=0.01 label_smoothing=0",
                                          "lr=0.001 label_smoothing=0.1"]
    # a field left out of a stored spec (submitted before the field existed) is its default: no new config
    assert len(group_runs([run(1, 0, [0.5]), run(2, 1, [0.6], label_smoothing=0.0)])) == 1
    assert configs[0].fields["model.norm"] == "bn"  # a default resolved from what the worker built


def test_baseline_by_fields() -> None:
    configs = group_runs([run(1, 0, [0.5], norm="bn"), run(2, 0, [0.6], norm="ln"),
                          run(3, 0, [0.7], norm="bn", groups=2)])
    assert find_baseline(configs, "norm=bn,groups=1").runs[0].id == 1
    assert find_baseline(configs, "model.norm=ln").runs[0].id == 2
    for text, fragment in (("norm=bn", "matches 2 configs"), ("norm=gn", "no config has"),
                           ("depth=50", "unknown field 'depth'"), ("bn", "FIELD=VALUE")):
        with pytest.raises(OrchError, match=fragment):
            find_baseline(configs, text)
    with pytest.raises(OrchError) as err:  # it listed every config, not the two it matched
        find_baseline(configs, "norm=bn")
    assert "ln" not in str(err.value).split("name more fields, or one of its jobs (job=ID):")[1]
    # a job names its config (with `orch report --job`, every job is one, and fields cannot tell them apart)
    assert find_baseline(configs, "job=3").runs[0].id == 3
    assert find_baseline(group_runs([run(1, 0, [0.5]), run(2, 0, [0.6])], by_job=True), "job=2").runs[0].id == 2
    for text, fragment in (("job=9", "no config holds job 9"), ("job=x", "expected a job id")):
        with pytest.raises(OrchError, match=fragment):
            find_baseline(configs, text)


def test_convergence_flag() -> None:
    def config(acc: list[float], loss: list[float], classes: int = 0) -> Config:
        return group_runs([run(1, 0, acc, loss, classes)])[0]

    assert convergence_note(config([0.5, 0.9, 0.92, 0.92], [0.6, 0.3, 0.2, 0.19])) is None
    rising = convergence_note(config([0.5, 0.52, 0.53, 0.56], [0.69, 0.68, 0.68, 0.67]))
    assert rising and rising.startswith("not converged: verdict may change with more epochs")
    assert "val_acc +3.0 points an epoch since epoch 3" in rising
    falling = convergence_note(config([0.9, 0.95, 0.95, 0.95], [0.6, 0.4, 0.3, 0.2]))
    assert falling and "train loss -0.100 an epoch" in falling
    assert convergence_note(config([1.0, 1.0, 1.0], [0.05, 0.02, 0.01])) is None  # near 0 is not "falling"
    assert "one epoch" in (convergence_note(config([0.9], [0.3])) or "")
    # the demo's LayerNorm on 2 classes: flat at the end of a cosine schedule, but its loss has barely
    # left chance level (ln 2 = 0.693); 0.8 x ln 2 = 0.555 is the line
    stuck = convergence_note(config([0.5, 0.5, 0.565, 0.525], [1.525, 0.709, 0.691, 0.686], classes=2))
    assert stuck and "train loss 0.686 still near chance: within 20% of ln(2) = 0.693" in stuck
    assert convergence_note(config([0.5, 0.8, 0.85, 0.85], [0.69, 0.6, 0.55, 0.54], classes=2)) is None
    assert "near chance" in (convergence_note(config([0.2, 0.3, 0.3], [2.0, 1.9, 1.9], classes=10)) or "")
    # a loss over chance level's is not "near" it (a GroupNorm run read "1.061 still near chance, ln(2) = 0.693")
    above = convergence_note(config([0.5, 0.5, 0.5], [1.2, 1.1, 1.061], classes=2)) or ""
    assert "train loss 1.061 still above chance's ln(2) = 0.693" in above
    # a run that blew up (--lr 10): one epoch read only "no trend to judge"
    blown = convergence_note(config([0.5], [22209.1], classes=2)) or ""
    assert "change that (train loss 2.221e+04 at epoch 1, more than 100 x chance's ln(2) = 0.693; a lower --lr)" in blown
    rising = convergence_note(config([0.6, 0.5, 0.5], [0.6, 9.0, 40.0], classes=2)) or ""
    assert "change that (train loss 40 at epoch 3, up from 0.6 at epoch 1, above 3 x chance's ln(2) = 0.693" in rising
    # a first epoch of ResNet-50 with LayerNorm on 2 classes averaged 7.06 and learned after: not diverged
    assert "diverged" not in (convergence_note(config([0.5], [7.062], classes=2)) or "")
    assert "diverged" not in (convergence_note(config([0.5, 0.5], [7.0, 1.5], classes=2)) or "")
    # said apart from "not converged: verdict may change with more epochs", which more epochs do not mend
    assert blown.startswith("diverged: its numbers are no measure of the config, and more epochs will not change")


def test_a_comparison_with_a_diverged_config_says_it_compares_no_result() -> None:
    """`lr=10 vs lr=0.001: no detectable difference` read as a finding about the lr; its conv column
    said NO, as a healthy short run's does."""
    from orchestrator.analysis.rows import display_rows, verdict_lines

    runs = [run(1, 0, [0.6, 0.7], [0.6, 0.5], classes=2, lr=0.001), run(2, 1, [0.62, 0.72], [0.6, 0.5], classes=2, lr=0.001),
            run(3, 0, [0.5, 0.5], [900.0, 1049.0], classes=2, lr=10), run(4, 1, [0.5, 0.6], [800.0, 999.0], classes=2, lr=10)]
    analysis = analyse(runs, "val_acc")
    lines = verdict_lines(analysis)
    compared = next(line for line in lines if line.startswith("lr=10 vs lr=0.001: "))
    assert compared.endswith(" (but lr=10 diverged: this compares no result)"), compared
    assert {row["config"]: row["conv"] for row in display_rows(analysis)}["lr=10"] == "DIV"


def test_the_baseline_defaults_to_the_studys_first_config() -> None:
    """Chosen before the results (the first value of each axis as listed), not the best config: that
    one, picked after the fact, made the others look worse than they are."""
    runs = [run(1, 0, [0.5], norm="ln"), run(2, 1, [0.56], norm="ln"), run(3, 0, [0.9], norm="bn"),
            run(4, 1, [0.95], norm="bn")]
    analysis = analyse(runs, "val_acc")
    assert analysis.baseline.config.label == "norm=ln" and analysis.baseline.rank == 2
    assert analysis.baseline_how == "the study's first config, chosen before the results"
    better = analysis.results[0]
    assert better.comparison.diff == pytest.approx(0.395) and better.comparison.outcome == "better"
    by_loss = analyse(runs, "val_loss", baseline="norm=ln")
    assert by_loss.baseline.config.label == "norm=ln" and by_loss.baseline_how == "--baseline"


def test_several_comparisons_are_adjusted_together_by_holm() -> None:
    """Three configs against one baseline at 5% each called one of them better or worse in a study
    where none differs up to 10% of the time; Holm's adjustment keeps that at 5% for the study."""
    from orchestrator.analysis.stats import holm

    adjusted = holm([0.01, 0.04, 0.03, None])
    assert [a.p if a else None for a in adjusted] == pytest.approx([0.03, 0.06, 0.06, None])
    assert {a.family for a in adjusted if a} == {3}
    assert holm([0.01, None]) == [None, None]  # one comparison: nothing to adjust
    # two configs against a baseline, differences 0.03/0.04/0.035 (t = 0.035 / (0.005 / sqrt 3) = 12.12,
    # p = 1 - t / sqrt(2 + t^2) = 0.0067) and 0.02/0.01/0.05: Holm doubles the smaller p (0.013, still
    # better) and keeps the larger as it is, or at least 0.013
    base = [run(i + 1, i, [a], norm="bn") for i, a in enumerate([0.50, 0.60, 0.70])]
    up = [run(i + 4, i, [a], norm="gn") for i, a in enumerate([0.53, 0.64, 0.735])]
    noisy = [run(i + 7, i, [a], norm="ln") for i, a in enumerate([0.52, 0.61, 0.75])]
    analysis = analyse(base + up + noisy, "val_acc")
    by_label = {r.config.label: r.comparison for r in analysis.results}
    gn, ln = by_label["norm=gn"], by_label["norm=ln"]
    assert gn.outcome == "better" and gn.p_adjusted == pytest.approx(2 * gn.p)
    assert "p=0.0067, Holm-adjusted over 2 comparisons p=0.013" in gn.verdict
    assert ln.outcome == "unclear" and ln.p_adjusted == pytest.approx(max(ln.p, 2 * gn.p))
    # two p-values of 0.035 (differences 0.02/0.03/0.04: t = 3 sqrt 3, p = 1 - t / sqrt 29): each "better"
    # alone, neither once the other is in view (Holm: 0.07 both)
    one = [run(i + 10, i, [a], norm="in") for i, a in enumerate([0.52, 0.63, 0.74])]
    other = [run(i + 13, i, [a], norm="gn") for i, a in enumerate([0.54, 0.62, 0.73])]
    lifted = [r.comparison for r in analyse(base + one + other, "val_acc").results if r.comparison.outcome != "baseline"]
    assert [c.p for c in lifted] == pytest.approx([1 - 3 * math.sqrt(3) / math.sqrt(29)] * 2)
    assert [(c.outcome, c.p_adjusted) for c in lifted] == [("unclear", pytest.approx(2 * lifted[0].p))] * 2
    assert compare({0: 0.52, 1: 0.63, 2: 0.74}, {0: 0.5, 1: 0.6, 2: 0.7}, ACC).outcome == "better"  # alone


def test_chance_is_judged_on_the_last_epoch_not_the_best() -> None:
    """The best epoch is picked on the images it is judged on: a config at chance whose epochs wander
    reads 'above chance' by its luckiest epoch (over 10 epochs, 90% of such configs did)."""
    lucky = with_chance(run(1, 0, [0.5, 0.72, 0.5], classes=2), 0.5, 32)  # best 0.72 > 0.673; last 0.5
    assert analyse([lucky], "val_acc").results[0].at_chance is True
    learned = with_chance(run(1, 0, [0.5, 0.6, 0.72], classes=2), 0.5, 32)
    assert analyse([learned], "val_acc").results[0].at_chance is False


def test_unfinished_runs_are_named_under_the_verdicts() -> None:
    from dataclasses import replace

    from orchestrator.analysis.rows import verdict_lines

    runs = [run(1, 0, [0.9], norm="bn"), replace(run(2, 0, [0.5, 0.6], norm="ln"), status="running")]
    lines = verdict_lines(analyse(runs, "val_acc"))
    assert lines[-1] == "note: not finished, so their numbers may change or stop here: jobs 2 (running)"
    assert "norm=ln vs norm=bn: -30.00 points on the one common seed (0)" in lines[1]


def test_an_interval_cut_at_the_metrics_range_says_so() -> None:
    """'95% CI [-100.00, +100.00]' read as a real interval; the t interval was [-110.9, +100.9]."""
    from orchestrator.analysis.stats import CUT, compare, summarize
    from orchestrator.analysis.study import scale_of

    accuracy = scale_of("val_acc")
    assert summarize([0.5, 0.95], accuracy).note == CUT  # mean 0.725 +- 2.86: cut at 0 and 1
    assert summarize([0.70, 0.72], accuracy).note == ""
    wide = compare({0: 0.5, 1: 0.6}, {0: 0.95, 1: 0.4}, accuracy)
    assert "(cut at the largest difference possible)" in wide.verdict


def with_chance(record: RunRecord, majority: float = 0.5, images: int = 32) -> RunRecord:
    from dataclasses import replace

    return replace(record, result={**record.result, "val_majority": majority, "val_images": images})


def test_a_study_where_nothing_learned_says_its_ranking_says_nothing() -> None:
    """Every config at chance: 'the best config' and its comparisons are noise, said before them."""
    from orchestrator.analysis.rows import data_rows, verdict_lines

    runs = [with_chance(run(i, i % 3, [a], norm=n)) for i, (n, a) in
            enumerate([("bn", 0.5), ("bn", 0.53), ("bn", 0.47), ("ln", 0.5), ("ln", 0.56), ("ln", 0.5)])]
    analysis = analyse(runs, "val_acc")
    lines = verdict_lines(analysis)
    assert lines[1] == ("note: no config is clearly above chance level, 50.0% (the most common class, judged on each "
                        "run's last epoch over its validation images, seeds that agree counting as one run), with "
                        "both configs in view: the ranking and the comparisons may be noise")
    assert [row["at_chance"] for row in data_rows(analysis)] == [True, True]


def test_an_interval_counts_the_validation_images_sampling_error() -> None:
    """Two seeds at 68% each on 100 images read "68.0..68.0": seeds that agree measured the same images,
    and 100 others would move one run by about 9 points. Seeds that differ more than their images
    allow keep their own t interval."""
    from orchestrator.analysis.rows import data_rows, verdict_lines

    agree = [with_chance(run(i, i, [0.68], norm="bn"), 0.5, 100) for i in range(2)]
    spread = [with_chance(run(10 + i, i, [a], norm="ln"), 0.5, 100) for i, a in enumerate([0.55, 0.95])]
    analysis = analyse(agree + spread, "val_acc")
    by_label = {r.config.label: r.summary for r in analysis.results}
    right = (68 + 2) / (100 + 4)  # Agresti-Coull's estimate of the share right
    half = 1.96 * (right * (1 - right) / 100) ** 0.5  # binomial: the seeds' spread is 0
    assert by_label["norm=bn"].ci == pytest.approx((0.68 - half, 0.68 + half))
    assert by_label["norm=ln"].ci == (0.0, 1.0)  # the t interval (12.7 x 0.2 / sqrt 2), cut to 0..100%: wider
    rows = {row["config"]: row for row in data_rows(analysis)}
    assert rows["norm=bn"]["val_acc_ci95_low"] == pytest.approx(0.68 - half) and rows["norm=bn"]["val_acc_std"] == 0
    assert ("note: the 95% interval counts the sampling error of the 100 validation images, wider than the seeds' "
            "spread (norm=bn)") in verdict_lines(analysis)
    # a loss has no images' binomial error: its seeds' interval is left as it was (every run's val_loss is 0.4)
    assert {r.summary.ci for r in analyse(agree + spread, "val_loss").results} == {(0.4, 0.4)}
    assert [r.summary.ci for r in analyse([run(1, 0, [0.68]), run(2, 1, [0.68])], "val_acc").results] == [(0.68, 0.68)]
    # every image right on both seeds (the demo's BatchNorm, 200 of 200): not a point at 100%
    perfect = [with_chance(run(20 + i, i, [1.0], norm="bn"), 0.5, 200) for i in range(2)]
    low, high = analyse(perfect, "val_acc").results[0].summary.ci or (0.0, 0.0)
    assert high == 1.0 and low == pytest.approx(1 - 1.96 * ((202 / 204) * (2 / 204) / 200) ** 0.5)  # 98.6%


def test_only_the_configs_at_chance_are_named() -> None:
    from orchestrator.analysis.rows import verdict_lines

    learned = [with_chance(run(i, i, [a], norm="bn"), 0.25, 40) for i, a in enumerate([0.9, 0.92, 0.88])]
    stuck = [with_chance(run(10 + i, i, [a], norm="ln"), 0.25, 40) for i, a in enumerate([0.2, 0.35, 0.3])]
    analysis = analyse(learned + stuck, "val_acc")
    assert [r.at_chance for r in analysis.results] == [False, True]
    assert ("note: not clearly above chance level, 25.0% (the most common class, judged on each run's last epoch "
            "over its validation images, seeds that agree counting as one run): norm=ln") in verdict_lines(analysis)
    assert analyse(learned + stuck, "val_loss").chance is None  # judged on accuracy only


def test_one_seed_against_chance_is_a_binomial_test_over_the_validation_images() -> None:
    """32 images at chance 0.5: the standard error is sqrt(0.25 / 32) = 0.0884, so the line is
    0.5 + 1.96 x 0.0884 = 0.673; without the count, 1/classes and the mean alone."""
    def judged(acc: float, **chance: float) -> bool | None:
        return analyse([with_chance(run(1, 0, [acc], classes=2), **chance)], "val_acc").results[0].at_chance

    assert judged(0.67) is True and judged(0.68) is False
    assert judged(0.67, images=1000) is False  # 0.5 + 1.96 x 0.0158 = 0.531
    older = analyse([run(1, 0, [0.3], classes=4)], "val_acc")  # recorded before val_majority was
    assert older.chance and older.chance.level == 0.25 and older.chance.how == "1/4 classes"
    assert older.results[0].at_chance is False
    assert analyse([run(1, 0, [0.3])], "val_acc").results[0].at_chance is None  # no class count: not judged



def test_the_study_wide_warning_counts_the_studys_configs() -> None:
    """Each config is judged at 1.96; "no config learned" needs every one flagged, and with 9 configs
    at chance one cleared 1.96 by luck in 24% of studies, so the warning vanished. The study-wide claim
    uses Bonferroni's line over the configs (2.77 for 9)."""
    from orchestrator.analysis.chance import family_z
    from orchestrator.analysis.rows import verdict_lines

    assert family_z(1) == pytest.approx(1.96, abs=1e-3) and family_z(9) == pytest.approx(2.77, abs=0.01)
    # 9 configs x 1 seed at chance on 100 images; one at 60% (z = 2.0: above 1.96, below 2.77)
    runs = [with_chance(run(i + 1, 0, [0.5], lr=0.001 * (i + 1)), 0.5, 100) for i in range(8)]
    runs.append(with_chance(run(9, 0, [0.6], lr=0.01), 0.5, 100))
    analysis = analyse(runs, "val_acc")
    assert [r.at_chance for r in analysis.results].count(False) == 1 and analysis.nothing_learned
    assert verdict_lines(analysis)[1].startswith("note: no config is clearly above chance level, 50.0%")


def test_seeds_that_spread_more_than_their_images_allow_are_judged_by_their_spread() -> None:
    """Seeds whose accuracy spreads more than 100 images allow (s = 0.06 against the binomial's 0.05)
    are judged by their spread: error 0.06 / sqrt(3) = 0.035, line 0.568, mean 0.56 at chance."""
    spread = [with_chance(run(i + 1, i, [a]), 0.5, 100) for i, a in enumerate([0.50, 0.56, 0.62])]
    assert analyse(spread, "val_acc").results[0].at_chance is True


def test_seeds_that_agree_are_not_more_evidence_than_one_run() -> None:
    """Seeds within a point of each other on 100 images (s = 0.01 where independent seeds spread by
    0.05) make nearly the same mistakes: error sqrt(0.0025 - 0.0001 + 0.0001 / 3) = 0.0493, line
    0.597, so 0.59 is at chance (pooled as 300 images it was above: line 0.557). Seeds that agree
    exactly are one run: 56% of 100 is at chance however many seeds repeat it."""
    def judged(accs: list[float]) -> bool | None:
        runs = [with_chance(run(i + 1, i, [a]), 0.5, 100) for i, a in enumerate(accs)]
        return analyse(runs, "val_acc").results[0].at_chance

    assert judged([0.58, 0.59, 0.60]) is True and judged([0.61, 0.62, 0.63]) is False
    assert judged([0.56] * 5) is True and judged([0.56]) is True and judged([0.60] * 5) is False


def test_chance_is_called_above_in_at_most_its_share_whether_seeds_share_mistakes_or_not() -> None:
    """2,000 simulated configs at chance (3 seeds, 100 images, level 0.5) whose seeds make the same
    mistakes (one Binomial draw for all), and 2,000 whose seeds err independently: each called
    "above chance" in at most the one-sided 2.5% and its sampling error. Pooling every seed's images
    called the first kind above in 13%."""
    import random

    from orchestrator.analysis.chance import Chance, at_chance

    rng = random.Random(11)
    chance = Chance(0.5, 100, "the most common class")

    def above(accs: list[float]) -> bool:
        return at_chance(chance, summarize(accs, ACC)) is False

    def draw() -> float:
        return sum(rng.random() < 0.5 for _ in range(100)) / 100

    shared = sum(above([draw()] * 3) for _ in range(2000)) / 2000
    independent = sum(above([draw() for _ in range(3)]) for _ in range(2000)) / 2000
    assert shared <= 0.035 and independent <= 0.035, (shared, independent)


def test_seeds_pool_their_validation_images_against_chance() -> None:
    """Three seeds at 67/57/75% of 100 images were 'not clearly above 50%' (their t interval with two
    degrees of freedom, 43.9..88.7, reached it) while one of them alone was above; their spread is
    that of independent seeds, so they pool (error 0.052, line 0.602)."""
    def judged(accs: list[float]) -> bool | None:
        runs = [with_chance(run(i + 1, i, [a]), 0.5, 100) for i, a in enumerate(accs)]
        return analyse(runs, "val_acc").results[0].at_chance

    assert judged([0.67, 0.57, 0.75]) is False and judged([0.67]) is False
    assert judged([0.56, 0.56]) is True


def test_a_one_seed_first_config_is_not_the_baseline() -> None:
    """A one-seed baseline leaves every comparison one seed to pair: the first config with half the
    most seeds (and 2) is it; one cancelled run of the first config does not move it."""
    from orchestrator.analysis.rows import verdict_lines

    lucky = [run(0, 0, [0.9], norm="gn")]
    four = [run(i + 1, i, [a], norm="bn") for i, a in enumerate([0.50, 0.55, 0.60, 0.57])]
    lower = [run(i + 5, i, [a], norm="ln") for i, a in enumerate([0.40, 0.46, 0.49, 0.47])]
    analysis = analyse(lucky + four + lower, "val_acc")
    assert [r.config.label for r in analysis.results] == ["norm=gn", "norm=bn", "norm=ln"]
    assert analysis.baseline.config.label == "norm=bn"
    lines = verdict_lines(analysis)
    assert lines[0].startswith("baseline: norm=bn (the first config with at least 2 seeds (half the most any config "
                               "has, and 2 to pair), chosen before the results);")
    assert "norm=ln vs norm=bn: worse: -10.00 points" in lines[2]
    assert analyse(four + lower, "val_acc").baseline_how == "the study's first config, chosen before the results"
    # the first config with one run of its four cancelled: still the baseline (it was a diverged lr=10)
    assert analyse(four[:3] + lower, "val_acc").baseline.config.label == "norm=bn"
    assert analyse(four[:1] + lower, "val_acc").baseline.config.label == "norm=ln"  # one seed: too few


def test_images_per_s_and_a_loss_are_never_below_zero() -> None:
    """Four noisy seeds of images/s gave the interval -2.0..45.6, and the chart's bar crossed 0."""
    from orchestrator.analysis.study import scale_of

    summary = summarize([5.0, 10.0, 40.0, 32.1], scale_of("images_per_s"))
    assert summary.ci is not None and summary.ci[0] == 0.0 and summary.ci[1] > 40
    assert summary.note == "the 95% interval is cut at 0, below which the metric cannot go"
    assert summarize([0.3, 0.31, 0.32], scale_of("val_loss")).note == ""  # far from 0: nothing cut
    wide = compare({0: 5.0, 1: 40.0}, {0: 30.0, 1: 10.0}, scale_of("images_per_s"))
    assert wide.ci is not None and wide.ci[0] < -100  # a difference of throughputs may be negative


def test_a_test_accuracy_from_some_seeds_says_how_many() -> None:
    """'n=2' stood beside a test % that one scored job gave."""
    from dataclasses import replace

    from orchestrator.analysis.rows import display_rows

    runs = [replace(run(1, 0, [0.9]), test_acc=0.88), run(2, 1, [0.92])]
    (row,) = display_rows(analyse(runs, "val_acc"))
    assert (row["n"], row["test %"]) == (2, "88.0 (n=1)")
    both = [replace(run(1, 0, [0.9]), test_acc=0.88), replace(run(2, 1, [0.92]), test_acc=0.9)]
    assert display_rows(analyse(both, "val_acc"))[0]["test %"] == "89.0 ± 1.4"


def test_the_charts_draw_chance_level_on_a_validation_accuracy(tmp_path: Path) -> None:
    """A study where nothing learned drew its 50% bars like results: chance level is a dotted line."""
    from orchestrator.analysis.charts import SINGLE_CHARTS, save

    runs = [with_chance(run(i + 1, i, [0.5, 0.52], norm=n)) for i, n in enumerate(["bn", "bn", "ln", "ln"])]
    for chart in ("final", "curves", "overview"):
        figure = SINGLE_CHARTS[chart](analyse(runs, "val_acc"))
        labels = [text for ax in figure.axes for text in ax.texts if text.get_text().startswith("chance")]
        assert {label.get_text().replace("\n", " ") for label in labels} == {"chance 50%"}, chart
        assert len(labels) == (2 if chart == "overview" else 1), chart  # its panels: final and curves
        if chart != "final":  # beside the curves' axis, not over the end of a curve that finished near chance
            assert labels[-1].xy[0] == 1 and labels[-1].get_ha() == "left", chart
        save(figure, tmp_path / f"{chart}.svg")
        assert "chance" in (tmp_path / f"{chart}.svg").read_text(), chart
    save(SINGLE_CHARTS["final"](analyse(runs, "val_loss")), tmp_path / "loss.svg")
    assert "chance" not in (tmp_path / "loss.svg").read_text()  # a loss's axis has no such line


def test_single_jobs_are_compared_by_their_difference_not_by_seed() -> None:
    """`orch report --job 7,8,19` paired a resnet18 with a mobilenet "on the one common seed (0)", and
    left job 8 (seed 1) "not compared: no seed in common with the baseline"."""
    jobs = [run(7, 0, [0.8], norm="bn"), run(8, 1, [0.7], norm="ln"), run(19, 0, [0.55], norm="in")]
    analysis = analyse(jobs, "val_acc", by_job=True)
    verdicts = {r.config.runs[0].id: r.comparison.verdict for r in analysis.results}
    assert analysis.baseline.config.runs[0].id == 7 and analysis.baseline_how == "the lowest job id, chosen before the results"
    assert verdicts[8] == "-10.00 points: one run each, no interval or p-value (a study's seeds give them)"
    assert verdicts[19].startswith("-25.00 points: one run each")
    assert all(r.comparison.p_adjusted is None for r in analysis.results)


def test_a_baseline_without_the_metric_says_so() -> None:
    from orchestrator.analysis.study import scale_of

    assert compare({0: 0.9}, {}, scale_of("test_acc")).verdict == "not compared: the baseline has no value of this metric"


def test_seeds_for_power_and_the_sign_test_count_the_studys_comparisons() -> None:
    """With Holm, the smallest p must pass 5% / m: 18 seeds for a 1-point difference alone, more among
    two comparisons; the same sign on 6 seeds alone, on 7 among two."""
    from orchestrator.analysis.stats import Adjusted, sign_seeds

    assert (sign_seeds(), sign_seeds(0.025)) == (6, 7)
    assert seeds_for_power(0.8, 0.025) > seeds_for_power(0.8) == 15
    alone = compare({0: 0.5, 1: 0.62}, {0: 0.5, 1: 0.60}, ACC)  # differences 0 and 0.02: the demo's in and bn
    among = compare({0: 0.5, 1: 0.62}, {0: 0.5, 1: 0.60}, ACC, Adjusted(1.0, 2))
    assert alone.seeds_needed is not None and among.seeds_needed is not None and among.seeds_needed > alone.seeds_needed
    assert (alone.seeds_needed, among.seeds_needed) == (18, 22)
    assert among.verdict.endswith("about 22 seeds would detect 1.00 points at 80% power among 2 comparisons")
    same = compare({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6}, ACC, Adjusted(1.0, 2))
    assert same.verdict.endswith("the same sign on 7 seeds would be one")


def test_a_study_of_equal_configs_reaches_a_verdict_at_most_5_percent_of_the_time() -> None:
    """What the baseline line promises with Holm: 400 simulated studies of 4 equal configs x 3 seeds
    (a shared per-seed effect plus noise, as a seed's data order and initial draw give), through
    `analyse` with its default baseline. Unadjusted, about 14% of such studies had a verdict."""
    import random

    rng = random.Random(7)
    studies, with_verdict = 400, 0
    for _ in range(studies):
        shared = [rng.gauss(0, 0.015) for _ in range(3)]
        runs = [run(10 * c + s + 1, s, [0.8 + shared[s] + rng.gauss(0, 0.013)], lr=0.001 * (c + 1))
                for c in range(4) for s in range(3)]
        outcomes = {r.comparison.outcome for r in analyse(runs, "val_acc").results}
        with_verdict += bool(outcomes & {"better", "worse"})
    assert with_verdict / studies <= 0.07, with_verdict  # 5% and its sampling error over 400 studies


def test_a_diverged_loss_reads_in_significant_digits() -> None:
    """--metric val_loss on a study with a diverged lr printed 3694007418.8800 ± 269889692.8690."""
    from dataclasses import replace

    from orchestrator.analysis.rows import display_rows, verdict_lines

    def with_loss(record: RunRecord, loss: float) -> RunRecord:
        return replace(record, epochs=[{**e, "val_loss": loss} for e in record.epochs])

    runs = [with_loss(run(1, 0, [0.5], lr=0.001), 0.69), with_loss(run(2, 1, [0.5], lr=0.001), 0.71),
            with_loss(run(3, 0, [0.5], lr=10.0), 3.694e9), with_loss(run(4, 1, [0.5], lr=10.0), 3.5e9)]
    rows = {row["config"]: row for row in display_rows(analyse(runs, "val_loss"))}
    assert rows["lr=10"]["val_loss"] == "3.597e+09 ± 1.372e+08" and rows["lr=0.001"]["val_loss"] == "0.7000 ± 0.0141"
    assert rows["lr=10"]["Δ"] == "+3.597e+09"
    assert "worse: +3.597e+09" in " ".join(verdict_lines(analyse(runs, "val_loss")))


def test_the_pages_curves_caption_says_what_a_line_is() -> None:
    """A study of one seed per config showed 'one run per line' on its chart and 'the mean over seeds'
    under it."""
    from orchestrator.analysis.html import page

    one_each = analyse([run(1, 0, [0.5, 0.6], norm="bn"), run(2, 0, [0.55, 0.7], norm="ln")], "val_acc")
    html, drawn = page(one_each)
    assert "curves" in drawn and "<figcaption>Learning curves: one run per line.</figcaption>" in html
    seeds = analyse([run(1, 0, [0.5, 0.6], norm="bn"), run(2, 1, [0.55, 0.7], norm="bn")], "val_acc")
    assert "Learning curves: mean over seeds, band from the lowest to the highest seed." in page(seeds)[0]


def test_a_study_of_one_config_says_there_is_nothing_to_compare() -> None:
    """It printed the baseline's boilerplate ("paired by seed, 95% intervals...") with nothing to pair."""
    from orchestrator.analysis.rows import verdict_lines

    lines = verdict_lines(analyse([run(1, 0, [0.6], norm="bn"), run(2, 1, [0.7], norm="bn")], "val_acc"))
    assert lines[0] == "one config, all runs: nothing to compare it with (its mean and 95% interval are above)"
    # one scored seed of two (--metric test_acc): the table's interval is "-", and the note claimed one
    lone = verdict_lines(analyse([run(1, 0, [0.6], norm="bn")], "val_acc"))
    assert lone[0] == "one config, all runs: nothing to compare it with (one run: its value is above, with no interval)"


def test_a_delta_over_fewer_seeds_than_the_means_is_said() -> None:
    """bn 70.0 and gn 50.5 with a Δ of +19.0: Δ pairs seeds both ran, the means are over every seed."""
    from orchestrator.analysis.rows import verdict_lines

    bn = [run(i + 1, i, [a], norm="bn") for i, a in enumerate([0.70, 0.72, 0.68])]
    gn = [run(i + 10, i, [a], norm="gn") for i, a in enumerate([0.50, 0.51])]
    lines = verdict_lines(analyse(bn + gn, "val_acc"))
    assert ("note: Δ pairs the seeds both configs ran, so it is not the difference of the means where one has "
            "seeds the other lacks: norm=gn: seeds 0,1 of its 0,1 and the baseline's 0,1,2") in lines
    assert not any(line.startswith("note: Δ pairs") for line in verdict_lines(analyse(bn + gn[:1] + [
        run(12, 2, [0.49], norm="gn")] + [run(13, 1, [0.5], norm="gn")], "val_acc")))


def test_the_csv_names_each_varying_field_once() -> None:
    """`field_norm` beside `norm` said the same twice; a varying field with no column of its own keeps one."""
    from orchestrator.analysis.rows import csv_rows

    runs = [run(1, 0, [0.5], norm="bn"), run(2, 0, [0.6], norm="ln", label_smoothing=0.1)]
    row = csv_rows(analyse(runs, "val_acc"))[0]
    assert "norm" in row and "field_norm" not in row and "field_label_smoothing" in row


def test_the_pages_runs_table_counts_attempts_where_a_run_had_more_than_one() -> None:
    """A run taken over after its worker died showed only the worker that finished it."""
    from dataclasses import replace

    from orchestrator.analysis.html import page

    plain = analyse([run(1, 0, [0.5, 0.6], norm="bn"), run(2, 1, [0.55, 0.7], norm="bn")], "val_acc")
    assert "<th>attempts</th>" not in page(plain)[0]
    taken_over = analyse([run(1, 0, [0.5, 0.6], norm="bn"), replace(run(2, 1, [0.55, 0.7], norm="bn"), attempts=2)],
                         "val_acc")
    html = page(taken_over)[0]
    runs = html.split('id="runs"')[1].split("</table>")[0]
    assert runs.count("<tr>") == 3 and "<th>attempts</th></tr>" in runs  # the last column, each row's count
    assert '<td class="num">1</td></tr><tr><td class="num">2</td>' in runs and runs.endswith('<td class="num">2</td></tr></tbody>')


def test_the_holm_family_says_which_comparisons_it_holds() -> None:
    """"p adjusted for the 2 comparisons" sat above 3 comparisons: one of identical seeds has no p-value."""
    from orchestrator.analysis.rows import verdict_lines

    runs = [run(1, 0, [0.5], norm="bn"), run(2, 1, [0.5], norm="bn"), run(3, 0, [0.5], norm="ln"),
            run(4, 1, [0.5], norm="ln"), run(5, 0, [0.7], norm="in"), run(6, 1, [0.8], norm="in"),
            run(7, 0, [0.6], norm="gn"), run(8, 1, [0.62], norm="gn")]
    from shared.store.report_reads import StudyRecord

    lines = verdict_lines(analyse(runs, "val_acc", StudyRecord(1, "norms", {}, None)))
    assert "p adjusted for the 2 comparisons that have a p-value together (Holm)" in lines[0], lines[0]
    assert any(line.startswith("norm=ln vs norm=bn: no detectable difference: identical on all 2 seeds")
               for line in lines), lines


def test_the_final_charts_axis_says_what_it_draws() -> None:
    """`orch report --job 1,4,7 --chart final` drew single dots under 'mean, 95% CI, seeds as dots'."""
    from orchestrator.analysis.charts import SINGLE_CHARTS

    seeds = analyse([run(1, 0, [0.5, 0.6], norm="bn"), run(2, 1, [0.55, 0.7], norm="bn")], "val_acc")
    assert SINGLE_CHARTS["final"](seeds).axes[0].get_xlabel() == "val_acc (%): mean, 95% CI, seeds as dots"
    jobs = analyse([run(1, 0, [0.5, 0.6], norm="bn"), run(2, 0, [0.55, 0.7], norm="ln")], "val_acc", by_job=True)
    assert SINGLE_CHARTS["final"](jobs).axes[0].get_xlabel() == "val_acc (%): one run each: no interval"


def test_a_seed_count_plans_for_every_comparison_the_study_makes() -> None:
    """With se identical to the baseline on both seeds (no p-value, so no Holm family), cbam's line said
    "about 8 seeds would detect 2.50 points": with 8 seeds se has a p-value too, and both are adjusted
    together, at 2.5% for the first step: 10 seeds. Here ln is the identical one, gn the gain."""
    base = [run(1, 0, [0.50], norm="bn"), run(2, 1, [0.60], norm="bn")]
    same = [run(3, 0, [0.50], norm="ln"), run(4, 1, [0.60], norm="ln")]
    cbam = [run(5, 0, [0.54], norm="gn"), run(6, 1, [0.61], norm="gn")]
    results = {r.config.label: r.comparison for r in analyse(base + same + cbam, "val_acc").results}
    gain = results["norm=gn"]
    effect = gain.diff / statistics.stdev([0.04, 0.01])
    assert gain.p_adjusted is None  # one comparison has a p-value: nothing to adjust today
    assert gain.seeds_needed == seeds_for_power(effect, 0.025) > seeds_for_power(effect, 0.05)
    assert f"about {gain.seeds_needed} seeds would detect 2.50 points at 80% power among 2 comparisons" in gain.verdict
    alone = next(r.comparison for r in analyse(base + cbam, "val_acc").results if r.config.label == "norm=gn")
    assert alone.seeds_needed == seeds_for_power(effect, 0.05) and "among" not in alone.verdict


def test_a_baseline_chosen_for_its_only_value_says_so() -> None:
    """One run of the study scored: its config is the baseline for --metric test_acc, and the reason
    read "at least 1 seeds (half the most any config has, and 2 to pair)"."""
    from dataclasses import replace

    runs = [run(1, 0, [0.5], norm="bn"), run(2, 1, [0.6], norm="bn"), replace(run(3, 0, [0.7], norm="in"), test_acc=0.51)]
    analysis = analyse(runs, "test_acc")
    assert analysis.baseline.config.label == "norm=in"
    assert analysis.baseline_how == ("the first config with a test_acc value (none has 2 seeds of it), chosen before "
                                     "the results")


def test_the_final_chart_names_configs_without_a_value() -> None:
    """`--metric test_acc --plot` with one run scored drew the others as empty rows under 'one run each'."""
    from dataclasses import replace

    from orchestrator.analysis.charts import SINGLE_CHARTS

    runs = [run(1, 0, [0.5], norm="bn"), replace(run(2, 0, [0.7], norm="in"), test_acc=0.51)]
    ax = SINGLE_CHARTS["final"](analyse(runs, "test_acc")).axes[0]
    assert ax.get_xlabel() == "test_acc (%): one run or none each: no interval"
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["norm=in (baseline) *", "norm=bn * (no value)"]
