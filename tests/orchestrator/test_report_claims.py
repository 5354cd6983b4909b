"""What the report's words and charts claim is what they show: every seed a dot, an interval named
only where there is one, the seed count of the verdict in its cell too."""
from __future__ import annotations

from orchestrator.analysis.rows import data_rows
from orchestrator.analysis.study import StudyAnalysis, analyse
from shared.store.report_reads import RunRecord, StudyRecord
from tests.orchestrator.test_report_stats import run

STUDY = StudyRecord(1, "norms", {}, None)


def test_seeds_of_equal_value_are_each_a_dot() -> None:
    """63, 50 and 50 drew two dots under a caption that says each seed is one."""
    from orchestrator.analysis.charts import SINGLE_CHARTS

    runs = [run(1, 0, [0.63], norm="bn"), run(2, 1, [0.50], norm="bn"), run(3, 2, [0.50], norm="bn")]
    ax = SINGLE_CHARTS["final"](analyse(runs, "val_acc", STUDY)).axes[0]
    dots = [tuple(map(float, xy)) for xy in ax.collections[0].get_offsets()]
    assert len(set(dots)) == 3 and sorted(x for x, _ in dots) == [50.0, 50.0, 63.0], dots
    assert all(abs(y - 1) <= 0.3 for _, y in dots)  # on their row


def test_a_need_of_over_1000_seeds_says_so_in_its_cell() -> None:
    """The page's "seeds for 80% power" cell was empty beside a verdict saying "more than 1000"."""
    from orchestrator.analysis.html import page

    runs = [run(1, 0, [0.50], norm="bn"), run(2, 1, [0.601], norm="bn"), run(3, 2, [0.55], norm="bn"),
            run(4, 0, [0.60], norm="in"), run(5, 1, [0.50], norm="in"), run(6, 2, [0.55], norm="in")]
    analysis = analyse(runs, "val_acc", STUDY)
    comp = next(r.comparison for r in analysis.results if r is not analysis.baseline)
    assert "more than 1000 seeds would be needed" in comp.verdict and comp.seeds_needed is None
    html = page(analysis)[0]
    table = html.split('id="comparison"')[1].split("</table>")[0]
    assert "<td>more than 1000</td>" in table
    row = next(r for r in data_rows(analysis) if r["config"] == comp_config(analysis))
    assert row["seeds_for_80_power"] is None and row["seeds_for_80_power_over_max"] is True  # JSON and CSV said null only
    near = analyse([run(1, 0, [0.5], norm="bn"), run(2, 1, [0.5], norm="bn"),
                    run(3, 0, [0.6], norm="in"), run(4, 1, [0.52], norm="in")], "val_acc", STUDY)
    assert '<td class="num">10</td>' in page(near)[0]  # a count still reads as a number
    assert {(r["seeds_for_80_power"], r["seeds_for_80_power_over_max"]) for r in data_rows(near)} == {(None, False), (10, False)}


def comp_config(analysis: StudyAnalysis) -> str:
    return next(r.config.label for r in analysis.results if r is not analysis.baseline)


def test_a_one_seed_study_claims_no_interval() -> None:
    """Its first line said "95% intervals from the t distribution" above a note that n=1 has none."""
    from orchestrator.analysis.html import final_caption
    from orchestrator.analysis.rows import verdict_lines

    one = analyse([run(1, 0, [0.6], norm="bn"), run(2, 0, [0.5], norm="ln")], "val_acc", STUDY)
    first = verdict_lines(one)[0]
    assert first == ("baseline: norm=bn (the study's first config, chosen before the results); paired by seed; "
                     "no config has 2 seeds: no interval or p-value"), first
    assert "interval" not in final_caption(one).split("(no config")[0]
    two = analyse([run(1, 0, [0.6], norm="bn"), run(2, 1, [0.62], norm="bn"), run(3, 0, [0.5], norm="ln"),
                   run(4, 1, [0.55], norm="ln")], "val_acc", STUDY)
    assert "paired by seed, 95% intervals from the t distribution" in verdict_lines(two)[0]
    assert "the mean over seeds with its 95% interval" in final_caption(two)


def test_batchnorm_statistics_still_near_their_start_are_said() -> None:
    """mobilenet_v3_small (torchvision's BatchNorm momentum 0.01) after 21 steps validated at chance, 50%,
    where recomputing its running statistics gave 95%: the report ranked weights that had learned as
    weights that had not, without a word."""
    from dataclasses import replace

    from orchestrator.analysis.rows import verdict_lines

    def stats(record: RunRecord, momentum: float, per_epoch: int) -> RunRecord:
        return replace(record, result={**record.result, "bn_momentum": momentum, "steps_per_epoch": per_epoch})

    runs = [stats(run(1, 0, [0.5, 0.5, 0.5], norm="bn"), 0.01, 7), stats(run(2, 0, [0.9, 0.95, 0.96], norm="gn"), 0.1, 7),
            stats(run(3, 0, [0.8, 0.9, 0.9], norm="in"), 0.01, 100)]
    lines = verdict_lines(analyse(runs, "val_acc", STUDY))
    said = [line for line in lines if "BatchNorm" in line]
    assert said == ["note: norm=bn: its BatchNorm running statistics, which evaluation normalises with, still hold 81% "
                    "of their initial values after 21 steps at momentum 0.01: its accuracy may say little of its weights "
                    "(more steps: more epochs, more images or a smaller --batch-size)"], lines
    assert not [line for line in verdict_lines(analyse(runs, "images_per_s", STUDY)) if "BatchNorm" in line]
