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


def test_a_large_float_has_no_exponent_and_a_small_one_keeps_four_digits() -> None:
    rows = [{"images_per_s": 12345.6, "lr": 1e-05, "loss": 0.123456}]
    assert render(rows, "csv").splitlines()[1] == "12346,1e-05,0.1235"


def test_leaderboard_numbers_have_fixed_decimals_down_a_column() -> None:
    from orchestrator.report import for_display

    rows = for_display([{"images_per_s": 244.0, "wall_s": 22.5, "gmacs": 0.148, "val_loss": 0.0001, "params": 11_180_000},
                        {"images_per_s": 256.125, "wall_s": 21.43, "gmacs": 2, "val_loss": None, "params": None}])
    assert [r["images_per_s"] for r in rows] == ["244.0", "256.1"]
    assert [r["wall_s"] for r in rows] == ["22.5", "21.4"]
    assert [r["gmacs"] for r in rows] == ["0.148", "2.000"]
    assert [r["val_loss"] for r in rows] == ["0.0001", None] and rows[0]["params"] == "11.18M"
