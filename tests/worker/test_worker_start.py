"""A worker with a bad setting refuses to start, one line and exit 2: a heartbeat not well below the
lease TTL, a malformed URL, a broker it cannot reach (Celery retried that forever; a malformed Redis
database number killed the worker with a traceback and exit code 0)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, base_env


@pytest.mark.parametrize("command", [["-m", "worker"], ["-m", "orchestrator", "worker"]])
@pytest.mark.parametrize("env,named", [({"ORCH_LEASE_TTL": "5", "ORCH_HEARTBEAT": "2"}, "ORCH_HEARTBEAT"),
                                       ({"ORCH_MAX_ATTEMPTS": "three"}, "ORCH_MAX_ATTEMPTS"),
                                       ({"ORCH_BROKER_URL": "redis://127.0.0.1:6379/abc"}, "ORCH_BROKER_URL"),
                                       ({"ORCH_BROKER_URL": "redis://127.0.0.1:1/5"}, "ORCH_BROKER_URL"),
                                       ({"ORCH_BROKER_URL": "redis://127.0.0.1:6379/999"}, "ORCH_BROKER_URL"),
                                       ({"ORCH_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:x/db"},
                                        "ORCH_DATABASE_URL"),
                                       ({"ORCH_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:1/db"},
                                        "ORCH_DATABASE_URL (postgresql+psycopg://u@127.0.0.1:1/db): database unreachable")])
def test_bad_lease_timing_is_refused_at_start(tmp_path: Path, command: list[str], env: dict[str, str],
                                              named: str) -> None:
    proc = subprocess.run([sys.executable, *command], env={**base_env(tmp_path), **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    unavailable = "unreachable" in proc.stderr or "refused the connection" in proc.stderr  # exit 3: not the input
    assert proc.returncode == (3 if unavailable else 2) and len(lines) == 1 and named in lines[0], proc.stderr


def test_a_second_worker_of_a_name_in_use_is_refused(orch) -> None:  # type: ignore[no-untyped-def]
    """Two `orch worker --name w1@lab` ran side by side: Flower listed one node for two, and a job's
    history read "lease of w1@lab expired; taken over by sweeper of w1@lab"."""
    import time

    first = orch.start_worker("--name", "w1@lab", "--threads", "1")
    deadline = time.monotonic() + 90
    while "w1@lab ready." not in first.output():
        assert time.monotonic() < deadline and first.proc.poll() is None, first.output()[-2000:]
        time.sleep(0.5)
    second = orch.run("worker", "--name", "w1@lab", "--threads", "1", timeout=60)
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines()[-1] == ("Error: --name: a worker named w1@lab is running already; give "
                                                      "each worker its own name (or none: orch-PID@HOST is unique)")
