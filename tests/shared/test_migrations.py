"""The migrations build the schema the models describe, and 0003_scoring reads the old "sent" marker."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from shared.store.db import alembic_config
from shared.store.schema import Base

SCORE_JOBS = [  # (status, heartbeat_at) of score parents under 0001 -> their assembly state under 0003_scoring
    ("queued", None, "waiting"),
    ("queued", 1700000000.0, "sent"),  # 0001 marked "sent for assembly" with a heartbeat
    ("running", 1700000000.0, "assembling"),
    ("succeeded", None, "done"),
    ("failed", None, "failed"),
    ("cancelled", None, "failed"),
]


def test_upgrade_from_0001_backfills_the_assembly_state_and_matches_the_models(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'orch.db'}")
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        for status, beat, _ in SCORE_JOBS:
            conn.execute(text(
                "INSERT INTO jobs (kind, status, spec, spec_hash, queue, attempts, lease_token, heartbeat_at, "
                "cancel_requested, created_at) VALUES ('score', :status, '{}', 'h', 'orch', 0, 0, :beat, 0, "
                "'2026-01-01')"), {"status": status, "beat": beat})
        conn.execute(text("INSERT INTO jobs (kind, status, spec, spec_hash, queue, attempts, lease_token, "
                          "cancel_requested, created_at) VALUES ('train', 'queued', '{}', 'h', 'orch', 0, 0, 0, "
                          "'2026-01-01')"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        states = [row[0] for row in conn.execute(text("SELECT assembly FROM jobs ORDER BY id"))]
        assert states == [want for _, _, want in SCORE_JOBS] + [None]
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
