"""`orch data synth`: writes the set, one-line errors with exit 2, and no torch on import."""
from __future__ import annotations

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
