"""`orch report`: the leaderboard; for a study, configs over seeds with paired statistics, charts, HTML."""
from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.context import CliState, pass_state
from orchestrator.metrics import METRICS
from orchestrator.tables import for_display, print_table, render
from shared.errors import OrchError

# the leaderboard's columns a narrow terminal leaves out, the first first: what ranks a run
# (rank, id, model, the config's own fields, val_acc, test_acc) stays
LEADERBOARD_DROP_FIRST = ("val", "wall_s", "images_per_s", "precision", "test_precision", "status", "epochs", "val_loss", "last_val_acc", "batch_size",
                          "lr", "params", "gmacs", "attention", "width", "seed", "study")

if TYPE_CHECKING:
    from orchestrator.analysis.study import StudyAnalysis
    from shared.store.report_reads import RunRecord

LIMIT_DEFAULT = 30
CHART_NAMES = ("final", "curves", "groups", "width", "pareto", "overview")  # charts.SINGLE_CHARTS, without importing it
NO_TEST_ACCURACY = ("--metric test_acc: no job here has a test accuracy yet; score one with "
                    "`orch submit score --job ID --data TEST_FOLDER --labels LABELS.csv`")
EMPTY = ("no epochs recorded yet: `orch status` shows queued and running jobs "
         "(is a worker running? `orch worker`); to start one: `orch submit train --help`")


@click.command()
@click.option("--study", "study_ref", metavar="ID|NAME", help="One study: configs over seeds, paired statistics.")
@click.option("--job", "job_list", metavar="IDS", help="Compare these jobs (e.g. 1,2,3), one curve each.")
@click.option("--metric", type=click.Choice(list(METRICS)), default="val_acc", show_default=True,
              help="What ranks the rows. val_acc: each run's best epoch, picked on the validation images it is "
                   "measured on, so it flatters noisy runs; last_val_acc: the last epoch, picked by nothing; "
                   "val_loss (at the best val_acc epoch): lower is better.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "md"]), default="table", show_default=True,
              help="table for the terminal and md for notes (a setting the same in every row is left out of the "
                   "leaderboard's); json or csv (every column) for scripts.")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json (as `orch status --json`).")
@click.option("--limit", default=LIMIT_DEFAULT, show_default=True, help="Rows of the leaderboard (all jobs, or --per-job); 0: all.")
@click.option("--per-job", is_flag=True, help="With --study: one row per job instead of per config.")
@click.option("--baseline", metavar="FIELD=VALUE,...", help="The config the others are compared with "
              "(e.g. 'norm=bn,groups=1', or job=7 for the one holding job 7); default: the study's first config (the first value of each axis as "
              "listed), chosen before the results, unless it has under half the seeds of the config with the most.")
@click.option("--html", type=click.Path(dir_okay=False),
              help="Write one self-contained HTML page (tables, statistics, every chart inline).")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Write one chart to FILE.png or FILE.svg.")
@click.option("--chart", type=click.Choice(CHART_NAMES), help="Which chart --plot draws (overview: final "
              "beside the validation curves) [default: final for --study, curves for --job].")
