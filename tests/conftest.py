"""Fixtures: an isolated ORCH_HOME, the orch CLI as a subprocess, real worker processes, services."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.procstat import stat_fields

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("ORCH_TEST_REDIS", "redis://127.0.0.1:6379")
PG_ADMIN = os.environ.get("ORCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
# The Redis database the cluster tests flush and use: two suites run side by side need two numbers.
REDIS_DB = int(os.environ.get("ORCH_TEST_REDIS_DB", "9"))


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """In CI a missing service is a failure; run by hand without it, the test skips."""
    if reachable(host, port):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not reachable at {host}:{port} (CI must start it: see .ci/run)")
    pytest.skip(f"{name} not running at {host}:{port}")


class Orch:
    """Runs `orch` as a user would, in a subprocess, against one environment."""

    def __init__(self, env: dict[str, str], home: Path):
        self.env, self.home = env, home

    def run(self, *args: str, timeout: float = 120, check: bool = False,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`orch ARGS` in `cwd` (default: the repository, whose code it runs either way)."""
        env = self.env if cwd is None else {**self.env, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, cwd=cwd or REPO,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"orch {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, timeout: float = 120) -> Any:
        return json.loads(self.run(*args, "--json", timeout=timeout, check=True).stdout)

    def json_report(self, *args: str) -> list[dict[str, Any]]:
        return json.loads(self.run("report", *args, "--format", "json", check=True).stdout)

    def start_worker(self, *args: str, log_name: str = "worker") -> WorkerProcess:
        log = open(self.home / f"{log_name}-{uuid.uuid4().hex[:6]}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker", *args], env=self.env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return WorkerProcess(proc, Path(log.name))

    def wait_status(self, job_id: int, statuses: set[str], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            detail = self.json("status", str(job_id))
            if detail["status"] in statuses:
                return detail
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not in {statuses} after {timeout}s: {detail['status']}")


class WorkerProcess:
    """A real worker in its own process group, so a test can kill it (and its children) outright."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path):
        self.proc, self.log = proc, log

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        """Ctrl-C as a terminal sends it, then SIGKILL if it does not stop in time."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def job_processes(self, oldest: bool = False, name: str = "orch-job") -> list[int]:
        """Pids of its live job processes (or, by `name`, its orch-forkserver), or only the oldest:
        the running job's, since the next job's is started when a job takes its own."""
        out = subprocess.run(["pgrep", *(["-o"] if oldest else []), "-g", str(self.proc.pid), "-x", name],
                             capture_output=True, text=True).stdout
        return [pid for pid in map(int, out.split()) if running(pid)]


def running(pid: int) -> bool:
    """Alive: a zombie (dead, not yet reaped by whoever inherited it) is not."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def base_env(home: Path, **extra: str) -> dict[str, str]:
    # COLUMNS too: a table into a pipe is 200 wide unless it says otherwise, as a test expects
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_") and k != "COLUMNS"}
    env.update(ORCH_HOME=str(home), PYTHONUNBUFFERED="1", ORCH_LEASE_TTL="10", ORCH_HEARTBEAT="1", **extra)
    return env


@pytest.fixture
def orch(tmp_path: Path) -> Iterator[Orch]:
    """The embedded default: SQLite and the filesystem broker under a fresh ORCH_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    yield from _with_workers(Orch(base_env(home), home))


@pytest.fixture
def cluster_orch(tmp_path: Path) -> Iterator[Orch]:
    """Cluster mode on the local Redis and PostgreSQL: a fresh database and Redis db per test."""
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    redis.Redis.from_url(f"{REDIS_URL}/{REDIS_DB}").flushdb()
    yield from cluster(tmp_path, f"{REDIS_URL}/{REDIS_DB}")


def cluster(tmp_path: Path, broker_url: str) -> Iterator[Orch]:
    """An Orch on `broker_url` and a PostgreSQL database made for this test (dropped after it)."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"orch_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    home = tmp_path / "home"
    home.mkdir()
    database = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"
    orch = Orch(base_env(home, ORCH_BROKER_URL=broker_url, ORCH_DATABASE_URL=database), home)
    orch.run("db", "upgrade", check=True)
    try:
        yield from _with_workers(orch)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_cluster(tmp_path: Path, broker_url: str) -> Iterator[Orch]:
    """`cluster` for a test's own broker: `with`, so its workers and database go when the test
    fails too (a `for` over the generator left them to the garbage collector, after the traceback)."""
    yield from cluster(tmp_path, broker_url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_workers(orch: Orch) -> Iterator[Orch]:
    started: list[WorkerProcess] = []
    original = orch.start_worker

    def tracked(*args: str, **kwargs: Any) -> WorkerProcess:
        worker = original(*args, **kwargs)
        started.append(worker)
        return worker

    orch.start_worker = tracked  # type: ignore[method-assign]
    try:
        yield orch
    finally:  # a failed assertion too: a worker left running kept training into the next tests
        for worker in started:
            worker.kill()


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small learnable data set at 32 px, made once per test session by `orch data synth`."""
    out = tmp_path_factory.mktemp("synth") / "data"
    home = tmp_path_factory.mktemp("synth-home")
    subprocess.run([sys.executable, "-m", "orchestrator", "data", "synth", str(out), "--train", "96", "--val", "32",
                    "--test", "40", "--size", "32", "--seed", "0"], env=base_env(home), cwd=REPO, check=True,
                   capture_output=True, timeout=300)
    return out


def with_ctrl_c() -> None:
    """A `preexec_fn` for a subprocess a test sends Ctrl-C (SIGINT) to: a suite started in the
    background by a shell without job control inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt for it (the process went on waiting, and the test timed out)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
