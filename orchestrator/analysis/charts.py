"""The report's charts, drawn with matplotlib's object API on the Agg canvas (no pyplot, no display).

Each chart function takes a StudyAnalysis and returns a Figure, or None when the study does not
have what the chart shows (a groups chart for a study that keeps groups fixed, a width chart for one
that keeps the width multiplier fixed).
"""
from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.analysis.configs import short_names, show
from orchestrator.analysis.curves import curve
from orchestrator.analysis.study import VALIDATION_ACCURACY, ConfigResult, StudyAnalysis, scale_of
from orchestrator.metrics import metric_title

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GROUPS_FIELD = "model.groups"
WIDTH_FIELD = "model.width_mult"
CURVES = (("val_acc", "validation accuracy (%)", 100.0), ("train_loss", "training loss", 1.0))


def new_figure(width: float, height: float, panels: int = 1) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                                "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3})
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def colours(analysis: StudyAnalysis) -> dict[str, Any]:
    """One colour per config, in submission order, the same in every chart of the page."""
    from matplotlib import colormaps

    labels = [r.config.label for r in sorted(analysis.results, key=lambda r: r.config.runs[0].id)]
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: palette(i % palette.N) for i, label in enumerate(labels)}


def final_chart(analysis: StudyAnalysis) -> Figure:
    """Each config's metric: the mean with its 95% interval, every seed as a dot, best at the top."""
    figure, (ax,) = new_figure(7.5, 1.2 + 0.42 * len(analysis.results))
    draw_final(ax, analysis, colours(analysis))
    return figure


def draw_final(ax: Axes, analysis: StudyAnalysis, palette: dict[str, Any]) -> None:
    scale, results = scale_of(analysis.metric), analysis.results
    tested = shows_test_accuracy(analysis)
    for row, result in enumerate(results):
        y, colour = len(results) - row, palette[result.config.label]
        seeds = [scale.factor * v for v in result.config.by_seed(analysis.metric).values()]
        ax.scatter(seeds, apart(seeds, y), s=14, color=colour, alpha=0.45, zorder=2)
        if result.summary.mean is None:
            continue
        mean = scale.factor * result.summary.mean
        if result.summary.ci is not None:
            ax.errorbar(mean, y, xerr=error_bars([result], scale.factor), fmt="none", ecolor=colour, capsize=4, lw=1.6)
        ax.scatter([mean], [y], s=46, color=colour, edgecolor="black", linewidth=0.6, zorder=3)
        if result.test.mean is not None and tested:  # just below its row, so that it never hides the mean
            ax.scatter([100 * result.test.mean], [y - 0.22], marker="D", s=26, facecolor="white", edgecolor=colour,
                       zorder=3)
    ax.set_yticks(range(len(results), 0, -1), [_tick(r, analysis) for r in results])
    ax.set_ylim(0.4, len(results) + 0.6)
    draw_chance(ax, analysis, vertical=True)
    diamonds = ", \u25c7 test accuracy" if tested else ""
    # what is drawn: `orch report --job` runs are one each, and promised intervals it had none of
    shown = ("mean, 95% CI, seeds as dots" if any(r.summary.ci is not None for r in results)
             else "one run each: no interval" if all(r.summary.n == 1 for r in results)
             else "one run or none each: no interval" if all(r.summary.n <= 1 for r in results) else "mean, seeds as dots")
    ax.set_xlabel(f"{analysis.metric}{' (%)' if scale.factor == 100 else ''}: {shown}{diamonds}")
    flagged = "; * not converged" if any(r.convergence for r in results) else ""
    # two lines: in the overview, one ran into the curves' title beside it
    ax.set_title(f"{metric_title(analysis.metric)} per config\n(best first{flagged})", loc="left")


