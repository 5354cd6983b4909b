"""Printing rows as a rich table (terminal), or as CSV / Markdown / JSON for scripts."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # 4 significant digits, but never an exponent for a count-like value: a GPU's 12,345.6
        # images/s reads 12346, not 1.235e+04 (a learning rate of 1e-05 keeps its exponent)
        return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


# how the tables show numbers, the same in every command: a column reads down evenly (244.0 under
# 256.1, not 244) and an accuracy is a percentage wherever it appears
PERCENT = ("val_acc", "last_val_acc", "test_acc")
DECIMALS = {"train_loss": 4, "val_loss": 4, "gmacs": 3, "images_per_s": 1, "wall_s": 1, "seconds": 1}


def for_display(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table cells: accuracies as percentages with 2 decimals, parameters in millions, other numbers
    to fixed decimals (md takes these too; csv and json keep the numbers, for scripts)."""
    shown = []
    for row in rows:
        row = dict(row)
        if row.get("params"):
            row["params"] = f"{row['params'] / 1e6:.2f}M"
        for key in PERCENT:
            if _is_number(row.get(key)):
                row[key] = f"{100 * row[key]:.2f}%"
        for key, places in DECIMALS.items():
            if _is_number(row.get(key)):
                row[key] = f"{row[key]:.{places}f}"
        shown.append(row)
    return shown


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def print_table(rows: Sequence[dict[str, Any]], title: str = "", drop_first: Sequence[str] = (),
                every_column: str = "--json") -> None:
    """The rows as a terminal table, without the columns that are empty in every row (a leaderboard of
    ResNets has no width_mult): they only squeeze the others. --format csv and json keep them all.

    In a terminal too narrow for the table, the columns of `drop_first` are left out, in that order,
    until it fits (rich would fold every cell instead: 'succ/eede/d'), and a line on stderr says which
    and which option (`every_column`) shows them all."""
    from rich.console import Console
    from rich.table import Table

    # a pipe or a file has no width: the table's own, unless COLUMNS says (rich reads it; `COLUMNS=100 orch
    # report` printed 200), so that `orch report --limit 0 > runs.txt` keeps every column
    piped = not _is_tty() and not os.environ.get("COLUMNS")
    console = Console(width=None if not piped else 200)
    keys = filled_columns(rows)
    dropped: list[str] = []

    def build() -> Table:
        table = Table(title=title or None, show_lines=False)
        shown = [key for key in keys if key not in dropped]
        for key in shown:
            table.add_column(key, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(key)) for key in shown))
        return table

    def fits(table: Table) -> bool:
        return _width(console, table) <= console.width

    table = build()
    if piped:
        console = Console(width=max(200, _width(console, table)))
    for key in (k for k in drop_first if k in keys):
        if fits(table):
            break
        dropped.append(key)
        table = build()
    console.print(table)
    if dropped:
        sys.stdout.flush()  # the table first: in one pipe (2>&1) the note landed on its last border
        Console(stderr=True).print(f"[dim]narrow terminal, not shown: {', '.join(dropped)} ({every_column} shows all)[/dim]",
                                   highlight=False)


def _width(console: Any, table: Any) -> int:
    """The table's natural width, measured unbounded: rich clamps a measurement to the console's width."""
    return int(console.measure(table, options=console.options.update_width(100_000)).maximum)


def filled_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The first row's keys, less those empty in every row."""
    return [key for key in (rows[0].keys() if rows else []) if any(_cell(row.get(key)) for row in rows)]


def _is_tty() -> bool:
    return sys.stdout.isatty()


def render(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """csv, md or json text of the rows (the table format prints instead)."""
    if fmt == "json":
        return json.dumps(list(rows), indent=2)
    keys = list(rows[0].keys()) if rows else []
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        return out.getvalue().rstrip("\n")
    if fmt == "md":  # for people, as the table: a column empty in every row is left out (csv and json keep it)
        keys = filled_columns(rows)
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in rows]
        return "\n".join(lines)
    raise ValueError(f"unknown format {fmt!r}")


def id_ranges(ids: list[int]) -> str:
    """Sorted ids with each run of consecutive ones as first-last: a study of 90 jobs is "12-101", not 90 numbers."""
    spans: list[list[int]] = []
    for job_id in sorted(ids):
        if spans and job_id == spans[-1][1] + 1:
            spans[-1][1] = job_id
        else:
            spans.append([job_id, job_id])
    return ", ".join(str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}-{b}" for a, b in spans)
