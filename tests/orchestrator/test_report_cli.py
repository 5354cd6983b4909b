"""`orch report` on a 3-norm x 3-group x 2-seed study written straight into the store (no training):
statistics in every format, every chart as PNG and SVG, the offline HTML page, --study by name."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from tests.conftest import Orch
from tests.orchestrator.study_builder import Grid, add_run, build_study, open_home

CHARTS = ("final", "curves", "groups", "pareto")  # what a norms x groups study draws (not "width")


@pytest.fixture
def study(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> tuple[Orch, dict[tuple[str, int, int], int]]:
    store = open_home(orch.home, monkeypatch)
    jobs = build_study(store, Grid(scored={("bn", 1, 0), ("bn", 1, 1)}))
    store.dispose()
    return orch, jobs


def test_json_carries_the_statistics(study: tuple[Orch, dict]) -> None:
    orch, jobs = study
    rows = orch.json_report("--study", "norms-groups")
    assert len(rows) == 9 and [r["rank"] for r in rows] == list(range(1, 10))
    assert {(r["norm"], r["groups"]) for r in rows} == {(n, g) for n in ("bn", "ln", "in") for g in (1, 2, 4)}
    assert all(r["config"] == f"norm={r['norm']} groups={r['groups']}" for r in rows)  # what varies, in spec order
    assert {r["width"] for r in rows if r["groups"] == 2} == {40}
    best, bn1, ln1 = rows[0], _row(rows, "bn", 1), _row(rows, "ln", 1)
    assert (best["norm"], best["groups"], best["vs_baseline"]) == ("bn", 4, "unclear")
    assert bn1["vs_baseline"] == "baseline"  # the study's first config, not its best
    # the builder's curves: bn g4 ends at 0.93 + 0.03 x seed, bn g1 at 0.91 + 0.01 x seed, ln g1 at 0.61 + 0.02 x seed
    assert best["val_acc_mean"] == pytest.approx(0.945) and ln1["val_acc_mean"] == pytest.approx(0.62)
    assert ln1["diff"] == pytest.approx(-0.295) and ln1["paired_seeds"] == [0, 1]
    # p = 0.011 on its own; one of 8 comparisons with two seeds each, it is no verdict (Holm: 8 x 0.011)
    assert ln1["p_value"] < 0.05 <= ln1["p_adjusted"] == pytest.approx(8 * ln1["p_value"])
    # its unadjusted interval excludes 0: the verdict says which p decided it, and that the interval is not adjusted
    assert ln1["verdict"].startswith("no detectable difference once the study's 8 comparisons are counted (-29.50 "
                                     "points, unadjusted 95% CI")
    assert "Holm-adjusted over 8 comparisons" in ln1["verdict"]
    assert ln1["converged"] is False and "not converged" in ln1["convergence"]
    assert bn1["converged"] is True and bn1["test_acc_mean"] == pytest.approx(0.88) and bn1["test_acc_n"] == 2
    assert best["seeds_for_80_power"] >= 2 and "no detectable difference with n=2 seeds" in best["verdict"]
    assert sorted(bn1["job_ids"]) == sorted([jobs[("bn", 1, 0)], jobs[("bn", 1, 1)]])


def test_leaderboard_ranks_every_run_and_shows_the_limit(study: tuple[Orch, dict]) -> None:
    orch, jobs = study
    every = orch.json_report("--limit", "0")
    assert len(every) == len(jobs) == 18 and [r["rank"] for r in every] == list(range(1, 19))
    accs = [r["val_acc"] for r in every]
    assert accs == sorted(accs, reverse=True)
    best = every[0]  # bn g4 seed 1 settles at 0.96 from its second epoch on
    assert (best["norm"], best["groups"], best["seed"], best["epochs"]) == ("bn", 4, 1, 3)
    assert best["val_acc"] == pytest.approx(0.96)
    assert orch.json_report("--limit", "5") == every[:5]
    scored = [r for r in every if r["test_acc"] is not None]
    assert {(r["norm"], r["groups"]) for r in scored} == {("bn", 1)}
    by_loss = orch.json_report("--metric", "val_loss", "--limit", "3")
    assert [r["val_loss"] for r in by_loss] == sorted(r["val_loss"] for r in every)[:3]
    table = orch.run("report", "--limit", "4")
    assert table.returncode == 0 and "the best 4 of 18 runs" in table.stderr


@pytest.mark.parametrize("metric", ["val_acc", "last_val_acc", "val_loss", "test_acc", "images_per_s"])
def test_the_store_ranks_and_cuts_the_leaderboard_as_a_sort_would(study: tuple[Orch, dict], metric: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranked in SQL (orch report reads the shown rows only): best first, the lowest id on a tie, and
    --limit cuts that order; by test_acc, the scored runs only (bn groups 1, seeds 0 and 1)."""
    from orchestrator.metrics import METRICS
    from orchestrator.report import leaderboard

    orch, jobs = study
    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        every, total = leaderboard(s, None, metric, 0)
        top, top_total = leaderboard(s, None, metric, 5)
        study_rows, study_total = leaderboard(s, 1, metric, 3)
    store.dispose()
    sign = -1 if METRICS[metric] else 1
    expected = sorted(every, key=lambda r: (sign * r[metric], r["id"]))
    runs = 2 if metric == "test_acc" else len(jobs)
    assert [r["id"] for r in every] == [r["id"] for r in expected] and total == top_total == runs
    assert [r["rank"] for r in every] == list(range(1, runs + 1))
    assert top == every[:5] and study_rows == every[:3] and study_total == runs  # the one study holds all