def apart(values: list[float], y: float, most: float = 0.3) -> list[float]:
    """Each value's height on its row: equal values a little above and below it, alternately. Seeds of
    63, 50 and 50 drew two dots under a caption that says each seed is one."""
    repeats: dict[float, int] = {}
    places = []
    for value in values:
        nth = repeats[round(value, 9)] = repeats.get(round(value, 9), -1) + 1
        places.append((nth + 1) // 2 * (1 if nth % 2 else -1))  # 0, +1, -1, +2, -2 steps
    largest = max(map(abs, places), default=0)
    step = min(0.09, most / largest) if largest else 0.0  # ten alike stay within their row
    return [y + step * place for place in places]


def draw_chance(ax: Axes, analysis: StudyAnalysis, vertical: bool) -> None:
    """Chance level as a dotted line on a validation accuracy's axis: a study where nothing learned
    looked like a ranking, its 50% bars read as results."""
    if analysis.chance is None or analysis.metric not in VALIDATION_ACCURACY:
        return
    level = 100 * analysis.chance.level
    line = ax.axvline if vertical else ax.axhline
    line(level, color="0.45", ls=":", lw=1.2, zorder=1)
    # on a white ground above the points and lines: a Pareto marker and the curves covered it
    label: dict[str, Any] = {"fontsize": 7, "color": "0.35", "zorder": 5, "textcoords": "offset points",
                             "bbox": {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}}
    if vertical:
        ax.annotate(f"chance {level:.0f}%", (level, 1), xycoords=("data", "axes fraction"), xytext=(3, -10), **label)
    else:  # beyond the axes' right edge: inside, it covered the end of a curve that finished near chance
        ax.annotate(f"chance\n{level:.0f}%", (1, level), xycoords=("axes fraction", "data"), xytext=(3, 0),
                    ha="left", va="center", annotation_clip=False, **label)


def shows_test_accuracy(analysis: StudyAnalysis) -> bool:
    """Test accuracy as a diamond beside a validation accuracy: on the same axis, and not beside
    itself (--metric test_acc) or on a loss's or images/s's axis (it sat at 71 on a 0-1 loss axis)."""
    return analysis.metric in VALIDATION_ACCURACY and any(r.test.mean is not None for r in analysis.results)


def _tick(result: ConfigResult, analysis: StudyAnalysis) -> str:
    mark = " (baseline)" if result is analysis.baseline else ""
    flag = " *" if result.convergence else ""
    # a config with no run scored (--metric test_acc) had an empty row that read as a value off the axis
    none = " (no value)" if result.summary.mean is None else ""
    return f"{result.config.label}{mark}{flag}{none}"


def curves_chart(analysis: StudyAnalysis) -> Figure:
    """Validation accuracy and training loss per epoch: the mean over seeds and a band from min to max."""
    figure, axes = new_figure(11, 4.2, panels=2)
    palette = colours(analysis)
    for ax, (key, title, factor) in zip(axes, CURVES, strict=True):
        draw_curves(ax, analysis, palette, key, factor)
        ax.set_title(title, loc="left")
    draw_chance(axes[0], analysis, vertical=False)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
    figure.suptitle(curves_title(analysis), x=0.01, ha="left", fontsize=10)
    return figure


def curves_title(analysis: StudyAnalysis) -> str:
    """What a curve is: one run (every config one seed, or `orch report --job`), or a mean over seeds
    (the page's caption said "mean over seeds" under a chart of one run per line)."""
    if all(len(r.config.runs) == 1 for r in analysis.results):
        return "Learning curves: one run per line"
    return "Learning curves: mean over seeds, band from the lowest to the highest seed"


def draw_curves(ax: Axes, analysis: StudyAnalysis, palette: dict[str, Any], key: str, factor: float) -> None:
    from matplotlib.ticker import MaxNLocator

    for result in analysis.results:
        line = curve(result.config, key)
        colour = palette[result.config.label]
        ax.plot(line.epochs, [factor * v for v in line.mean], color=colour, marker="o", ms=3,
                label=result.config.label)
        if len(result.config.runs) > 1:
            ax.fill_between(line.epochs, [factor * v for v in line.low], [factor * v for v in line.high],
                            color=colour, alpha=0.15, linewidth=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: one tick, not 0.945...


def overview_chart(analysis: StudyAnalysis) -> Figure:
    """The answer at a glance (the README's picture): final metric with intervals beside the
    validation curves that show whether each config had finished learning."""
    figure, axes = new_figure(11, max(3.4, 1.4 + 0.42 * len(analysis.results)), panels=2)
    palette = colours(analysis)
    draw_final(axes[0], analysis, palette)
    key, title, factor = CURVES[0]
    draw_curves(axes[1], analysis, palette, key, factor)
    draw_chance(axes[1], analysis, vertical=False)
    axes[1].set_title(f"{title} per epoch\n(mean and seed range)", loc="left")
    axes[1].legend(fontsize=8, frameon=False)
    return figure


def groups_chart(analysis: StudyAnalysis) -> Figure | None:
    """The metric against the group count (ResNeXt's cardinality, ShuffleNet v1's groups)."""
    archs = {r.config.fields.get("model.arch") for r in analysis.results}
    meaning = ("ShuffleNet v1's group count" if archs == {"shufflenet_v1"} else
               "cardinality" if "shufflenet_v1" not in archs else "cardinality; ShuffleNet v1's group count")
    return axis_chart(analysis, GROUPS_FIELD, f"groups ({meaning})", "the group count")


def width_chart(analysis: StudyAnalysis) -> Figure | None:
    """The metric against the width multiplier of the mobile nets."""
    return axis_chart(analysis, WIDTH_FIELD, "width multiplier", "the width multiplier")


def axis_chart(analysis: StudyAnalysis, field: str, label: str, title: str) -> Figure | None:
    """The metric against a numeric axis (log2), one line per setting of the other varying fields;
    None unless the study varies that axis."""
    if field not in analysis.varying:
        return None
    scale = scale_of(analysis.metric)
    lines = _lines_by_other_fields(analysis, field)
    figure, (ax,) = new_figure(7.5, 4.4)
    for index, (name, results) in enumerate(lines.items()):
        results = sorted((r for r in results if r.summary.mean is not None and r.config.fields.get(field) is not None),
                         key=lambda r: r.config.fields[field])
        nudge = 2 ** (0.04 * (index - (len(lines) - 1) / 2))  # side by side, so error bars stay apart
        xs = [r.config.fields[field] * nudge for r in results]
        ys = [scale.factor * r.summary.mean for r in results]  # type: ignore[operator]
        ax.errorbar(xs, ys, yerr=error_bars(results, scale.factor), marker="o", capsize=4, label=name)
    ax.set_xscale("log", base=2)
    values = sorted({r.config.fields[field] for r in analysis.results if r.config.fields.get(field) is not None})
    ax.set_xticks(values, [_axis_tick(v, field, analysis) for v in values])
    ax.minorticks_off()
    ax.set_xlabel(f"{label}, log2 axis, with the model's GMACs per image")
    ax.set_ylabel(f"{analysis.metric}{' (%)' if scale.factor == 100 else ''}, mean and 95% CI")
    ax.set_title(f"Metric against {title}", loc="left")
    draw_chance(ax, analysis, vertical=False)  # as the final and curves charts have it
    ax.legend(fontsize=8)
    return figure


def _lines_by_other_fields(analysis: StudyAnalysis, field: str) -> dict[str, list[ConfigResult]]:
    others = [k for k in analysis.varying if k != field]
    names = short_names(sorted({k for r in analysis.results for k in r.config.fields}))
    lines: dict[str, list[ConfigResult]] = {}
    for result in analysis.results:
        name = " ".join(f"{names[k]}={show(result.config.fields.get(k))}" for k in others) or analysis.metric
        lines.setdefault(name, []).append(result)
    return lines


def _axis_tick(value: float, field: str, analysis: StudyAnalysis) -> str:
    """'8' and the GMACs of the configs at 8 (a range when another field changes them)."""
    gmacs = sorted({r.config.info("gmacs") for r in analysis.results
                    if r.config.fields.get(field) == value and r.config.info("gmacs") is not None})
    if not gmacs:
        return show(value)
    # 3 significant digits: a ShuffleNet at 32 px costs 0.008 GMACs, which 2 decimals showed as 0.01
    shown = f"{gmacs[0]:.3g}" if len(gmacs) == 1 else f"{gmacs[0]:.3g}-{gmacs[-1]:.3g}"
    return f"{show(value)}\n{shown} GMACs"


def error_bars(results: list[ConfigResult], factor: float) -> list[list[float]]:
    """Distances from each mean to its interval's ends (uneven where the interval was cut at 0 or 100%)."""
    below, above = [], []
    for result in results:
        mean, ci = result.summary.mean or 0.0, result.summary.ci or (result.summary.mean or 0.0,) * 2
        below.append(factor * (mean - ci[0]))
        above.append(factor * (ci[1] - mean))
    return [below, above]


def pareto_chart(analysis: StudyAnalysis) -> Figure | None:
    """The metric against GMACs and against parameters; the configs no other beats on both are joined.

    None when the configs do not differ in cost (a norm-only study): there is no front to draw.
    """
    from matplotlib.ticker import MaxNLocator

    scale = scale_of(analysis.metric)
    points = [r for r in analysis.results if r.summary.mean is not None and r.config.info("gmacs") is not None]
    if not any(_spread(r.config.info(key) for r in points) >= SAME_COST for key in ("gmacs", "params")):
        return None  # every config costs about the same (SE beside none: 0.2% more GMACs): nothing to trade off
    figure, axes = new_figure(11, 4.2, panels=2)
    palette = colours(analysis)
    costs = (("gmacs", "GMACs per image", 1.0), ("params", "parameters (M)", 1e-6))
    for ax, (key, label, factor) in zip(axes, costs, strict=True):
        xy = [(factor * r.config.info(key), scale.factor * r.summary.mean, r) for r in points]  # type: ignore
        for x, y, result in xy:
            ax.scatter([x], [y], s=40, color=palette[result.config.label], label=result.config.label, zorder=3)
            if result.summary.ci is not None:  # a front through points whose intervals overlap is no front
                ax.errorbar(x, y, yerr=error_bars([result], scale.factor), fmt="none",
                            ecolor=palette[result.config.label], capsize=3, lw=1, alpha=0.6, zorder=2)
        front = pareto_front([(x, y) for x, y, _ in xy], scale.higher_is_better)
        # ringed points as well as the dashed steps: a front of one point draws no line
        ax.plot([x for x, _ in front], [y for _, y in front], color="black", lw=1, ls="--", drawstyle="steps-post",
                marker="o", ms=11, mfc="none", label="Pareto front", zorder=2)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # costs 0.002 apart: long labels that ran together
        ax.set_xlabel(label)
        ax.set_ylabel(f"{analysis.metric}{' (%)' if scale.factor == 100 else ''}")
    axes[0].set_title(f"{metric_title(analysis.metric)} against cost (dashed: the Pareto front of the means; "
                      "bars: 95% CI)", loc="left")
    draw_chance(axes[0], analysis, vertical=False)
    draw_chance(axes[1], analysis, vertical=False)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
    return figure


SAME_COST = 0.02  # configs whose GMACs and parameters are all within 2% have no cost to trade accuracy for


def _spread(values: Iterable[float | None]) -> float:
    """How far apart the largest and smallest of `values` are, relative to the smallest (0 for one)."""
    known = [v for v in values if v]
    return max(known) / min(known) - 1 if len(known) > 1 else 0.0


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """Points that no other point beats on cost (lower x) and metric at once, by increasing cost."""
    sign = 1.0 if higher_is_better else -1.0
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if not front or sign * y > sign * front[-1][1]:
            front.append((x, y))
    return front


CHARTS: dict[str, Callable[[StudyAnalysis], Figure | None]] = {
    "final": final_chart, "curves": curves_chart, "groups": groups_chart, "width": width_chart, "pareto": pareto_chart}
# --chart only: the HTML page has both of its halves already
SINGLE_CHARTS: dict[str, Callable[[StudyAnalysis], Figure | None]] = {**CHARTS, "overview": overview_chart}


def save(figure: Figure, path: Path) -> None:
    """PNG or SVG by the file's suffix."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ValueError(f"unsupported chart format {fmt!r}")
    figure.savefig(path, format=fmt, dpi=150, metadata=_no_metadata(fmt))


def inline_svg(figure: Figure) -> str:
    """The figure as an <svg> element for an HTML page: no XML prolog, DOCTYPE or metadata URLs."""
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata=_no_metadata("svg"))
    text = out.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _no_metadata(fmt: str) -> dict[str, Any]:
    # a fixed file for the same data (no date), and no links to dublincore.org in the page
    return {"Date": None, "Creator": None} if fmt == "svg" else {"Software": None}

