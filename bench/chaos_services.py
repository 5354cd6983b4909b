"""The chaos bench's cluster: a Redis of its own, which it restarts, and a PostgreSQL database made for the
run, whose connections it terminates."""
from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_ADMIN = os.environ.get("ORCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Services:
    """The cluster's own Redis (restartable) and a PostgreSQL database made for this run."""

    tmp: Path
    port: int = 0
    database: str = ""
    redis: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        db_url = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{self.database}"
        return {"ORCH_BROKER_URL": f"redis://127.0.0.1:{self.port}/{self.port % 16}", "ORCH_DATABASE_URL": db_url}

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(self.tmp)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _reachable(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.1)

    def restart_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait()
        time.sleep(1.0)
        self.start_redis()

    def terminate_connections(self) -> int:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = %s AND pid <> pg_backend_pid()", (self.database,)).fetchall()
        return len(rows)


@contextmanager
def cluster_services(tmp: Path) -> Iterator[Services]:
    import psycopg

    services = Services(tmp, port=_free_port(), database=f"orch_chaos_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{services.database}"')
    services.start_redis()
    try:
        yield services
    finally:
        if services.redis is not None:
            services.redis.kill()
            services.redis.wait()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{services.database}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
