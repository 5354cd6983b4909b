"""One self-contained HTML page: the answer in words, the tables, every chart as inline SVG.

No script, no stylesheet link, no font or image from the network: the page reads the same offline
and as an e-mail attachment.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from orchestrator.analysis import charts
from orchestrator.analysis.configs import show
from orchestrator.analysis.image_error import images_kind
from orchestrator.analysis.notes import precision_shown
from orchestrator.analysis.rows import display_rows, verdict_lines
from orchestrator.analysis.study import StudyAnalysis, scale_of
from orchestrator.metrics import metric_title
from shared.store.report_reads import RunRecord
from shared.versions import installed_version

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#1b1f24}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#57606a}.verdicts li{margin:.2em 0}.flag{color:#9a6700}figure{margin:1em 0}
figure svg{max-width:100%;height:auto}figcaption{color:#57606a;font-size:12px}code{background:#f6f8fa;padding:0 3px}
table,pre,figure{max-width:100%;overflow-x:auto}table{display:block}figure svg{min-width:600px}
"""
# On a phone (390 px) a wide table or chart scrolls in its own box: the page itself was 716 px wide, its
# tables cut at the screen's edge, and a chart shrunk to the screen had 4 px text. 600 px keeps the widest
# chart's 9 pt text near 7 px.
CAPTIONS = {
    "final": "",  # the metric's own: final_caption
    "curves": "",  # one run or a mean over seeds: charts.curves_title
    "groups": "The metric against the group count (log2 axis), one line per setting of the other fields; labels "
              "give each model's GMACs per image.",
    "width": "The metric against the width multiplier (log2 axis), one line per setting of the other fields; "
             "labels give each model's GMACs per image.",
    "pareto": "Accuracy against GMACs and parameters: the dashed line joins the configs that no other config "
              "beats on both cost and accuracy.",
}


def final_caption(analysis: StudyAnalysis) -> str:
    """The final chart's caption, for the metric it shows (it explained val_acc under a chart of images/s)."""
    which = {"val_acc": " (each run's best epoch, the checkpoint that scoring uses)",
             "last_val_acc": " (each run's last epoch)"}.get(analysis.metric, "")
    # one seed a config (or `--job`'s one run each) has no interval to caption
    images = (f", or the {images_kind(analysis.metric)} images' sampling error where wider"
              if analysis.metric in ("val_acc", "last_val_acc", "test_acc") else "")  # a loss or a speed has none
    spread = (f"the mean over seeds with its 95% interval (t distribution over seeds{images}), "
              if any(r.summary.n > 1 for r in analysis.results) else "")
    parts = [f"{metric_title(analysis.metric)} per config: {spread}each seed{which} as a dot"
             f"{'' if spread else ' (no config has 2 seeds: no interval)'}"]
    if charts.shows_test_accuracy(analysis):
        parts.append("a diamond marks test accuracy where the runs were scored")
    if any(r.convergence for r in analysis.results):
        parts.append("* marks a config that had not converged")
    return "; ".join(parts) + "."


def page(analysis: StudyAnalysis) -> tuple[str, list[str]]:
    """The HTML text and the names of the charts it holds; the study's jobs left out of its numbers
    (analysis.absent) are named among its verdicts, as the terminal names them."""
    figures = {name: draw(analysis) for name, draw in charts.CHARTS.items()}
    drawn = {name: charts.inline_svg(fig) for name, fig in figures.items() if fig is not None}
    captions = {**CAPTIONS, "final": final_caption(analysis), "curves": f"{charts.curves_title(analysis)}."}
    body = [_header(analysis), _answer(analysis), _leaderboard(analysis), _comparisons(analysis),
            _charts(drawn, captions), _runs(analysis), _settings(analysis)]
    title = escape(_title(analysis))
    html = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{title}</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    return html, list(drawn)


def _title(analysis: StudyAnalysis) -> str:
    study = analysis.study
    if study is None:
        return "orch report: selected jobs"
    return f"orch report: study {study.id}" + (f" ({study.name})" if study.name else "")


def _header(analysis: StudyAnalysis) -> str:
    runs = analysis.runs
    started = [r.started_at for r in runs if r.started_at]
    finished = [r.finished_at for r in runs if r.finished_at]
    hosts = sorted({worker_host(r.worker_host) for r in runs})
    facts = [
        ("study created", _when(analysis.study.created_at) if analysis.study else "-"),
        ("runs", f"{len(runs)} finished jobs in {len(analysis.results)} configs"
                 f"{f' ({len(analysis.absent)} more not finished: see the answer)' if analysis.absent else ''}, first started "
                 f"{_when(min(started, default=None))}, last finished {_when(max(finished, default=None))}"),
        ("worker hosts", ", ".join(hosts)),
        ("versions", _versions(runs)),
        ("written", f"{_when(datetime.now(UTC))} by orch {installed_version('orch')}"),
    ]
    items = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return f"<h1>{escape(_title(analysis))}</h1>\n<table class=\"meta\">{items}</table>"


def _answer(analysis: StudyAnalysis) -> str:
    lines = verdict_lines(analysis)  # the jobs left out among them (StudyAnalysis.absent)
    flag = ' class="flag"'
    items = "".join(f"<li{flag if 'not converged' in line else ''}>{escape(line)}</li>" for line in lines)
    return f"<h2 id=\"answer\">The answer</h2>\n<ul class=\"verdicts\">{items}</ul>"


