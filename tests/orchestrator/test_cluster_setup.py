"""Cluster setup on the local PostgreSQL: an empty database works on first use, and no command
prints the database password (even one holding '/', which the old redact let through)."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN, Orch, base_env, need_service


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (no `orch db upgrade`); its URL without a password."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"orch_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_empty_database_gets_the_schema_on_first_use(empty_database: str, tmp_path: Path) -> None:
    orch = Orch(base_env(tmp_path, ORCH_DATABASE_URL=empty_database), tmp_path)
    assert orch.json("status") == []
    current = orch.run("db", "current", check=True).stdout.split()
    assert current[1] == current[3] != "none"  # current: REV  head: REV


def test_db_upgrade_masks_a_password_holding_a_slash(empty_database: str, tmp_path: Path) -> None:
    # the test server trusts local connections, so any password connects
    url = empty_database.replace("://postgres@", "://postgres:s3cr/et:pw@")
    orch = Orch(base_env(tmp_path, ORCH_DATABASE_URL=url), tmp_path)
    proc = orch.run("db", "upgrade", check=True)
    assert "s3cr" not in proc.stdout + proc.stderr and "postgres:***@" in proc.stdout
    assert json.loads(orch.run("status", "--json", check=True).stdout) == []
