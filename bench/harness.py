"""Running orch in a bench as a user runs it: a home folder, the `orch` CLI and real worker processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FINISHED = {"succeeded", "failed", "cancelled"}


@dataclass
class Orch:
    """One ORCH_HOME (embedded by default; pass ORCH_BROKER_URL / ORCH_DATABASE_URL in `env` for a cluster)."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        self.env = {**base, "ORCH_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **self.env}

    def cli(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"orch {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def start_worker(self, *args: str, name: str = "worker") -> subprocess.Popen[bytes]:
        """A real `orch worker`, in its own process group; returns once Celery says it is ready."""
        log = (self.home / f"{name}-{len(self.workers)}.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker", "--name", f"{name}{len(self.workers)}",
                                 *args], env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.workers.append(proc)
        deadline = time.monotonic() + 120
        while " ready." not in Path(log.name).read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.2)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.workers.clear()

    def store(self) -> Any:
        from shared.config import load_settings
        from shared.store import open_store

        old = {k: os.environ.get(k) for k in self.env if k.startswith("ORCH_")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("ORCH_")})
        try:
            return open_store(load_settings())
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def wait_finished(self, job_ids: list[int], timeout: float = 3600, poll: float = 0.2) -> list[Any]:
        """The jobs' rows once every one has ended (detached snapshots)."""
        from sqlalchemy import select

        from shared.store import Job

        store = self.store()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                with store.session() as s:
                    jobs = list(s.scalars(select(Job).where(Job.id.in_(job_ids)).order_by(Job.id)))
                    if all(job.status in FINISHED for job in jobs):
                        for job in jobs:
                            _ = job.epochs  # load while the session is open
                        return jobs
                time.sleep(poll)
        finally:
            store.dispose()
        raise TimeoutError(f"jobs {job_ids} did not finish in {timeout:.0f} s")

    def __enter__(self) -> Orch:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_workers()


def wall_seconds(job: Any) -> float:
    """Submit (the CLI's insert) to done (the worker's final write), from the job's own timestamps."""
    return (job.finished_at - job.created_at).total_seconds()
