"""A study's analysis as rows: full numbers for JSON and CSV, readable cells for the terminal and Markdown."""
from __future__ import annotations

from typing import Any

from orchestrator.analysis.chance import chance_note
from orchestrator.analysis.configs import short_names, show
from orchestrator.analysis.curves import diverged
from orchestrator.analysis.image_error import images_kind
from orchestrator.analysis.notes import (
    absent_note,
    precision_shown,
    scored_precision_note,
    trained_precision_note,
    unscored_note,
)
from orchestrator.analysis.running_stats import running_stats_note
from orchestrator.analysis.stats import Summary, fixed
from orchestrator.analysis.study import StudyAnalysis, judges_convergence, scale_of
from orchestrator.fields import TRAIN_FIELDS
from orchestrator.metrics import metric_title
from orchestrator.report import COLUMN_FOR, config_columns


def data_rows(analysis: StudyAnalysis) -> list[dict[str, Any]]:
    """One flat row per config, best first: every statistic as a number (JSON, CSV)."""
    metric = analysis.metric
    names = short_names(sorted({k for r in analysis.results for k in r.config.fields}))
    rows = []
    for result in analysis.results:
        config, summary, comp = result.config, result.summary, result.comparison
        rows.append({
            "rank": result.rank, "config": config.label,
            # the leaderboard's config columns (the grid axes), as `orch report` without --study has them
            **{k: v for k, v in config_columns(config.runs[0].spec).items() if k != "seed"},
            "fields": {names[k]: config.fields.get(k) for k in analysis.varying},
            f"{metric}_mean": summary.mean, f"{metric}_std": summary.std,
            f"{metric}_ci95_low": _at(summary.ci, 0), f"{metric}_ci95_high": _at(summary.ci, 1),
            "n": summary.n, "seeds": sorted(config.by_seed(metric)), "interval_note": summary.note or None,
            "test_acc_mean": result.test.mean, "test_acc_n": result.test.n,
            "test_precision": sorted({run.test_precision for run in config.runs if run.test_precision}),
            "params": config.info("params"), "gmacs": config.info("gmacs"),
            "images_per_s": _mean(config.by_seed("images_per_s")), "precision": list(config.precisions()),
            "vs_baseline": comp.outcome, "diff": comp.diff, "diff_ci95_low": _at(comp.ci, 0),
            "diff_ci95_high": _at(comp.ci, 1), "p_value": comp.p, "p_adjusted": comp.p_adjusted, "paired_seeds": comp.seeds,
            # the validation images (test_acc: test images) whose sampling error p and the interval count
            # (null: hits not recorded), and the p-value over the seeds alone beside it
            "images_counted": comp.images, "p_seeds_only": comp.p_seeds,
            # null both where no estimate exists and where over MAX_SEEDS are needed: the flags tell them apart
            "seeds_for_80_power": comp.seeds_needed, "seeds_for_80_power_over_max": comp.beyond_max,
            "seeds_for_80_power_too_few_images": comp.too_few_images,
            "verdict": comp.verdict,
            "converged": result.convergence is None if judges_convergence(metric) else None,
            "convergence": result.convergence,
            "at_chance": result.at_chance,
            "job_ids": [run.id for run in config.runs], "config_hash": config.key[:12],
        })
    return rows


def csv_rows(analysis: StudyAnalysis) -> list[dict[str, Any]]:
    """data_rows with lists joined and the varying fields as their own columns, where the leaderboard's
    axis columns do not hold them already (field_norm beside norm said the same twice)."""
    rows = []
    for row in data_rows(analysis):
        fields = row.pop("fields")
        flat = {**row, **{f"field_{k}": show(v) for k, v in fields.items() if k not in row}}
        rows.append({k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in flat.items()})
    return rows


def csv_header(metric: str) -> str:
    """csv_rows' header for a study with no finished run (no field varies among configs it has none
    of): a script reading the CSV finds the columns it reads, where a blank line had none."""
    axes = [COLUMN_FOR.get(f.dest, f.dest) for f in TRAIN_FIELDS if f.axis and f.dest != "seed"]
    stats = [f"{metric}_mean", f"{metric}_std", f"{metric}_ci95_low", f"{metric}_ci95_high", "n", "seeds",
             "interval_note", "test_acc_mean", "test_acc_n", "test_precision", "params", "gmacs", "images_per_s",
             "precision", "vs_baseline", "diff", "diff_ci95_low", "diff_ci95_high", "p_value", "p_adjusted",
             "paired_seeds", "images_counted", "p_seeds_only", "seeds_for_80_power", "seeds_for_80_power_over_max",
             "seeds_for_80_power_too_few_images", "verdict", "converged", "convergence", "at_chance", "job_ids",
             "config_hash"]  # data_rows' own, in its order: a test holds the two together
    return ",".join(["rank", "config", *axes, *stats])


