"""docker-compose.yml, checked with a YAML parser (no Docker engine here) against the settings the code reads."""
from __future__ import annotations

import re

import yaml

from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SETTINGS_SOURCE = (REPO / "shared" / "config.py").read_text()


def env_of(service: str) -> dict[str, str]:
    return SERVICES[service].get("environment", {})


def test_services_and_healthchecks() -> None:
    assert {"redis", "postgres", "flower", "worker"} <= set(SERVICES)
    for name in ("redis", "postgres", "flower", "worker"):
        assert SERVICES[name]["healthcheck"]["test"], name


def test_worker_reserves_a_gpu_and_waits_for_its_services() -> None:
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert worker["command"][:2] == ["worker", "--gpus"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_orch_settings_match_what_the_code_reads() -> None:
    read_by_code = set(re.findall(r'"(ORCH_[A-Z_]+)"', SETTINGS_SOURCE))
    for service in ("worker", "flower", "migrate", "cli"):
        env = env_of(service)
        orch_vars = {k for k in env if k.startswith("ORCH_")}
        assert orch_vars <= read_by_code, (service, orch_vars - read_by_code)
        assert env["ORCH_BROKER_URL"].startswith("redis://redis:")
        assert env["ORCH_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["ORCH_DATABASE_URL"]


def test_flower_requires_a_password_and_no_password_is_written_down() -> None:
    flower_env = env_of("flower")
    assert flower_env["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    text = (REPO / "docker-compose.yml").read_text()
    assert not re.search(r"://[^:@/\s]+:(?!\$\{)[^@\s]+@", text), "a literal password in a URL"
