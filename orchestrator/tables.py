"""Printing rows as a rich table (terminal), or as CSV / Markdown / JSON for scripts."""
from __future__ import annotations

import csv
import io
import json
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


def print_table(rows: Sequence[dict[str, Any]], title: str = "") -> None:
    """The rows as a terminal table, without the columns that are empty in every row (a leaderboard of
    ResNets has no width_mult): they only squeeze the others. --format csv, md and json keep them all."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, show_lines=False)
    keys = [key for key in (rows[0].keys() if rows else []) if any(_cell(row.get(key)) for row in rows)]
    for key in keys:
        table.add_column(key, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key in keys))
    Console(width=200 if not _is_tty() else None).print(table)


def _is_tty() -> bool:
    import sys

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
    if fmt == "md":
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(v) for v in row.values()) + " |" for row in rows]
        return "\n".join(lines)
    raise ValueError(f"unknown format {fmt!r}")
