"""Fixtures shared by the worker tests that run a job's own code in the test process."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings, load_settings
from shared.store import Store, open_store
from tests.shared.data_helpers import one_thread


@pytest.fixture
def job_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Store]]:
    """An embedded home (SQLite store, artifacts under it) whatever the environment points at, with
    training on one thread: test processes share the CPU."""
    for name in ("ORCH_DATABASE_URL", "ORCH_ARTIFACTS", "ORCH_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(tmp_path / "home")
    store = open_store(settings)
    with one_thread():
        yield settings, store
    store.dispose()
