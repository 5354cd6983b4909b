"""Settings: passwords in URLs are masked whatever characters they hold."""
from __future__ import annotations

import pytest

from shared.config import redact


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql+psycopg://orch:s3cr/et@db:5432/orch", "postgresql+psycopg://orch:***@db:5432/orch"),
    ("redis://:p@ss@redis:6379/0", "redis://:***@redis:6379/0"),
    ("broker redis://u:a/b@c:d@h/0 and store postgresql://u:x@db/orch",
     "broker redis://u:***@h/0 and store postgresql://u:***@db/orch"),
    ("url='rediss://user:pw@host:6380/1'", "url='rediss://user:***@host:6380/1'"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),  # no password: unchanged
    ("postgresql://orch@db:5432/orch", "postgresql://orch@db:5432/orch"),
    ("sqlite:////home/me/.orch/orch.db", "sqlite:////home/me/.orch/orch.db"),
])
def test_redact_masks_every_password(text: str, shown: str) -> None:
    assert redact(text) == shown
