"""The store fixture: each store test runs on the embedded SQLite store and on the local PostgreSQL."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import load_settings
from shared.store import Store, open_store
from shared.store.db import make_engine, upgrade
from tests.conftest import PG_ADMIN, need_service


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    if request.param == "sqlite":
        s = open_store(load_settings(tmp_path))
        yield s
        s.dispose()
        return
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"orch_unit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    upgrade(engine)
    yield Store(engine)
    engine.dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