def _row(rows: list[dict], norm: str, groups: int) -> dict:
    return next(r for r in rows if r["norm"] == norm and r["groups"] == groups)


def test_baseline_option_and_other_formats(study: tuple[Orch, dict]) -> None:
    orch, _ = study
    rows = orch.json_report("--study", "1", "--baseline", "norm=bn,groups=4")
    assert _row(rows, "bn", 4)["vs_baseline"] == "baseline"
    assert _row(rows, "ln", 1)["diff"] == pytest.approx(-0.325)
    # the label as the report prints it names the config too
    assert orch.json_report("--study", "1", "--baseline", "norm=bn groups=4") == rows
    table = list(csv.DictReader(io.StringIO(orch.run("report", "--study", "norms-groups", "--format", "csv",
                                                     check=True).stdout)))
    assert len(table) == 9 and {"p_value", "diff_ci95_low", "seeds_for_80_power", "verdict"} <= set(table[0])
    md = orch.run("report", "--study", "norms-groups", "--format", "md", check=True).stdout
    assert "| # | config |" in md and "- norm=ln groups=1 vs norm=bn groups=1: no detectable difference" in md
    text = orch.run("report", "--study", "norms-groups", check=True).stdout
    table_lines = [line for line in text.splitlines() if line.startswith(("┃", "│", "┏", "└"))]
    assert table_lines and max(len(line) for line in table_lines) <= 100
    flat = text.replace("\n    ", " ")  # verdict lines wrap to the terminal's width
    assert "baseline: norm=bn groups=1 (the study's first config, chosen before the results)" in flat
    assert "not converged" in flat
    assert orch.json_report("--study", "norms-groups", "--per-job")[0]["id"] >= 1  # one row per job still


def test_each_chart_as_png_and_svg(study: tuple[Orch, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.analysis.charts import CHARTS as DRAW
    from orchestrator.analysis.charts import SINGLE_CHARTS, save
    from orchestrator.analysis.study import analyse
    from shared.store.report_reads import resolve_study, training_runs

    orch, jobs = study
    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        record = resolve_study(s, "norms-groups")
        assert record is not None
        analysis = analyse(training_runs(s, record.id), "val_acc", record)
    store.dispose()
    assert tuple(DRAW) == ("final", "curves", "groups", "width", "pareto")
    assert SINGLE_CHARTS["width"](analysis) is None  # the width multiplier does not vary here
    for chart in (*CHARTS, "overview"):
        figure = SINGLE_CHARTS[chart](analysis)
        assert figure is not None, chart
        for suffix in (".png", ".svg"):
            out = tmp_path / f"{chart}{suffix}"
            save(figure, out)
            data = out.read_bytes()
            assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:2000], data[:200]
            assert len(data) > 5000
    out = tmp_path / "curves.png"  # the command's own path, once
    proc = orch.run("report", "--study", "norms-groups", "--plot", str(out), "--chart", "curves", check=True)
    assert "(curves chart)" in proc.stderr and out.read_bytes().startswith(b"\x89PNG")
    picked = ",".join(str(jobs[k]) for k in (("bn", 1, 0), ("ln", 1, 0), ("in", 4, 1)))
    out = tmp_path / "jobs.svg"
    assert "(curves chart)" in orch.run("report", "--job", picked, "--plot", str(out), check=True).stderr
    assert out.read_text().count(">job ") >= 3  # one labelled curve per job


def test_html_is_offline_and_holds_every_chart_it_names(study: tuple[Orch, dict], tmp_path: Path) -> None:
    orch, _ = study
    out = tmp_path / "report.html"
    proc = orch.run("report", "--study", "norms-groups", "--html", str(out), check=True)
    assert "charts: final, curves, groups, pareto" in proc.stderr
    html = out.read_text()
    assert_offline(html)
    named = re.search(r"charts: (.*?)</p>", html).group(1)  # type: ignore[union-attr]
    names = re.findall(r'href="#chart-(\w+)"', named)
    assert names == list(CHARTS)
    for name in names:
        figure = re.search(rf'<figure id="chart-{name}"[^>]*>(.*?)</figure>', html, re.S)
        assert figure and figure.group(1).lstrip().startswith("<svg"), name
    for fact in ("The answer", "Leaderboard", "Paired comparison", "Runs", "lab-gpu-1", "torch 2.14.1",
                 "not converged: verdict may change", "88.00%", "&quot;norm&quot;: &quot;bn,ln,in&quot;"):
        assert fact in html, fact


def assert_offline(html: str) -> None:
    """No URL but the SVG namespaces, no script or stylesheet to fetch."""
    stripped = re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", html)
    assert not re.search(r"https?://", stripped), re.search(r".{60}https?://.{60}", stripped)
    assert not re.search(r"<script[^>]*\bsrc=", html, re.I)
    assert not re.search(r"<link[^>]*\bhref=", html, re.I)
    assert not re.search(r"""(src|href)=["'](?!#|data:)""", html), "a reference to a file or address"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--study", "nope"], "--study: no study with id or name 'nope'; studies: 1 (norms-groups)"),
    (["--study", "1", "--baseline", "norm=gn"], "--baseline: no config has norm=gn"),
    (["--study", "1", "--plot", "x.pdf"], "--plot: the file must end in .png or .svg"),
    (["--html", "x.html"], "--html: needs --study"),
    (["--study", "1", "--chart", "final"], "--chart: needs --plot"),
    (["--study", "1", "--job", "1"], "--job: give --study or --job, not both"),
    (["--job", "1,x"], "--job: expected job ids"),
    (["--job", "1,99"], "--job: no training job with recorded epochs: 99"),
    (["--limit", "-1"], "--limit: must be 0 (all) or more, got -1"),
])
def test_bad_report_options(study: tuple[Orch, dict], args: list[str], fragment: str) -> None:
    orch, _ = study
    proc = orch.run("report", *args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], proc.stderr