@pass_state
def report(obj: CliState, study_ref: str | None, job_list: str | None, metric: str, fmt: str, as_json: bool, limit: int,
           per_job: bool, baseline: str | None, html: str | None, plot: str | None, chart: str | None) -> None:
    """Rank training runs; for a study, answer it: intervals, paired tests, charts.

    \b
    Examples:
      orch report                              # the 30 best training jobs (--limit 0: all)
      orch report --study groups               # a study by name or id: configs over seeds, verdicts
      orch report --study 3 --baseline 'norm=bn,groups=1' --format md
      orch report --study 3 --html report.html # one offline page with every chart
      orch report --study 3 --plot curves.png --chart curves
      orch report --job 4,7,9 --plot curves.svg
      orch report --metric test_acc --format csv > leaderboard.csv
      orch report --study groups --metric last_val_acc   # the last epoch: no pick on validation
    """
    if as_json:
        if fmt not in ("table", "json"):
            raise OrchError(f"--json: the same as --format json; drop one of them (--format {fmt} is given)")
        fmt = "json"
    _check_options(study_ref, job_list, per_job, baseline, html, plot, chart, limit)
    # checked as given: a Path of '' is '.', and `--html ''` said ". is a folder"
    html_path, plot_path = (Path(given) if given is not None else None for given in (html, plot))
    if study_ref is None and job_list is None:
        _leaderboard(obj, metric, fmt, limit)
        return
    from orchestrator.analysis.study import analyse
    from orchestrator.studies import study_for
    from shared.store import reads
    from shared.store.report_reads import job_specs, runs_without_epochs, training_runs

    with obj.store.session() as s:
        study = study_for(s, study_ref) if study_ref is not None else None
        job_ids = _job_ids(job_list) if job_list is not None else None
        runs = training_runs(s, study.id if study else None, job_ids)
        absent = runs_without_epochs(s, study.id) if study is not None else []
        if study is not None and not per_job:  # --job: the jobs asked for, finished or not (notes say which)
            runs, absent = finished_only(runs, absent)
        absent_specs = job_specs(s, [job_id for job_id, _ in absent])
        missing = sorted(set(job_ids or ()) - {run.id for run in runs})
        other = next(filter(None, (reads.not_training(s, job_id, job_ids or ()) for job_id in missing)), None)
    if other is not None:  # a scoring run's id: the training job it scored is the one to give
        raise OrchError(f"--job: {other}")
    if missing:
        raise OrchError(f"--job: no training job with recorded epochs: {', '.join(map(str, missing))}")
    if per_job:  # a study none of whose jobs has an epoch: its jobs, not the empty store's message
        _leaderboard(obj, metric, fmt, limit, study.id if study else None,
                     empty=_nothing_recorded(study.id, absent) if study and absent else EMPTY)
        return
    if not runs:
        empty = _nothing_recorded(study.id, absent) if study and absent else EMPTY
        if html_path or plot_path:  # "yet" of a study whose every job failed or was cancelled: none is coming
            pending = not absent or any(status.startswith(("queued", "running")) for _, status in absent)
            raise OrchError(f"{'--html' if html_path else '--plot'}: nothing to draw{' yet' if pending else ''}: {empty}")
        if fmt != "md":  # a script's CSV has its header row (a blank line had no columns to read), md no table of nothing
            from orchestrator.analysis.rows import csv_header

            click.echo({"json": "[]", "csv": csv_header(metric)}.get(fmt, empty))
        if fmt != "table":  # `[]` alone on a study of running jobs said nothing of why
            click.echo(empty, err=True)
        return
    if metric == "test_acc" and all(run.test_acc is None for run in runs):  # a table and charts of nothing
        raise OrchError(NO_TEST_ACCURACY if study is None else
                        f"--metric test_acc: no job of study {study.name or study.id} has a test accuracy yet; score "
                        f"them with `orch submit score --study {study.name or study.id} --data TEST_FOLDER "
                        "--labels LABELS.csv --out preds/`")
    analysis = replace(analyse(runs, metric, study, baseline, by_job=job_ids is not None, absent=absent_specs),
                       absent=absent)
    if html_path or plot_path:
        _write_files(analysis, html_path, plot_path, chart or ("curves" if job_ids else "final"))
    if not (html_path or plot_path) or fmt != "table":  # --format csv beside --html: both, as asked
        _print_analysis(analysis, fmt)  # the jobs left out are among its notes
    elif absent:  # a cell cancelled before its first epoch was simply missing from the statistics
        from orchestrator.analysis.notes import absent_note

        click.echo(absent_note(absent, analysis.absent_labels), err=True)


def finished_only(runs: list[RunRecord], absent: list[tuple[int, str]]) -> tuple[list[RunRecord], list[tuple[int, str]]]:
    """A study's statistics are over its finished runs: a run cancelled after 2 of 4 epochs, or one
    still running, counted as a full seed (its 2-epoch value in a mean of 4-epoch runs, its curve in
    the mean curve). The others join the jobs with no epoch, named with how far they got."""
    finished = [run for run in runs if run.status == "succeeded"]
    left_out = [(run.id, progress(run)) for run in runs if run.status != "succeeded"]
    return finished, sorted(absent + left_out)


def progress(run: RunRecord) -> str:
    """'running, epoch 2 of 4', 'cancelled after epoch 2 of 4'."""
    last, total = run.epochs[-1]["epoch"], run.spec.get("epochs")
    of = f" of {total}" if total else ""
    if run.status in ("running", "queued"):
        return f"{run.status}, epoch {last:g}{of}"
    from shared.store.report_reads import ended_why

    return ended_why(run.status, run.error, f" after epoch {last:g}{of}")


