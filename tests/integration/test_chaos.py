"""The chaos bench, small: workers and submit CLIs killed at random instants, and every job of the study
still ends succeeded, once, with checkpoints that agree with the store (bench/chaos.py, issue 9)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_a_small_study_survives_killed_workers_and_clis(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    proc = subprocess.run([sys.executable, "-m", "bench.chaos", "--jobs", "4", "--epochs", "1", "--worker-kills", "2",
                           "--cli-kills", "2", "--ttl", "10", "--kill-gap", "3", "6", "--timeout", "420",
                           "--json", str(out), "--keep", str(tmp_path / "run")],
                          env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.is_file(), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["succeeded"], result["failed"], result["lost"]) == (4, 0, 0), result
    assert result["stale_attempt_epochs"] == 0 and result["checkpoint_mismatches"] == 0, result
    assert result["events"].get("submit killed between commit and send") == 1, result
    assert result["events"].get("worker killed", 0) + result["events"].get("worker killed (idle)", 0) == 2, result
    # a kill waits for a worker that holds a job: one of an idle worker tests no recovery (the bench counted
    # every kill as idle for days, its workers' names not matching the holder the store records). The kills
    # come 8-17 s in: with 8-15 s gaps, a study on an AMX Xeon (its jobs running 3-18 s in) once ended first
    assert result["kills_with_a_running_job"] >= 1 and result["recovered"] == result["kills_with_a_running_job"], result
    assert 0 < result["recovery_p50_s"] < 60, result  # its holder seen gone (or its lease expired), the job leased again
    assert proc.returncode == 0 and result["targets_met"], result