def display_rows(analysis: StudyAnalysis) -> list[dict[str, Any]]:
    """The terminal's and Markdown's table: narrow enough for 100 columns; verdicts go below it."""
    scale = scale_of(analysis.metric)
    unit = " %" if scale.factor == 100 else ""
    rows = []
    for result in analysis.results:
        comp = result.comparison
        row = {"#": result.rank, "config": result.config.label,
               f"{analysis.metric}{unit}": _pm(result.summary, scale.factor),
               "95% CI": _interval(result.summary, scale.factor), "n": result.summary.n,
               f"Δ{' pts' if unit else ''}": _delta(comp.diff, comp.outcome, scale.factor),
               # the p that decides the verdict: Holm's where the study makes several comparisons
               "p": "" if comp.p is None else f"{comp.p if comp.p_adjusted is None else comp.p_adjusted:.2g}"}
        if analysis.metric != "test_acc" and any(r.test.n for r in analysis.results):
            partial = 0 < result.test.n != result.summary.n  # some seeds scored: say over how many
            row["test %"] = _pm(result.test, 100.0) + (f" (n={result.test.n})" if partial else "")
        row["GMACs"] = result.config.info("gmacs")
        row["conv"] = ("-" if not judges_convergence(analysis.metric) else "yes" if result.convergence is None
                       else "DIV" if diverged(result.convergence) else "NO")
        rows.append(row)
    return rows


def _what_is_above(n: int) -> str:
    """A lone config's table: one run has a value but no interval (the note claimed one of a single scored seed)."""
    return "its mean and 95% interval are above" if n > 1 else "one run: its value is above, with no interval"


def verdict_lines(analysis: StudyAnalysis) -> list[str]:
    """Plain words under the table: each config against the baseline, then the convergence flags."""
    base = analysis.baseline.config.label
    family = sum(r.comparison.p_adjusted is not None for r in analysis.results)
    # "the 2 comparisons" under 3 shown: one of identical seeds has no p-value to adjust
    which = "" if family == len(analysis.results) - 1 else " that have a p-value"
    adjusted = "" if not family else (f"; p adjusted for the {family} comparisons{which} "
                                          "together (Holm), so that a study of equal configs calls one better "
                                          "or worse at most 5% of the time")
    # one seed a config: no interval anywhere (its note says so) to be "from the t distribution"
    intervals = (", 95% intervals from the t distribution" if any(r.summary.n > 1 for r in analysis.results)
                 else "; no config has 2 seeds: no interval or p-value")
    counted = sorted({r.comparison.images for r in analysis.results if r.comparison.images})
    images = ("" if not counted else f"; the comparisons count the sampling error of the "
              f"{' or '.join(map(str, counted))} {images_kind(analysis.metric)} images too (every run recorded "
              "which it got right)")
    how = ("one run each: differences only, no interval or p-value" if analysis.study is None else
           f"paired by seed{intervals}{images}{adjusted}")  # `--job`: single jobs
    lines = [f"baseline: {base} ({analysis.baseline_how}); {how}" if len(analysis.results) > 1 else
             f"one config, {base}: nothing to compare it with ({_what_is_above(analysis.baseline.summary.n)})"]
    if analysis.metric == "images_per_s":
        lines.append("note: images/s is the machine's as much as the config's: a difference is the configs' own "
                     "only where their runs shared one machine and its load, and each mean counts the first "
                     "epoch's start-up")
    for result in analysis.results:
        if result is not analysis.baseline:
            # "no detectable difference" of an lr=10 that blew up read as a finding about the lr
            blown = [r.config.label for r in (result, analysis.baseline) if diverged(r.convergence)]
            void = f" (but {' and '.join(blown)} diverged: this compares no result)" if blown else ""
            lines.append(f"{result.config.label} vs {base}: {result.comparison.verdict}{void}")
    for result in analysis.results:
        if result.convergence:
            lines.append(f"{result.config.label}: {result.convergence}")
    if judges_convergence(analysis.metric):  # an accuracy or loss measured in evaluation, not a speed
        lines += [f"note: {r.config.label}: {note}" for r in analysis.results if (note := running_stats_note(r.config))]
    at_chance = [r.config.label for r in analysis.results if r.at_chance]
    if analysis.nothing_learned:
        at_chance = [r.config.label for r in analysis.results]
    if at_chance and analysis.chance is not None:
        note = f"note: {chance_note(at_chance, len(analysis.results), analysis.chance)}"
        # nothing learned anywhere voids every line below the baseline's: say it before them
        lines.insert(1 if len(at_chance) == len(analysis.results) else len(lines), note)
    if analysis.absent:  # a whole config may be missing: said under the baseline, where it is read
        lines.insert(1, absent_note(analysis.absent, analysis.absent_labels))
    notes: dict[str, list[str]] = {}
    for result in analysis.results:
        if result.summary.note:
            notes.setdefault(result.summary.note, []).append(result.config.label)
    lines += [f"note: {note} ({', '.join(labels)})" for note, labels in notes.items()]
    unpaired = _partly_paired(analysis)
    if unpaired:  # bn 70.0, gn 50.5 and a Δ of +19.0 read as a wrong sum
        lines.append(f"note: Δ pairs the seeds both configs ran, so it is not the difference of the means where "
                     f"one has seeds the other lacks: {'; '.join(unpaired)}")
    if analysis.first_by_last_epoch is not None:
        lines.append(f"note: by each run's last epoch (--metric last_val_acc) {analysis.first_by_last_epoch.label} "
                     f"ranks first, not {analysis.results[0].config.label}: the best epochs are picked on the "
                     f"validation images they are measured on")
    lines += [f"note: {said}" for said in (trained_precision_note(analysis), scored_precision_note(analysis),
                                           unscored_note(analysis)) if said]
    unfinished = [f"{run.id} ({run.status})" for run in analysis.runs if run.status != "succeeded"]
    if unfinished:
        lines.append(f"note: not finished, so their numbers may change or stop here: jobs {', '.join(unfinished)}")
    return lines