def _nothing_recorded(study_id: int, absent: list[tuple[int, str]]) -> str:
    """A study none of whose jobs has finished: which they are, and how to run them again (it asked
    whether a worker was running, of a study cancelled before it started)."""
    listed = ", ".join(f"{job_id} ({status})" for job_id, status in absent)
    again = any(status.startswith(("failed", "cancelled")) for _, status in absent)
    started = any("epoch" in status for _, status in absent)
    return f"no finished run in study {study_id}: jobs {listed}" + (
        f"; `orch retry --study {study_id}` requeues the failed and cancelled ones" if again else "") + (
        f"; `orch report --study {study_id} --per-job` ranks each job's epochs so far" if started else "")


def _check_options(study_ref: str | None, job_list: str | None, per_job: bool, baseline: str | None,
                   html_path: str | None, plot_path: str | None, chart: str | None, limit: int) -> None:
    if study_ref is not None and job_list is not None:
        raise OrchError("--job: give --study or --job, not both")
    selected = study_ref is not None or job_list is not None
    for name, given in (("--html", html_path), ("--plot", plot_path), ("--baseline", baseline)):
        if given is not None and not selected:
            raise OrchError(f"{name}: needs --study ID|NAME or --job IDS")
    if per_job and study_ref is None:
        raise OrchError("--per-job: needs --study ID|NAME")
    if limit != LIMIT_DEFAULT and (job_list is not None or (study_ref is not None and not per_job)):
        raise OrchError("--limit: counts the leaderboard's rows (all jobs, or --study with --per-job); a study's "
                        "configs and --job are shown whole")
    for name, given in (("--html", html_path), ("--plot", plot_path), ("--baseline", baseline)):
        if per_job and given is not None:  # they were ignored: exit 0 and no file written
            raise OrchError(f"{name}: compares configs; --per-job lists jobs: drop one of them")
    if chart is not None and plot_path is None:
        raise OrchError("--chart: needs --plot FILE.png|FILE.svg")
    if baseline is not None and not baseline.strip():  # it was taken as no --baseline, silently
        raise OrchError("--baseline: empty; give FIELD=VALUE,... (e.g. 'norm=bn,groups=1')")
    if baseline is not None:  # its form before the store is read: a study with no results yet said nothing
        from orchestrator.analysis.configs import parse_baseline

        parse_baseline(baseline)
    from orchestrator.paths import output_path

    for name, path, example in (("--html", html_path, "report.html"), ("--plot", plot_path, "final.png")):
        if path is not None:
            output_path(name, path, example)  # before the store is read: a one-line error, not a traceback
    if plot_path is not None and Path(plot_path).suffix.lower() not in (".png", ".svg"):
        raise OrchError(f"--plot: the file must end in .png or .svg, got {Path(plot_path).name!r}")


def _job_ids(text: str) -> list[int]:
    from orchestrator.options import comma_items

    parts = comma_items("--job", text, "1,2,3")  # a SpecError is a ValueError: not inside the try
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise OrchError(f"--job: expected job ids like 1,2,3, got {text!r}") from None


