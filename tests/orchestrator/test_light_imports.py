"""The plot and statistics libraries load only in the commands that draw or compute."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, Orch

HEAVY = ("scipy", "matplotlib", "torch")


def imported(orch: Orch, *args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "orchestrator", *args], env=orch.env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["status"], ["submit", "--help"], ["submit", "train", "--help"],
                                  ["report", "--help"], ["report"]])
def test_light_commands_import_no_plot_or_stats_library(orch: Orch, args: list[str]) -> None:
    modules = imported(orch, *args)
    assert "click" in modules  # the measurement itself works
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, heavy[:10]


def test_a_study_report_loads_neither_scipy_nor_a_chart_library(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.orchestrator.study_builder import Grid, build_study, open_home

    store = open_home(orch.home, monkeypatch)
    build_study(store, Grid(norms=("bn", "ln"), groups=(1,), seeds=(0, 1), epochs=2))
    store.dispose()
    modules = imported(orch, "report", "--study", "1")
    assert "orchestrator.analysis.tdist" in modules  # the statistics ran: the study has seeds to compare
    assert not {m for m in modules if m.split(".")[0] in ("scipy", "matplotlib", "torch")}


@pytest.mark.parametrize("args", [["--help"], ["submit", "--help"], ["report", "--help"]])
def test_help_loads_no_store(orch: Orch, args: list[str]) -> None:
    """`orch --help` loads every command's module for its one-line help: a module-level import of the
    store in one of them (status.py, via --wait's progress module) doubled its start-up, 0.15 -> 0.32 s."""
    modules = imported(orch, *args)
    assert "click" in modules
    store = sorted(m for m in modules if m.split(".")[0] in ("sqlalchemy", "psycopg", "kombu", "celery")
                   or m.startswith("shared.store"))
    assert not store, store[:10]
