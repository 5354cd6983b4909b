"""`orch data synth`: writes the set, one-line errors with exit 2, and no torch on import."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_synth_writes_the_set(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = CliRunner().invoke(main, ["data", "synth", str(out), "--train", "6", "--val", "4", "--test", "3",
                                       "--size", "16", "--layout", "folder", "--classes", "dog,cat"])
    assert result.exit_code == 0, result.output
    assert "wrote 13 images" in result.output
    assert sorted(p.name for p in (out / "train").iterdir()) == ["cat", "dog"]
    assert sorted(p.name for p in (out / "test").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    assert (out / "test_labels.csv").read_text().splitlines()[0] == "id,label"


def test_synth_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["data", "synth", str(tmp_path / "a"), "--classes", "cat"])
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0 and "classes" in bad.output
    assert runner.invoke(main, ["data", "synth", str(tmp_path / "b"), "--train", "2", "--val", "0", "--test", "0",
                                "--size", "16"]).exit_code == 0
    again = runner.invoke(main, ["data", "synth", str(tmp_path / "b"), "--train", "2", "--size", "16"])
    assert again.exit_code == 2 and "already holds files" in again.output
    assert runner.invoke(main, ["data", "synth", str(tmp_path / "c"), "--layout", "zip"]).exit_code == 2
    nothing = runner.invoke(main, ["data", "synth", str(tmp_path / "d"), "--train", "0", "--val", "0", "--test", "0"])
    assert nothing.exit_code == 2 and "all 0: nothing to write" in nothing.output and not (tmp_path / "d").exists()


def test_help_has_an_example_and_no_torch_is_imported() -> None:
    help_text = CliRunner().invoke(main, ["data", "synth", "--help"]).output
    assert "Examples:" in help_text and "orch data synth data" in help_text
    code = "import sys, orchestrator.cli; print('torch' in sys.modules, 'PIL' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False", "False"]


def test_cache_lists_and_prunes_the_decode_caches(tmp_path: Path) -> None:
    from shared.data import load_or_build, scan, write_synthetic

    home, runner = tmp_path / "home", CliRunner()
    env = {"ORCH_HOME": str(home)}
    assert runner.invoke(main, ["data", "cache"], env=env).output.strip().endswith("no decoded-image caches")
    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": 6}, size=16)
    load_or_build(scan(tmp_path / "d" / "train").files, 16, home / "cache", folder=tmp_path / "d" / "train")
    listed = runner.invoke(main, ["data", "cache", "--json"], env=env)
    [row] = json.loads(listed.output)
    assert (row["folder"], row["px"], row["images"]) == (str((tmp_path / "d" / "train").resolve()), 16, 6)
    assert "1 cache, 0.0 MB" in runner.invoke(main, ["data", "cache"], env={**env, "COLUMNS": "200"}).output
    kept = runner.invoke(main, ["data", "cache", "--prune"], env=env)
    assert kept.exit_code == 0 and "nothing stale; kept 1 cache read in the last 30 days" in kept.output
    wrong = runner.invoke(main, ["data", "cache", "--all"], env=env)
    assert wrong.exit_code == 2 and "--all" in wrong.output and "add --prune" in wrong.output
    ignored = runner.invoke(main, ["data", "cache", "--unused-days", "7"], env=env)  # it listed, ignoring the option
    assert ignored.exit_code == 2 and "--unused-days: applies to --prune only" in ignored.output
    gone = runner.invoke(main, ["data", "cache", "--prune", "--all"], env=env)
    assert gone.exit_code == 0 and f"removed {row['file']}" in gone.output and "freed" in gone.output
    assert json.loads(runner.invoke(main, ["data", "cache", "--json"], env=env).output) == []