def _leaderboard(analysis: StudyAnalysis) -> str:
    rows = display_rows(analysis)
    for row, result in zip(rows, analysis.results, strict=True):
        row["params"] = f"{result.config.info('params') / 1e6:.2f}M" if result.config.info("params") else ""
        row["seeds"] = ",".join(map(str, sorted(result.config.by_seed(analysis.metric))))
        row["jobs"] = ",".join(str(run.id) for run in result.config.runs)
    return "<h2 id=\"leaderboard\">Leaderboard</h2>\n" + table(rows)


def _comparisons(analysis: StudyAnalysis) -> str:
    scale = scale_of(analysis.metric)
    rows = []
    for result in analysis.results:
        comp = result.comparison
        rows.append({
            "config": result.config.label, "vs baseline": comp.outcome,
            "difference": "" if comp.diff is None or result is analysis.baseline else scale.delta(comp.diff),
            "95% CI": "" if comp.ci is None else scale.interval(*comp.ci),
            "p": "" if comp.p is None else f"{comp.p:.2g}",
            "p (Holm)": "" if comp.p_adjusted is None else f"{comp.p_adjusted:.2g}",
            "paired seeds": ",".join(map(str, comp.seeds)),
            "seeds for 80% power": comp.seeds_cell, "verdict": comp.verdict})
    base = escape(analysis.baseline.config.label)
    return (f"<h2 id=\"comparison\">Paired comparison against {base}</h2>\n<p class=\"meta\">Differences are "
            f"config minus baseline on each seed both have; the interval and the p-value come from the paired "
            f"t-test, unadjusted, or, where every run recorded which {images_kind(analysis.metric)} images it got right and those "
            f"images' own sampling error is the larger, from the seeds-by-images analysis that counts it; p (Holm) is adjusted for the study's comparisons together and decides the "
            f"verdict (the leaderboard's p); the seed count is the fewest that would detect the observed "
            f"difference with 80% power at 5% divided by the number of comparisons (a rough figure).</p>\n"
            + table(rows))


def _charts(drawn: dict[str, str], captions: dict[str, str]) -> str:
    index = " · ".join(f"<a href=\"#chart-{name}\">{name}</a>" for name in drawn)
    figures = "".join(f"<figure id=\"chart-{name}\" data-chart=\"{name}\">{svg}<figcaption>{escape(captions[name])}"
                      f"</figcaption></figure>\n" for name, svg in drawn.items())
    return f"<h2 id=\"charts\">Charts</h2>\n<p class=\"meta\">charts: {index}</p>\n{figures}"


def _runs(analysis: StudyAnalysis) -> str:
    by_job = {run.id: result.config.label for result in analysis.results for run in result.config.runs}
    rows = [_run_row(run, by_job[run.id]) for run in analysis.runs]
    if any(run.attempts > 1 for run in analysis.runs):  # a takeover after a dead worker showed only the last worker
        rows = [{**row, "attempts": run.attempts} for row, run in zip(rows, analysis.runs, strict=True)]
    return "<h2 id=\"runs\">Runs</h2>\n" + table(rows)


def _run_row(run: RunRecord, label: str) -> dict[str, Any]:
    best = max(run.epochs, key=lambda e: (e["val_acc"], -e["epoch"]))
    return {"job": run.id, "config": label, "seed": run.spec.get("seed"), "status": run.status,
            "epochs": len(run.epochs), "best val_acc": f"{100 * best['val_acc']:.2f}%",
            "test_acc": "" if run.test_acc is None else f"{100 * run.test_acc:.2f}%",
            "worker": run.worker_host or "", "started": _when(run.started_at), "finished": _when(run.finished_at)}


def worker_host(worker: str | None) -> str:
    """The machine of a job's worker: NAME@HOST (a Celery node name) or HOST:PID (older runs)."""
    if not worker:
        return "?"
    return worker.partition("@")[2] if "@" in worker else worker.rsplit(":", 1)[0]


def applies(key: str, common: dict[str, Any]) -> bool:
    """Whether a shared setting did anything: momentum is SGD's only; val_fraction splits the training
    folder only where no --val was given."""
    if key == "momentum":
        return common.get("optimizer") == "sgd"
    if key == "val_fraction":
        return not common.get("val")
    return True


def _settings(analysis: StudyAnalysis) -> str:
    shared = {k: show(v) for k, v in analysis.common.items() if applies(k, analysis.common)}
    if "precision" in shared:
        shared["precision"] = precision_shown(analysis) or shared["precision"]
    common = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in shared.items())
    return (f"<h2 id=\"settings\">Settings</h2>\n<p class=\"meta\">Shared by every config:</p><table>{common}</table>"
            f"\n{_submitted(analysis.study.grid if analysis.study else {})}")


def _submitted(grid: dict[str, Any]) -> str:
    """The study's options as submitted: each submission's own, where it was extended."""
    from shared.store.schema import GRID_SUBMISSIONS

    each = grid.get(GRID_SUBMISSIONS) or [grid]
    title = ("The study as submitted:" if len(each) == 1 else
             f"The study was submitted {len(each)} times (its runs are the cells of each, not of one grid over them all):")
    blocks = "".join(f"<pre><code>{escape(json.dumps(options, indent=2, sort_keys=True, default=str))}</code></pre>"
                     for options in each)
    return f"<p class=\"meta\">{title}</p>{blocks}"


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(_cell(v) for v in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<td class=\"num\">{escape(show(value))}</td>"
    return f"<td>{escape('' if value is None else str(value))}</td>"


def _versions(runs: list[RunRecord]) -> str:
    seen = sorted({f"orch {v.get('orch', '?')}, torch {v.get('torch', '?')}"
                   for v in (run.result.get("versions") for run in runs) if v})
    recorded = "; ".join(seen) if seen else "not recorded by these runs' workers"
    return f"workers: {recorded}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"