def test_groups_chart_needs_a_study_that_varies_groups(orch: Orch, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    store = open_home(orch.home, monkeypatch)
    build_study(store, Grid(name="norms", groups=(1,), seeds=(0,), epochs=1))
    store.dispose()
    proc = orch.run("report", "--study", "norms", "--plot", str(tmp_path / "g.png"), "--chart", "groups")
    assert proc.returncode == 2 and "--chart: this selection has no groups chart" in proc.stderr
    proc = orch.run("report", "--study", "norms", "--plot", str(tmp_path / "w.png"), "--chart", "width")
    assert proc.returncode == 2 and "no width chart (its configs keep the width multiplier fixed)" in proc.stderr
    html = tmp_path / "r.html"
    assert "charts: final, curves)" in orch.run("report", "--study", "norms", "--html", str(html),
                                                 check=True).stderr  # one cost for all: no Pareto front
    proc = orch.run("report", "--study", "norms", "--plot", str(tmp_path / "p.png"), "--chart", "pareto")
    assert proc.returncode == 2 and "do not differ in GMACs" in proc.stderr
    rows = orch.json_report("--study", "norms")
    assert all(r["n"] == 1 and r["val_acc_ci95_low"] is None and "n=1" in r["interval_note"] for r in rows)
    assert all("one epoch" in r["convergence"] for r in rows)


def test_format_beside_html_prints_the_format_and_stdout_holds_only_it(study: tuple[Orch, dict], tmp_path: Path) -> None:
    """`--format csv --html r.html` wrote the page and ignored --format; 'wrote ...' went to stdout,
    into a redirected CSV."""
    orch, _ = study
    proc = orch.run("report", "--study", "norms-groups", "--format", "csv", "--html", str(tmp_path / "r.html"), check=True)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 9 and (tmp_path / "r.html").is_file() and "wrote" in proc.stderr
    plain = orch.run("report", "--study", "norms-groups", "--plot", str(tmp_path / "f.png"), check=True)
    assert plain.stdout == "" and "wrote" in plain.stderr  # the default table format: the file only, as before


def test_cells_without_an_epoch_are_named_beside_the_statistics(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study whose gn cells were cancelled before their first epoch reported its bn runs as 'all
    runs', with nothing to say that gn was asked for."""
    from sqlalchemy import update

    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Job, JobStatus, Study
    from shared.store import jobs as store_jobs

    store = open_home(orch.home, monkeypatch)
    build_study(store, Grid(name="gn", norms=("bn",), groups=(1,)))
    with store.session() as s:
        study_id = s.query(Study).filter_by(name="gn").one().id
        spec = TrainSpec(model=ModelSpec(arch="resnet50", norm="gn", image_size=32, num_classes=2), data="/data/train",
                         val="/data/val", epochs=3)
        cancelled = store_jobs.add_job(s, "train", spec, study_id=study_id).id
        s.execute(update(Job).where(Job.id == cancelled).values(status=JobStatus.cancelled))
        # failed: why is said (only `orch status ID` had it)
        failed = store_jobs.add_job(s, "train", spec.model_copy(update={"seed": 1}), study_id=study_id).id
        s.execute(update(Job).where(Job.id == failed).values(
            status=JobStatus.failed, error="--pretrained: /w/bad.pt is not a PyTorch file"))
    store.dispose()
    proc = orch.run("report", "--study", "gn", check=True)
    # under the baseline line, where it is read (it came last, on stderr, and md files had none of it)
    lines = proc.stdout.replace("\n    ", " ").splitlines()  # verdict lines wrap to the terminal's width
    after = lines[next(i for i, line in enumerate(lines) if line.startswith("one config, norm=bn: nothing")) + 1:]
    assert after[0] == ("note: not in these statistics, which are over finished runs only: jobs "
                        f"{cancelled} (cancelled; norm=gn), {failed} (failed: --pretrained: /w/bad.pt is not a "
                        "PyTorch file; norm=gn)"), lines
    md = orch.run("report", "--study", "gn", "--format", "md", check=True).stdout
    assert f"- note: not in these statistics, which are over finished runs only: jobs {cancelled}" in md
    # the config it is not: "norm=bn", not "all runs" (the jobs left out count in what varies)
    assert [row["config"] for row in orch.json_report("--study", "gn")] == ["norm=bn"]
    assert "not in these" not in orch.run("report", "--study", "gn", "--format", "json", check=True).stdout  # stderr


def test_the_leaderboards_csv_holds_numbers_a_script_can_read(study: tuple[Orch, dict]) -> None:
    """It held the table's display strings ('63.33%', '0.91M'), where the study's CSV had numbers."""
    orch, _ = study
    text = orch.run("report", "--format", "csv", check=True).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and all(0 <= float(r["val_acc"]) <= 1 and int(r["params"]) > 1_000_000 for r in rows)
    from orchestrator.report import leaderboard_header

    assert text.splitlines()[0] == ",".join(leaderboard_header())  # what an empty store's CSV prints
    md = orch.run("report", "--format", "md", check=True).stdout
    assert "%" in md and "M |" in md  # Markdown is for people: the table's formats


def test_a_study_with_no_epoch_or_no_test_accuracy_says_what_to_do(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study cancelled before any epoch was told 'is a worker running?'; --metric test_acc with
    nothing scored printed a table without the metric and ranked 'the best config'."""
    from sqlalchemy import update

    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Job, JobStatus, Study
    from shared.store import jobs as store_jobs

    store = open_home(orch.home, monkeypatch)
    build_study(store, Grid(name="scored", norms=("bn",), groups=(1,)))
    with store.session() as s:
        stopped = store_jobs.add_study(s, "stopped", {})
        s.flush()
        spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=32, num_classes=2), data="/data/train")
        job = store_jobs.add_job(s, "train", spec, study_id=stopped.id).id
        s.execute(update(Job).where(Job.id == job).values(status=JobStatus.cancelled))
        stopped_id = stopped.id
        scored = s.query(Study).filter_by(name="scored").one().id
    store.dispose()
    empty = orch.run("report", "--study", "stopped", check=True).stdout.strip()
    assert empty == (f"no finished run in study {stopped_id}: jobs {job} (cancelled); `orch retry --study "
                     f"{stopped_id}` requeues the failed and cancelled ones")
    # --per-job said the empty store's "no epochs recorded yet... is a worker running?"
    assert orch.run("report", "--study", "stopped", "--per-job", check=True).stdout.strip() == empty
    for extra in ([], ["--plot", str(orch.home / "t.png")], None):
        where = ["--study", str(scored)] if extra is not None else []  # None: the leaderboard of every job
        proc = orch.run("report", *where, "--metric", "test_acc", *(extra or []))
        # a study's: the command that scores every job of it
        said = ("no job here has a test accuracy yet; score one with `orch submit score --job ID --data TEST_FOLDER "
                "--labels LABELS.csv`" if extra is None else "no job of study scored has a test accuracy yet; score "
                "them with `orch submit score --study scored --data TEST_FOLDER --labels LABELS.csv --out preds/`")
        assert proc.returncode == 2 and proc.stderr.strip() == f"Error: --metric test_acc: {said}", proc.stderr


def test_last_epoch_ranks_without_the_pick_on_validation(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's best epoch is picked on the images it is measured on: bn peaks at one epoch and falls
    back, ln climbs and stays. By the best epoch bn wins; by the last, ln; the report says so."""
    from shared.store import jobs as store_jobs

    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        study = store_jobs.add_study(s, "peak", {})
        s.flush()
        study_id = study.id
    curves = {"bn": ([0.70, 0.90, 0.60], 0.01), "ln": ([0.70, 0.80, 0.80], 0.03)}  # and a step per seed
    for norm, (accs, step) in curves.items():
        for seed in (0, 1, 2):
            add_run(store, study_id, norm, 1, seed, 3, val_accs=[a + step * seed for a in accs])
    store.dispose()
    by_best = orch.json_report("--study", "peak")
    assert [r["norm"] for r in by_best] == ["bn", "ln"] and by_best[0]["val_acc_mean"] == pytest.approx(0.91)
    by_last = orch.json_report("--study", "peak", "--metric", "last_val_acc")
    assert [r["norm"] for r in by_last] == ["ln", "bn"]
    assert by_last[0]["last_val_acc_mean"] == pytest.approx(0.83) and by_last[1]["last_val_acc_mean"] == pytest.approx(0.61)
    assert by_last[0]["verdict"].startswith("better: +22.00 points")  # against bn, the study's first config
    text = orch.run("report", "--study", "peak", check=True).stdout.replace("\n    ", " ")
    assert ("note: by each run's last epoch (--metric last_val_acc) norm=ln ranks first, not norm=bn: the best "
            "epochs are picked on the validation images they are measured on") in text
    last_text = orch.run("report", "--study", "peak", "--metric", "last_val_acc", check=True).stdout
    assert "last_val_acc (last epoch) mean" in last_text and "ranks first, not" not in last_text
    board = orch.json_report("--metric", "last_val_acc", "--limit", "0")
    assert [r["last_val_acc"] for r in board][:3] == pytest.approx([0.86, 0.83, 0.80])
    assert [r["val_acc"] - r["last_val_acc"] for r in board if r["norm"] == "bn"] == pytest.approx([0.30] * 3)


def test_runs_in_different_precisions_are_named(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """--precision auto trains in bf16 on a worker that has it and in fp32 on one that has not: a
    study spread over both compared the precisions as much as the norms, and said nothing."""
    from shared.store import jobs as store_jobs

    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        for name in ("one", "mixed", "all"):
            store_jobs.add_study(s, name, {})
    ran = {"one": {("bn", 0): "bf16", ("bn", 1): "bf16", ("ln", 0): "bf16", ("ln", 1): "bf16"},
           "mixed": {("bn", 0): "bf16", ("bn", 1): "bf16", ("ln", 0): "bf16", ("ln", 1): "fp32"},
           "all": {("bn", 0): "bf16", ("ln", 0): "bf16"}}
    for study_id, name in ((1, "one"), (2, "mixed"), (3, "all")):
        for (norm, seed), precision in ran[name].items():
            add_run(store, study_id, norm, 1, seed, 2, precision=precision)
    add_run(store, 1, "in", 1, 0, 2)  # a run from before results named their precision: not counted
    store.dispose()
    one = orch.run("report", "--study", "one", check=True).stdout
    assert "precision" not in one  # one run's precision is unknown: no headline claims one for all
    # every run in bf16 by auto's choice: the headline says what ran (the settings alone said "auto")
    assert "precision=bf16 (auto)" in orch.run("report", "--study", "all", check=True).stdout
    assert "precision=bf16 (auto))" in orch.run("report", "--study", "all", "--format", "md", check=True).stdout
    orch.run("report", "--study", "all", "--html", str(orch.home / "all.html"), check=True)
    assert "<th>precision</th><td>bf16 (auto)</td>" in (orch.home / "all.html").read_text()
    assert {r["norm"]: r["precision"] for r in orch.json_report("--study", "one")} == {
        "bn": ["bf16"], "ln": ["bf16"], "in": []}
    mixed = orch.run("report", "--study", "mixed", check=True).stdout.replace("\n    ", " ")
    assert ("note: not every run trained in one precision (bf16: norm=bn, norm=ln seed 0; fp32: norm=ln seed 1): "
            "a difference may be the precision's") in mixed
    assert {r["norm"]: r["precision"] for r in orch.json_report("--study", "mixed")} == {
        "bn": ["bf16"], "ln": ["bf16", "fp32"]}
    board = orch.json_report("--limit", "0")  # the leaderboard: what each job ran
    assert sorted(map(str, (r["precision"] for r in board))) == ["None"] + ["bf16"] * 9 + ["fp32"]


def test_charts_and_page_say_what_their_metric_is(study: tuple[Orch, dict], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by reading the charts: test accuracy's diamond sat at 88 on a val_loss axis of 0-1, the
    final chart's caption explained val_acc under a chart of images/s, a throughput was flagged 'not
    converged', one curve per job was titled a mean over seeds, a page written mid-study did not
    name its queued jobs, and momentum was listed as shared by Adam runs."""
    orch, jobs = study
    chart = tmp_path / "final.svg"
    orch.run("report", "--study", "1", "--plot", str(chart), check=True)
    assert "test accuracy" in chart.read_text()  # val_acc: the scored bn runs' diamonds and their legend
    for metric in ("val_loss", "images_per_s", "test_acc"):
        orch.run("report", "--study", "1", "--metric", metric, "--plot", str(chart), check=True)
        assert "test accuracy" not in chart.read_text(), metric
    text = orch.run("report", "--study", "1", "--metric", "images_per_s", check=True).stdout
    assert "not converged" not in text and "images/s is the machine's as much as the config's" in text
    page = tmp_path / "ips.html"
    orch.run("report", "--study", "1", "--metric", "images_per_s", "--html", str(page), check=True)
    caption = re.search(r'<figure id="chart-final".*?<figcaption>(.*?)</figcaption>', page.read_text(), re.S)
    assert caption and caption.group(1).startswith("images_per_s (mean over epochs) per config: the mean over seeds")
    assert "best epoch" not in caption.group(1) and "diamond" not in caption.group(1)
    picked = ",".join(str(jobs[k]) for k in (("bn", 1, 0), ("ln", 1, 0)))
    curves = tmp_path / "jobs.svg"
    orch.run("report", "--job", picked, "--plot", str(curves), check=True)
    assert "one run per line" in curves.read_text() and "mean over seeds" not in curves.read_text()

    from shared.spec import ModelSpec, TrainSpec
    from shared.store import jobs as store_jobs

    store = open_home(orch.home, monkeypatch)
    with store.session() as s:  # a cell still queued
        spec = TrainSpec(model=ModelSpec(arch="resnet50", norm="gn", image_size=32, num_classes=2), data="/data/train",
                         val="/data/val", epochs=3)
        queued = store_jobs.add_job(s, "train", spec, study_id=1).id
    store.dispose()
    page = tmp_path / "partial.html"
    orch.run("report", "--study", "1", "--html", str(page), check=True)
    html = page.read_text()
    assert f"note: not in these statistics, which are over finished runs only: job {queued} (queued; norm=gn " \
           "groups=1)" in html
    assert "<th>momentum</th>" not in html and "<th>optimizer</th>" in html  # adam: momentum did nothing
    assert "<th>val_fraction</th>" not in html  # every run had its --val folder
    base = re.search(r"<tr><td>norm=bn groups=1</td><td>baseline</td><td>(.*?)</td>", html)
    assert base and base.group(1) == ""  # no "+0.00 points" against itself


def test_a_test_accuracy_scored_in_int8_says_so(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring's auto runs int8 on an x86 CPU: the report showed its accuracy as the checkpoint's own."""
    store = open_home(orch.home, monkeypatch)
    build_study(store, Grid(name="q", norms=("bn", "ln"), groups=(1,), scored={("bn", 1, 0), ("bn", 1, 1)},
                            score_precision="int8"))
    store.dispose()
    rows = orch.json_report("--study", "q")
    assert {r["norm"]: r["test_precision"] for r in rows} == {"bn": ["int8"], "ln": []}
    text = orch.run("report", "--study", "q", check=True).stdout.replace("\n    ", " ")
    assert "note: test accuracy was scored in int8 (jobs 1, 2): an int8 score is a quantized copy's" in text
    for fmt in ("json", "csv"):  # the rows on stdout for a script, the notes on stderr (JSON dropped them)
        proc = orch.run("report", "--study", "q", "--format", fmt, check=True)
        assert "note: test accuracy was scored in int8 (jobs 1, 2)" in proc.stderr and "note:" not in proc.stdout
    board = orch.json_report("--metric", "test_acc")
    assert [(r["id"], r["test_precision"]) for r in board] == [(1, "int8"), (2, "int8")]
    events = orch.json("status", "5")["events"]  # the first scoring run's history ends with its end
    assert events[-1]["message"] == "its shards' predictions assembled: the job succeeded"


def test_an_empty_store_prints_no_table_of_nothing(orch: Orch) -> None:
    """`--format md` printed '|  |' and '|': a broken table. The CSV is its header row alone, the
    columns a leaderboard of runs has (test_the_leaderboards_csv_holds_numbers_a_script_can_read)."""
    from orchestrator.report import leaderboard_header

    header = ",".join(leaderboard_header())
    for fmt, stdout in (("md", ""), ("csv", header + "\n")):
        proc = orch.run("report", "--format", fmt, check=True)
        assert proc.stdout == stdout and "no epochs recorded yet" in proc.stderr, (fmt, proc)
    assert orch.json_report() == []
    # by test accuracy too: nothing recorded is the news, not that nothing was scored (it exited 2 on an empty store)
    assert "no epochs recorded yet" in orch.run("report", "--metric", "test_acc", check=True).stdout
    proc = orch.run("report", "--metric", "test_acc", "--format", "csv", check=True)
    assert proc.stdout == header + "\n" and "no epochs recorded yet" in proc.stderr


def test_the_leaderboard_says_when_its_runs_trained_on_different_data(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of four data folders were ranked together with no data column, not even in JSON."""
    store = open_home(orch.home, monkeypatch)
    add_run(store, None, "bn", 1, 0, 2)
    one = orch.run("report", check=True)
    assert "note: these runs" not in one.stderr and "/data/train" not in one.stdout  # one data set: not shown
    add_run(store, None, "bn", 1, 0, 2, data="/data/other")
    store.dispose()
    rows = orch.json_report()
    assert sorted(row["data"] for row in rows) == ["/data/other", "/data/train"] and rows[0]["val"] == "/data/val"
    two = orch.run("report", check=True)
    assert "note: these runs trained on 2 data folders (/data/other, /data/train)" in two.stderr
    assert "validated on" not in two.stderr  # one validation folder
    store = open_home(orch.home, monkeypatch)
    add_run(store, None, "bn", 1, 1, 2, val="/data/val-cats-only")
    store.dispose()
    assert "note: these runs were validated on 2 val folders (/data/val, /data/val-cats-only)" in \
        orch.run("report", check=True).stderr


def test_the_leaderboard_shows_the_settings_its_runs_differ_in(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of adam and one of sgd with a step schedule and label smoothing read as identical rows: no
    optimizer, schedule or label_smoothing column anywhere. JSON has every setting; the tables those
    that differ."""
    store = open_home(orch.home, monkeypatch)
    add_run(store, None, "bn", 1, 0, 2)
    alone = orch.run("report", "--format", "md", check=True).stdout.splitlines()[0]
    assert "optimizer" not in alone and "schedule" not in alone  # one run: nothing to tell apart
    add_run(store, None, "bn", 1, 0, 2, optimizer="sgd", schedule="step", label_smoothing=0.1)
    store.dispose()
    header = orch.run("report", "--format", "md", check=True).stdout.splitlines()[0]
    assert all(f"| {key} |" in header for key in ("optimizer", "schedule", "label_smoothing")), header
    assert "| weight_decay |" not in header and "| stem |" not in header  # the same in both runs
    rows = {row["optimizer"]: row for row in orch.json_report()}
    assert (rows["sgd"]["schedule"], rows["adam"]["schedule"], rows["sgd"]["label_smoothing"]) == ("step", "cosine", 0.1)
    assert rows["adam"]["weight_decay"] == rows["sgd"]["weight_decay"] and "image_size" in rows["adam"]


def test_a_studys_statistics_are_over_its_finished_runs(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cancelled after 2 of 4 epochs (or still running) counted as a full seed: its value in
    the mean and the paired test beside finished runs, with only a note saying it had not finished."""
    from sqlalchemy import update

    from shared.store import Job, JobStatus

    store = open_home(orch.home, monkeypatch)
    jobs = build_study(store, Grid(name="part", norms=("bn", "ln"), groups=(1,), seeds=(0, 1, 2)))
    with store.session() as s:
        s.execute(update(Job).where(Job.id == jobs[("ln", 1, 2)]).values(status=JobStatus.cancelled))
        s.execute(update(Job).where(Job.id == jobs[("bn", 1, 1)]).values(status=JobStatus.running))
    store.dispose()
    proc = orch.run("report", "--study", "part", "--format", "json", check=True)
    rows = {row["norm"]: row for row in json.loads(proc.stdout)}
    assert (rows["bn"]["n"], rows["ln"]["n"]) == (2, 2) and rows["ln"]["paired_seeds"] == [0]
    assert (f"jobs {jobs[('bn', 1, 1)]} (running, epoch 3 of 3; norm=bn), {jobs[('ln', 1, 2)]} (cancelled after "
            "epoch 3 of 3; norm=ln)") in proc.stderr
    per_job = orch.json_report("--study", "part", "--per-job", "--limit", "0")
    assert len(per_job) == 6  # every job's epochs so far, there
    # ranked among finished runs, a cancelled one's status was the first column a narrow terminal lost
    orch.env = {**orch.env, "COLUMNS": "100"}
    narrow = orch.run("report", "--study", "part", "--per-job", "--limit", "0", check=True)
    assert "narrow terminal, not shown:" in narrow.stderr and "status" not in narrow.stderr.split("not shown:")[1]
    assert "cancelled" in narrow.stdout and "running" in narrow.stdout


def test_the_leaderboard_of_every_run_names_each_runs_study_and_fits_columns(study: tuple[Orch, dict]) -> None:
    """`orch report` ranked runs of every study with nothing to say which study a row came from; and
    `COLUMNS=100 orch report` into a pipe still printed 200 columns."""
    orch, _ = study
    assert {row["study"] for row in orch.json_report("--limit", "0")} == {"norms-groups"}
    orch.env = {**orch.env, "COLUMNS": "100"}
    narrow = orch.run("report", "--limit", "3", check=True)
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 100
    assert "narrow terminal, not shown:" in narrow.stderr


def test_a_study_name_in_other_case_or_mistyped_is_suggested(study: tuple[Orch, dict]) -> None:
    """`--study NORMS-GROUPS` listed the last ten studies, which need not hold the one meant."""
    orch, _ = study
    for typed in ("NORMS-GROUPS", "norms-grups"):
        proc = orch.run("report", "--study", typed)
        assert proc.returncode == 2
        assert proc.stderr.strip() == f"Error: --study: no study with id or name {typed!r}; did you mean 1 (norms-groups)?"
    assert "studies: 1 (norms-groups)" in orch.run("report", "--study", "ghost").stderr  # nothing alike: the list


def test_report_takes_json_as_status_does(study: tuple[Orch, dict]) -> None:
    """`orch report --json` was "no such option" where `orch status --json` works."""
    orch, _ = study
    assert orch.json("report", "--study", "norms-groups") == orch.json_report("--study", "norms-groups")


def test_the_leaderboard_says_when_its_top_run_owes_its_place_to_a_pick_on_validation(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with one lucky epoch topped the leaderboard by its best epoch, chosen on the images it
    is measured on, with nothing saying that by the last epochs another run ranks first."""
    store = open_home(orch.home, monkeypatch)
    steady = add_run(store, None, "bn", 1, 0, 3, val_accs=[0.80, 0.85, 0.86])
    add_run(store, None, "bn", 1, 1, 3, val_accs=[0.60, 0.70, 0.75])
    store.dispose()
    assert "ranks first" not in orch.run("report", check=True).stderr  # the same run first both ways
    store = open_home(orch.home, monkeypatch)
    lucky = add_run(store, None, "bn", 1, 2, 3, val_accs=[0.70, 0.91, 0.72])
    store.dispose()
    assert orch.json_report()[0]["id"] == lucky
    proc = orch.run("report", check=True)
    assert (f"note: by each run's last epoch (--metric last_val_acc) job {steady} ranks first, not job {lucky}: "
            "val_acc is each run's best epoch") in proc.stderr
    for metric in ("last_val_acc", "val_loss"):  # picked by nothing, or not by accuracy: no such note
        assert "ranks first" not in orch.run("report", "--metric", metric, check=True).stderr
    assert "ranks first" not in orch.run("report", "--format", "csv", check=True).stderr  # rows for a script


def test_a_cut_leaderboard_offers_one_study_only_where_none_was_given(study: tuple[Orch, dict]) -> None:
    """`orch report --study S --per-job --limit N` ended with "--study ID|NAME one study"."""
    orch, _ = study
    within = orch.run("report", "--study", "norms-groups", "--per-job", "--limit", "2", check=True).stderr
    assert "the best 2 of 18 runs: --limit 0 shows all\n" in within, within
    every = orch.run("report", "--limit", "2", check=True).stderr
    assert "the best 2 of 18 runs: --limit 0 shows all, --study ID|NAME one study" in every, every


def test_a_study_with_no_finished_run_prints_each_format_whole(study: tuple[Orch, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its CSV was one blank line, with no header for a script to read, and md a blank line; --html
    said "nothing to draw yet" of a study whose every job was cancelled: none is coming."""
    from sqlalchemy import update

    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Job, JobStatus
    from shared.store import jobs as store_jobs

    orch, _ = study
    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=32, num_classes=2), data="/data/train")
        for name in ("stopped", "waiting"):
            job = store_jobs.add_job(s, "train", spec, study_id=store_jobs.add_study(s, name, {}).id).id
        s.execute(update(Job).where(Job.id == job - 1).values(status=JobStatus.cancelled))
    store.dispose()
    header = orch.run("report", "--study", "norms-groups", "--format", "csv", check=True).stdout.splitlines()[0]
    out = {fmt: orch.run("report", "--study", "stopped", "--format", fmt, check=True) for fmt in ("table", "json", "csv", "md")}
    assert out["csv"].stdout.strip() == header and "val_acc_mean" in header
    assert (out["json"].stdout.strip(), out["md"].stdout) == ("[]", "")
    assert all("no finished run in study" in (p.stdout if fmt == "table" else p.stderr) for fmt, p in out.items())
    for name, pending in (("stopped", False), ("waiting", True)):
        proc = orch.run("report", "--study", name, "--html", str(orch.home / "r.html"))
        assert proc.returncode == 2 and proc.stderr.startswith(
            f"Error: --html: nothing to draw{' yet' if pending else ''}: no finished run in study"), proc.stderr
