"""A worker whose heartbeat is not well below the lease TTL refuses to start: one line, exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, base_env


@pytest.mark.parametrize("command", [["-m", "worker"], ["-m", "orchestrator", "worker"]])
@pytest.mark.parametrize("env,named", [({"ORCH_LEASE_TTL": "5", "ORCH_HEARTBEAT": "2"}, "ORCH_HEARTBEAT"),
                                       ({"ORCH_MAX_ATTEMPTS": "three"}, "ORCH_MAX_ATTEMPTS")])
def test_bad_lease_timing_is_refused_at_start(tmp_path: Path, command: list[str], env: dict[str, str],
                                              named: str) -> None:
    proc = subprocess.run([sys.executable, *command], env={**base_env(tmp_path), **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and named in lines[0], proc.stderr
