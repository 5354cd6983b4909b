"""Settings: where the store, the broker and the artifacts are. No torch, no side effects on import.

Embedded (default): everything under ORCH_HOME (default ~/.orch): SQLite, kombu's filesystem
broker and the artifacts folder. Cluster: ORCH_BROKER_URL=redis://... and
ORCH_DATABASE_URL=postgresql+psycopg://..., artifacts on a shared path (ORCH_ARTIFACTS).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError

DEFAULT_QUEUE = "orch"  # the Celery queue jobs go to unless --queue names another
# Message priorities, the lower served first (kombu's Redis lists; the embedded broker's file names sort the
# same way). A job resuming after a crash or a worker stop goes before jobs that have not started yet, so
# a lost worker costs its job the lease TTL, not a wait behind the whole queue.
PRIORITY_RESUME, PRIORITY_NEW = 0, 5
# A message a stopping worker took and did not run goes back before the jobs that have not started (it was
# the next of them), behind those resuming (on Redis, kombu's lists step 0, 3, 6, 9: it joins the resuming
# ones' list at its end); sent back at 5 it went behind the jobs submitted after it, and ran after them.
PRIORITY_RETURNED = 1
BROKER_SCHEMES = ("filesystem", "redis", "rediss")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


ARTIFACTS_OWNER_FILE = "store-id"


@dataclass(frozen=True)
class Settings:
    home: Path
    broker_url: str
    database_url: str
    artifacts: Path
    lease_ttl: float  # seconds without a heartbeat after which a running job is requeued
    heartbeat: float  # seconds between a worker's heartbeats
    max_attempts: int = 3  # crashed attempts (worker lost, job process died) before a job fails
    stall_after: float = 600.0  # seconds a job's process may use no CPU before it is killed (inf: never)

    @property
    def fence_after(self) -> float:
        """Seconds without a renewed lease after which a worker stops its job's process itself
        (SIGTERM, then SIGKILL after fence_grace): both before anyone else may take the job, with
        a tenth of the TTL to spare. The heartbeat check (3 beats per TTL) leaves 2 tries before it."""
        return self.lease_ttl * 0.8

    @property
    def fence_grace(self) -> float:
        return self.lease_ttl * 0.1

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem:")

    @property
    def broker_folder(self) -> Path:
        return self.home / "broker"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def job_dir(self, job_id: int) -> Path:
        return self.artifacts / "jobs" / str(job_id)

    @property
    def artifacts_owner(self) -> Path:
        """The file naming the store whose job folders ORCH_ARTIFACTS holds (worker/artifacts_owner.py)."""
        return self.artifacts / ARTIFACTS_OWNER_FILE


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Read the settings: an explicit `home` (the --home option) wins over ORCH_HOME."""
    home_path = Path(home or os.environ.get("ORCH_HOME") or Path.home() / ".orch").expanduser().resolve()
    broker = os.environ.get("ORCH_BROKER_URL") or "filesystem://"
    database = os.environ.get("ORCH_DATABASE_URL") or f"sqlite:///{home_path / 'orch.db'}"
    check_url("ORCH_BROKER_URL", broker, BROKER_SCHEMES)
    check_url("ORCH_DATABASE_URL", database, DATABASE_SCHEMES)
    artifacts = Path(os.environ.get("ORCH_ARTIFACTS") or home_path / "artifacts").expanduser().resolve()
    return Settings(
        home=home_path,
        broker_url=broker,
        database_url=database,
        artifacts=artifacts,
        lease_ttl=_positive_float("ORCH_LEASE_TTL", 30.0),
        heartbeat=_positive_float("ORCH_HEARTBEAT", 2.0),
        max_attempts=_positive_int("ORCH_MAX_ATTEMPTS", 3),
        stall_after=math.inf if os.environ.get("ORCH_STALL_TIMEOUT", "").strip() == "0"
        else _positive_float("ORCH_STALL_TIMEOUT", 600.0),
    )


def check_worker_timing(settings: Settings) -> None:
    """A worker must renew its lease several times per TTL, or one slow beat would lose it."""
    if settings.heartbeat * 3 > settings.lease_ttl:
        raise ConfigError(f"ORCH_HEARTBEAT: {settings.heartbeat:g} s is not well below ORCH_LEASE_TTL "
                          f"({settings.lease_ttl:g} s); use at most a third of it")


def check_url(name: str, url: str, allowed: tuple[str, ...]) -> None:
    """The URL's scheme, port and Redis database number, checked here: the libraries found a port of
    'abc' or a database of 'x' only when they connected, with a traceback (and a worker that died of
    it exited 0)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in allowed:
        raise ConfigError(f"{name}: scheme {scheme or '(none)'!r} is not supported; use one of {', '.join(allowed)}")
    if scheme in ("filesystem", "sqlite"):
        return
    # past any user:password (which may hold "/" or "@", as redact allows: the last "@" ends it)
    host, _, path = url.split("://", 1)[1].rpartition("@")[2].partition("/")
    port = host.rpartition("]")[2].partition(":")[2]  # past an IPv6 address's brackets
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"{name}: the port must be a number from 1 to 65535, got {port!r} in {redact(url)}")
    number = path.partition("?")[0].strip("/")
    if scheme.startswith("redis") and number and not (number.isascii() and number.isdigit()):
        raise ConfigError(f"{name}: the Redis database must be a number (redis://HOST:PORT/0), got {number!r} "
                          f"in {redact(url)}")


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():  # empty is unset, as for the URL variables
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {raw!r}") from None
    # nan passed `<= 0`: a worker with ORCH_LEASE_TTL=nan found every other worker's lease expired
    # and failed their jobs; inf would never take a dead worker's job over
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: expected a positive, finite number of seconds, got {raw!r}")
    return value


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = int(raw) if re.fullmatch(r"\s*[0-9]+\s*", raw) else 0
    if value < 1:
        raise ConfigError(f"{name}: expected a whole number of at least 1, got {raw!r}")
    return value


# scheme://user:password@host: the password runs to the last "@" of the URL, so one holding "/",
# ":" or "@" (unencoded, as users paste them) is masked whole. A URL ends at whitespace or a quote.
_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s'\"]*):"
                       r"(?P<pw>[^\s'\"]*)@(?=[^@\s'\"]*(?:[\s'\"]|$))")


def redact(text: str) -> str:
    """Hide passwords in URLs (broker and database) anywhere in `text`."""
    return _PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
