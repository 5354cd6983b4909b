"""Settings: passwords in URLs are masked whatever characters they hold."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import load_settings, redact
from shared.errors import ConfigError


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


@pytest.mark.parametrize("name,url,fragment", [
    ("ORCH_BROKER_URL", "redis://127.0.0.1:6379/abc", "the Redis database must be a number"),
    ("ORCH_BROKER_URL", "redis://127.0.0.1:notaport/5", "the port must be a number from 1 to 65535, got 'notaport'"),
    ("ORCH_BROKER_URL", "rediss://u:secret@h:70000/0", "got '70000' in rediss://u:***@h"),
    ("ORCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:abc/orch", "the port must be a number"),
    ("ORCH_BROKER_URL", "redsi://h:6379/0", "scheme 'redsi' is not supported"),
])
def test_a_malformed_url_is_one_line_naming_its_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         name: str, url: str, fragment: str) -> None:
    monkeypatch.setenv(name, url)
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert str(caught.value).startswith(f"{name}: ") and fragment in str(caught.value) and "secret" not in str(caught.value)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/2", "redis://h", "redis://h/", "redis://:p:w@h:6379/0",
                                 "redis://[::1]:6379/0", "rediss://u:p%40ss@h:6380/1", "filesystem://",
                                 "redis://:p@ss/x@h:6379/0?socket_timeout=5"])
def test_well_formed_broker_urls_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    monkeypatch.setenv("ORCH_BROKER_URL", url)
    assert load_settings(tmp_path).broker_url == url


def test_a_database_password_with_a_slash_passes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = "postgresql+psycopg://orch:s3cr/et@db:5432/orch"  # a password redact() masks must also load
    monkeypatch.setenv("ORCH_DATABASE_URL", url)
    assert load_settings(tmp_path).database_url == url


@pytest.mark.parametrize("value", ["nan", "inf", "1e999", "-inf", "0", "-3", "soon"])
@pytest.mark.parametrize("name", ["ORCH_LEASE_TTL", "ORCH_HEARTBEAT"])
def test_lease_times_are_positive_and_finite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str,
                                            value: str) -> None:
    """ORCH_LEASE_TTL=nan passed the `<= 0` check: that worker's sweeper found every lease expired and
    failed the jobs of the healthy workers; ORCH_HEARTBEAT=nan crashed every job in its task."""
    from shared.config import load_settings
    from shared.errors import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name}: expected a "):
        load_settings(tmp_path)


def test_an_empty_lease_time_is_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from shared.config import load_settings

    monkeypatch.setenv("ORCH_LEASE_TTL", "")
    monkeypatch.setenv("ORCH_MAX_ATTEMPTS", " ")
    settings = load_settings(tmp_path)
    assert (settings.lease_ttl, settings.max_attempts) == (30.0, 3)
