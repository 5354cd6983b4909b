"""print_table and md leave out the columns empty in every row; the script formats keep every column."""
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


def test_csv_and_json_keep_every_column_and_md_the_filled_ones() -> None:
    """md is read by people (pasted into notes), as the terminal table; csv and json by scripts."""
    assert render(ROWS, "csv").splitlines()[0] == "id,width_mult,note,acc"
    assert list(json.loads(render(ROWS, "json"))[0]) == ["id", "width_mult", "note", "acc"]
    assert render(ROWS, "md").splitlines() == ["| id | acc |", "|---|---|", "| 1 | 0.5 |", "| 2 |  |"]


def test_a_large_float_has_no_exponent_and_a_small_one_keeps_four_digits() -> None:
    rows = [{"images_per_s": 12345.6, "lr": 1e-05, "loss": 0.123456}]
    assert render(rows, "csv").splitlines()[1] == "12346,1e-05,0.1235"


def test_leaderboard_numbers_have_fixed_decimals_down_a_column() -> None:
    from orchestrator.tables import for_display

    rows = for_display([{"images_per_s": 244.0, "wall_s": 22.5, "gmacs": 0.148, "val_loss": 0.0001, "params": 11_180_000},
                        {"images_per_s": 256.125, "wall_s": 21.43, "gmacs": 2, "val_loss": None, "params": None}])
    assert [r["images_per_s"] for r in rows] == ["244.0", "256.1"]
    assert [r["wall_s"] for r in rows] == ["22.5", "21.4"]
    assert [r["gmacs"] for r in rows] == ["0.148", "2.000"]
    assert [r["val_loss"] for r in rows] == ["0.0001", None] and rows[0]["params"] == "11.18M"


def test_a_narrow_terminal_leaves_out_the_columns_named_first(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns rich folded every cell of a wide table ('succ/eede/d'); now the least useful
    columns go, in the order given, until the table fits, and stderr says which."""
    monkeypatch.setattr("orchestrator.tables._is_tty", lambda: True)
    monkeypatch.setenv("COLUMNS", "46")
    rows = [{"id": 1, "status": "succeeded", "worker": "lab-gpu-1.example.org:12345", "attempts": 1,
             "model": "resnet50", "val_acc": "83.00%"}]
    print_table(rows, title="jobs", drop_first=("worker", "attempts", "model"))
    out, err = capsys.readouterr()
    assert "succeeded" in out and "83.00%" in out and "resnet50" in out  # fits once worker and attempts went
    assert "worker" not in out and "attempts" not in out
    assert "not shown: worker, attempts" in err and "(--json shows all)" in err
    print_table(rows, title="leaderboard", drop_first=("worker", "attempts"), every_column="--format json")
    assert "(--format json shows all)" in capsys.readouterr().err  # orch report has no --json
    monkeypatch.setenv("COLUMNS", "200")
    print_table(rows, title="jobs", drop_first=("worker", "attempts", "model"))
    out, err = capsys.readouterr()
    assert "lab-gpu-1.example.org:12345" in out and err == ""
    # a file has no width (`orch report --limit 0 > runs.txt` lost columns, "narrow terminal" on stderr)
    monkeypatch.setattr("orchestrator.tables._is_tty", lambda: False)
    monkeypatch.delenv("COLUMNS")
    wide = [{**rows[0], "worker": "w" * 300}]
    print_table(wide, title="jobs", drop_first=("worker", "attempts", "model"))
    out, err = capsys.readouterr()
    assert "w" * 300 in out and "attempts" in out and err == ""