def _leaderboard(obj: CliState, metric: str, fmt: str, limit: int, study_id: int | None = None,
                 empty: str = EMPTY) -> None:
    from orchestrator.fields import SETTINGS
    from orchestrator.report import first_by_last_epoch, leaderboard

    if limit < 0:
        raise OrchError(f"--limit: must be 0 (all) or more, got {limit}")
    with obj.store.session() as s:
        ranked, total = leaderboard(s, study_id, metric, limit)
        # the top row by a pick on validation (best epoch): said when the last epochs rank another first
        by_last = first_by_last_epoch(s, study_id) if fmt == "table" and metric == "val_acc" else None
        # runs, none scored: the error says how to score one; no run at all: the empty store's message, as every metric
        unscored = metric == "test_acc" and not ranked and first_by_last_epoch(s, study_id) is not None
    if unscored:
        raise OrchError(NO_TEST_ACCURACY)
    if fmt == "json":
        click.echo(json.dumps(ranked, indent=2))
    elif not ranked:  # a md table of no columns printed '|  |' then '|'; the reason goes to stderr
        if fmt == "csv":  # as a study's CSV of no finished run: the header row, for a script
            from orchestrator.report import leaderboard_header

            click.echo(",".join(leaderboard_header()))
        click.echo(empty, err=fmt != "table")
    elif fmt == "csv":  # numbers for a script (0.8333, 11169858), as the study's CSV has them
        click.echo(render(ranked, fmt))
    elif fmt == "md":
        click.echo(render(for_display(_differing(ranked, SETTINGS)), fmt))
    else:
        unfinished = any(row.get("status") != "succeeded" for row in ranked)  # a cancelled run ranked among the rest
        drop_first = [column for column in LEADERBOARD_DROP_FIRST  # never what ranks, nor an unfinished run's status
                      if column != metric and not (column == "status" and unfinished)]
        shown = _differing(ranked, ("data", "val", *SETTINGS))
        print_table(for_display(shown), title=f"leaderboard by {metric}", drop_first=drop_first,
                    every_column="--format json")
        differ = [key for key in ("data", "val") if key in shown[0]]
        for key in differ:  # runs of different data or validation sets ranked together: they do not compare
            folders = sorted({str(row[key]) for row in ranked})
            what = "trained on" if key == "data" else "were validated on"
            click.echo(f"note: these runs {what} {len(folders)} {key} folders ({', '.join(folders[:3])}"
                       f"{', ...' if len(folders) > 3 else ''}): accuracies compare within one; --study ID|NAME "
                       "ranks one study", err=True)
        if by_last is not None and by_last.last_val_acc > ranked[0]["last_val_acc"]:  # not a tie for first
            click.echo(f"note: by each run's last epoch (--metric last_val_acc) job {by_last.id} ranks first, not job "
                       f"{ranked[0]['id']}: val_acc is each run's best epoch, picked on the validation images it is "
                       "measured on", err=True)
        if total > len(ranked):
            one_study = ", --study ID|NAME one study" if study_id is None else ""  # not where it was given
            click.echo(f"the best {len(ranked)} of {total} runs: --limit 0 shows all{one_study}", err=True)


def _differing(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """`rows` without those of `keys` whose value is the same in every row (a terminal's width is for
    what tells the runs apart; JSON and CSV keep every column)."""
    same = {key for key in keys if len({str(row.get(key)) for row in rows}) <= 1}
    return [{k: v for k, v in row.items() if k not in same} for row in rows]


def _print_analysis(analysis: StudyAnalysis, fmt: str) -> None:
    from orchestrator.analysis.rows import csv_rows, data_rows, display_rows, settings_line, study_title, verdict_lines

    if fmt in ("json", "csv"):
        click.echo(json.dumps(data_rows(analysis), indent=2) if fmt == "json" else render(csv_rows(analysis), "csv"))
        for line in verdict_lines(analysis):  # rows for a script; the notes that qualify them for its reader
            if line.startswith("note: "):
                click.echo(line, err=True)
    elif fmt == "md":
        click.echo(f"**{study_title(analysis)}** ({settings_line(analysis)})\n")
        click.echo(render(display_rows(analysis), "md") + "\n")
        click.echo("\n".join(f"- {line}" for line in verdict_lines(analysis)))
    else:
        print_table(display_rows(analysis), title=f"{study_title(analysis)}\n{settings_line(analysis)}")
        width = shutil.get_terminal_size((100, 24)).columns
        click.echo("\n".join(textwrap.fill(line, width, subsequent_indent="    ") for line in verdict_lines(analysis)))


def _write_files(analysis: StudyAnalysis, html_path: Path | None, plot_path: Path | None, chart: str) -> None:
    from orchestrator.analysis.charts import SINGLE_CHARTS, save
    from orchestrator.analysis.html import page

    if plot_path is not None:
        figure = SINGLE_CHARTS[chart](analysis)
        if figure is None:
            why = {"groups": "its configs keep groups fixed", "width": "its configs keep the width multiplier fixed"}.get(
                chart, "its configs do not differ in GMACs")
            raise OrchError(f"--chart: this selection has no {chart} chart ({why})")
        save(figure, plot_path)
        click.echo(f"wrote {plot_path} ({chart} chart)", err=True)  # stdout: --format output only
    if html_path is not None:
        text, drawn = page(analysis)
        html_path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {html_path} (charts: {', '.join(drawn)})", err=True)
