"""Next week's axes in the report: attention, the width multiplier and ShuffleNet's group count are
config columns, labels and chart axes like norm and groups, with no report code naming them."""
from __future__ import annotations

from typing import Any

from orchestrator.analysis.charts import groups_chart, width_chart
from orchestrator.analysis.configs import group_runs
from orchestrator.analysis.rows import data_rows
from orchestrator.analysis.study import analyse
from orchestrator.report import config_columns
from shared.store.report_reads import RunRecord


def run(job_id: int, seed: int, acc: float, gmacs: float = 0.3, **model: Any) -> RunRecord:
    epochs = [{"epoch": 1, "train_loss": 0.3, "val_loss": 0.4, "val_acc": acc, "images_per_s": 100.0, "seconds": 1.0}]
    return RunRecord(id=job_id, status="succeeded", spec={"model": {"image_size": 32, **model}, "data": "/d",
                                                          "seed": seed},
                     model_info={"gmacs": gmacs, "params": 1_000_000}, result={}, worker_host="h:1",
                     started_at=None, finished_at=None, epochs=epochs)


def test_attention_is_a_config_column_and_label() -> None:
    runs = [run(i * 2 + seed + 1, seed, 0.5 + 0.1 * i + 0.01 * seed, arch="resnet50", attention=a)
            for i, a in enumerate(("none", "se", "cbam")) for seed in (0, 1)]
    analysis = analyse(runs, "val_acc")
    rows = data_rows(analysis)
    assert [r["config"] for r in rows] == ["attention=cbam", "attention=se", "attention=none"]
    assert [(r["attention"], r["attention_reduction"], r["n"]) for r in rows] == [
        ("cbam", 16, 2), ("se", 16, 2), ("none", None, 2)]  # no reduction without attention
    assert groups_chart(analysis) is None and width_chart(analysis) is None


def test_width_mult_draws_its_own_chart() -> None:
    runs = [run(i + 1, 0, 0.5 + 0.1 * i, gmacs=g, arch="mobilenet_v2", width_mult=w)
            for i, (w, g) in enumerate(((0.5, 0.1), (1.0, 0.3), (1.4, 0.58)))]
    analysis = analyse(runs, "val_acc")
    assert [r["width_mult"] for r in data_rows(analysis)] == [1.4, 1.0, 0.5]
    assert {r["groups"] for r in data_rows(analysis)} == {None}  # a MobileNet has no group count to show
    figure = width_chart(analysis)
    assert figure is not None and groups_chart(analysis) is None
    ticks = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert ticks == ["0.5\n0.1 GMACs", "1\n0.3 GMACs", "1.4\n0.58 GMACs"]


def test_shufflenet_groups_draw_the_groups_chart() -> None:
    runs = [run(i + 1, 0, 0.6, gmacs=0.14, arch="shufflenet_v1", groups=g) for i, g in enumerate((1, 3, 8))]
    analysis = analyse(runs, "val_acc")
    assert sorted(r["config"] for r in data_rows(analysis)) == ["groups=1", "groups=3", "groups=8"]
    assert groups_chart(analysis) is not None


def test_torchvisions_shufflenet_name_is_the_same_config() -> None:
    """A run stored as shufflenet_v2_x1_0 (before width_mult) and one as shufflenet_v2 at 1.0 pool their seeds."""
    configs = group_runs([run(1, 0, 0.5, arch="shufflenet_v2_x1_0"), run(2, 1, 0.6, arch="shufflenet_v2")])
    assert len(configs) == 1 and configs[0].fields["model.width_mult"] == 1.0
    assert config_columns({"model": {"arch": "shufflenet_v2_x1_0"}, "data": "/d"})["model"] == "shufflenet_v2"


def test_a_one_epoch_study_has_whole_epoch_ticks_and_a_one_point_front_is_drawn() -> None:
    """The curves of a one-epoch study had ticks at 0.945, 0.960...; a front of one config (the other
    costs more for the same accuracy) was in the legend with nothing drawn."""
    from orchestrator.analysis.charts import curves_chart, pareto_chart

    runs = [run(i + 1, 0, 0.5, gmacs=g, arch="resnet50", groups=k) for i, (k, g) in enumerate(((1, 1.222), (8, 1.26)))]
    analysis = analyse(runs, "val_acc")
    for ax in curves_chart(analysis).axes:
        low, high = ax.get_xlim()
        assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0]
    figure = pareto_chart(analysis)
    assert figure is not None
    front = [line for line in figure.axes[0].get_lines() if line.get_label() == "Pareto front"]
    assert len(front) == 1 and list(front[0].get_xdata()) == [1.222] and front[0].get_marker() == "o"
    assert len(figure.axes[0].get_xticks()) <= 6
    # costs 0.2% apart (SE beside none) are no trade-off: no chart, as for configs of one cost
    same = [run(i + 1, 0, 0.5 + i / 10, gmacs=g, arch="resnet50", groups=k)
            for i, (k, g) in enumerate(((1, 1.222), (8, 1.224)))]
    assert pareto_chart(analyse(same, "val_acc")) is None


def test_titles_say_which_of_a_runs_values_the_metric_is() -> None:
    """A run's best epoch is not its last: the report said 'val_acc', the chart 'Final val_acc'."""
    from orchestrator.analysis.charts import final_chart
    from orchestrator.analysis.rows import study_title

    runs = [run(i + 1, i, 0.5 + 0.1 * i, arch="resnet18") for i in range(2)]
    analysis = analyse(runs, "val_acc")
    assert study_title(analysis) == "selected jobs: val_acc (best epoch) per job"
    assert final_chart(analysis).axes[0].get_title(loc="left").startswith("val_acc (best epoch) per config")


def test_the_groups_axis_is_named_for_the_models_in_the_study() -> None:
    """A resnet50 study's groups chart said 'ShuffleNet's group count'."""
    def label(arch: str) -> str:
        runs = [run(i + 1, 0, 0.5 + 0.1 * i, arch=arch, groups=g) for i, g in enumerate((1, 8))]
        figure = groups_chart(analyse(runs, "val_acc"))
        assert figure is not None
        return str(figure.axes[0].get_xlabel())

    assert label("resnet50").startswith("groups (cardinality),")
    assert label("shufflenet_v1").startswith("groups (ShuffleNet v1's group count),")