def _partly_paired(analysis: StudyAnalysis) -> list[str]:
    """'norm=gn: seeds 0,1 of its 0,1,2 and the baseline's 0,1,3' for each comparison over fewer seeds
    than the two configs' means are over (`orch report --job` pairs nothing: its comparisons have no seeds)."""
    base = sorted(analysis.baseline.config.by_seed(analysis.metric))
    said = []
    for result in analysis.results:
        own = sorted(result.config.by_seed(analysis.metric))
        if result is analysis.baseline or not result.comparison.seeds or own == base == result.comparison.seeds:
            continue
        seeds = ",".join(map(str, result.comparison.seeds))
        said.append(f"{result.config.label}: seeds {seeds} of its {','.join(map(str, own))} and the baseline's "
                    f"{','.join(map(str, base))}")
    return said


def study_title(analysis: StudyAnalysis) -> str:
    study = analysis.study
    if study is None:  # `orch report --job`: one run per row
        return f"selected jobs: {metric_title(analysis.metric)} per job"
    name = f"study {study.id}" + (f" ({study.name})" if study.name else "")
    return f"{name}: {metric_title(analysis.metric)} mean ± std over seeds"


def settings_line(analysis: StudyAnalysis) -> str:
    """The headline settings every config shares (the rest are in JSON and the HTML page)."""
    shown = [f"{k}={show(v)}" for k, v in analysis.common.items()
             if k in ("arch", "epochs", "image_size", "batch_size", "lr", "optimizer", "schedule")]
    precision = precision_shown(analysis)  # what ran, not what was asked (auto): the numbers move with it
    return " ".join(shown + ([f"precision={precision}"] if precision else []))


def _digits(factor: float) -> int:
    return 1 if factor == 100.0 else 4  # accuracy in percent; a loss as it is


def _pm(summary: Summary, factor: float) -> str:
    if summary.mean is None:
        return ""
    d = _digits(factor)
    if summary.std is None:
        return fixed(factor * summary.mean, d)
    return f"{fixed(factor * summary.mean, d)} ± {fixed(factor * summary.std, d)}"


def _interval(summary: Summary, factor: float) -> str:
    if summary.ci is None:
        return "-"
    d = _digits(factor)
    return f"{fixed(factor * summary.ci[0], d)}..{fixed(factor * summary.ci[1], d)}"


def _delta(diff: float | None, outcome: str, factor: float) -> str:
    if outcome == "baseline":
        return "base"
    return "-" if diff is None else fixed(factor * diff, _digits(factor), sign=True)


def _at(pair: tuple[float, float] | None, index: int) -> float | None:
    return None if pair is None else pair[index]


def _mean(values: dict[int, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None
