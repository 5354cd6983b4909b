"""print_table leaves out the columns empty in every row; the script formats keep every column."""
from __future__ import annotations

import json

import pytest

from orchestrator.tables import print_table, render

ROWS = [{"id": 1, "width_mult": None, "note": "", "acc": 0.5}, {"id": 2, "width_mult": None, "note": "", "acc": None}]


def test_the_terminal_table_drops_columns_empty_in_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(ROWS, title="runs")
    header = next(line for line in capsys.readouterr().out.splitlines() if "id" in line)
    assert "acc" in header  # empty in one row only: kept
    assert "width_mult" not in header and "note" not in header


def test_csv_md_and_json_keep_every_column() -> None:
    assert render(ROWS, "csv").splitlines()[0] == "id,width_mult,note,acc"
    assert render(ROWS, "md").splitlines()[0] == "| id | width_mult | note | acc |"
    assert list(json.loads(render(ROWS, "json"))[0]) == ["id", "width_mult", "note", "acc"]
