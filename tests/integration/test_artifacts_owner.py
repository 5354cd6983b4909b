"""Two stores, one ORCH_ARTIFACTS: job ids are each store's own, so the second store's job 1 wrote
over the first's checkpoints. A worker of the second store is refused before it takes a job."""
from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import Orch, base_env
from worker.artifacts_owner import OWNER_FILE


def test_a_second_store_on_the_same_artifacts_folder_is_refused(orch: Orch, tmp_path: Path) -> None:
    artifacts = orch.home / "artifacts"
    orch.start_worker()
    deadline = time.monotonic() + 60
    while not (artifacts / OWNER_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    first = (artifacts / OWNER_FILE).read_text().strip()
    assert len(first) == 36, first  # the store's uuid, claimed by its first worker

    other_home = tmp_path / "other"
    other_home.mkdir()
    other = Orch(base_env(other_home, ORCH_ARTIFACTS=str(artifacts)), other_home)
    proc = other.run("worker", timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"Error: ORCH_ARTIFACTS ({artifacts}) holds the files of another store "
                               f"({OWNER_FILE}: {first}; this store is "), lines[0]
    assert (artifacts / OWNER_FILE).read_text().strip() == first  # the folder is still the first store's
