"""Chaos bench (issue 9): a study of short jobs must end, every job once, while workers, `orch submit`
CLIs, the broker and the database connections are killed at random instants.

    python -m bench.chaos                  # embedded: SQLite and the filesystem broker
    python -m bench.chaos --cluster        # a private redis-server (another port) and a fresh PostgreSQL database
    python -m bench.chaos --jobs 4 --epochs 1 --worker-kills 2 --cli-kills 2 --ttl 10   # the test suite's size

Two workers run the study. A driver SIGKILLs a worker's whole process group at random instants (one that
holds a job: it waits up to BUSY_WAIT_S for one, then takes an idle one) and starts a new one; it SIGKILLs
submit CLIs, some at a random instant and some exactly between their commit and their send (the CLI kills
itself where it would send), then re-runs the command as a user would; in the cluster run it also restarts
Redis (no persistence: the queued messages go with it) and terminates the workers' database connections.
It prints jobs succeeded / failed / lost, epochs recorded by a stale attempt, checkpoint files that disagree
with the store's row, and the p50/p95 time from a worker kill to its job running again. Exit status 0 when
every target is met.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chaos_checks import checkpoint_mismatches, stale_attempt_epochs
from bench.harness import REPO, Orch

PG_ADMIN = os.environ.get("ORCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
STUDY = "chaos"
BUSY_WAIT_S = 20.0  # how long a kill waits for a worker that holds a job
# `orch ARGS`, except that the process SIGKILLs itself where it would send its first message: after its
# commit, before any send (the window the outbox closes).
KILLED_AT_SEND = ("import os, signal, sys\nimport shared.delivery\n"
                  "shared.delivery.send_message = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
                  "sys.argv = ['orch', *sys.argv[1:]]\nfrom orchestrator.cli import main\nmain()\n")


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


@dataclass
class Kill:
    at: float  # unix time of the SIGKILL
    job_id: int
    attempts: int  # the job's attempts when its worker was killed
    back_after: float | None = None  # seconds until it ran again
    requeued_after: float | None = None  # seconds until a sweeper took its lease (expired, or its holder gone) and owed its message


@dataclass
class Worker:
    name: str  # the node name: what the store records as the holder of the jobs it runs
    process: subprocess.Popen[bytes]


@dataclass
class Run:
    orch: Orch
    args: argparse.Namespace
    services: Services | None
    data: Path
    rng: random.Random
    workers: list[Worker] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    submitted: threading.Event = field(default_factory=threading.Event)

    def spawn_worker(self) -> None:
        n = self.events.get("worker started", 0)
        log = (self.orch.home / f"worker-{n}.log").open("w")
        # the node name in full: it is what the worker records as a job's holder (jobs_of_worker)
        name = f"chaos{n}@{socket.gethostname()}"
        self.workers.append(Worker(name, subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker", "--name", name], env=self.orch.env, cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)))
        self.count("worker started")

    def count(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1

    def kill_worker(self, store: Any) -> None:
        """SIGKILL a worker's process group, one that holds a job if one does within BUSY_WAIT_S: a kill of
        an idle worker tests no recovery (on a fast CPU a one-epoch job is over in seconds)."""
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            holding = [(w, jobs) for w in self.workers if (jobs := jobs_of_worker(store, w.name))]
            if holding or time.monotonic() > deadline or study_done(store, self.args.jobs):
                break
            time.sleep(0.2)
        victim = self.rng.choice(holding)[0] if holding else self.rng.choice(self.workers)
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        # read after the kill: a job that ended between the look and the kill was not killed, and would
        # have waited for a recovery that never comes
        running = jobs_of_worker(store, victim.name)
        now = time.time()
        self.kills += [Kill(now, job_id, attempts) for job_id, attempts in running]
        self.workers.remove(victim)
        self.count("worker killed" + ("" if running else " (idle)"))
        self.spawn_worker()

    def submit_study(self) -> None:
        """The study in chunks, each by its own CLI; a killed CLI's command is run again, as a user would."""
        seeds = list(range(self.args.jobs))
        chunks = max(2, self.args.cli_kills)
        for i in range(chunks):
            cmd = ["submit", "ablation", "--data", str(self.data / "train"), "--val", str(self.data / "val"),
                   "--model", "resnet18", "--image-size", "32", "--batch-size", "32", "--epochs",
                   str(self.args.epochs), "--seeds", ",".join(map(str, seeds[i::chunks])), "--study", STUDY]
            if i < self.args.cli_kills:
                self.killed_submit(cmd, at_send=i % 2 == 0)
            self.submit_until_accepted(cmd)
        self.submitted.set()

    def submit_until_accepted(self, cmd: list[str]) -> None:
        """The user runs the command again until it is accepted (the broker may be restarting)."""
        for _ in range(10):
            try:
                self.orch.cli(*cmd, timeout=300)
                return
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                self.count("submit refused, run again")
                print(f"chaos: {str(exc)[-300:]}", file=sys.stderr)
                time.sleep(2.0)

    def killed_submit(self, cmd: list[str], *, at_send: bool) -> None:
        if at_send:
            argv = [sys.executable, "-c", KILLED_AT_SEND, *cmd]
            rc = subprocess.run(argv, env=self.orch.env, cwd=REPO, capture_output=True, timeout=300).returncode
            self.count("submit killed between commit and send" if rc == -signal.SIGKILL else "submit not killed")
            return
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", *cmd], env=self.orch.env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(self.rng.uniform(0.3, 4.0))
        proc.send_signal(signal.SIGKILL)
        self.count("submit killed at a random instant" if proc.wait() == -signal.SIGKILL else "submit ended first")

    def schedule(self) -> list[tuple[float, str]]:
        """(seconds from the start, action): worker kills, and in the cluster run Redis and PostgreSQL faults."""
        plan, at = [], 5.0
        for _ in range(self.args.worker_kills):
            at += self.rng.uniform(*self.args.kill_gap)
            plan.append((at, "kill worker"))
        if self.services is not None:
            span = max(at, 60.0)
            plan += [(self.rng.uniform(10, span), "restart redis") for _ in range(self.args.redis_restarts)]
            plan += [(self.rng.uniform(10, span), "terminate db connections") for _ in range(self.args.pg_kills)]
        return sorted(plan)

    def act(self, action: str, store: Any) -> None:
        if action == "kill worker":
            self.kill_worker(store)
        elif action == "restart redis" and self.services is not None:
            self.services.restart_redis()
            self.count("redis restarted")
        elif action == "terminate db connections" and self.services is not None:
            self.events["db connections terminated"] = (self.events.get("db connections terminated", 0)
                                                        + self.services.terminate_connections())
            self.count("db termination rounds")

    def drive(self, store: Any) -> float:
        """Run the plan until every job of the study has ended (or the timeout); returns the wall time."""
        started = time.monotonic()
        plan = self.schedule()
        while time.monotonic() - started < self.args.timeout:
            now = time.monotonic() - started
            while plan and plan[0][0] <= now:
                self.act(plan.pop(0)[1], store)
            self.note_recoveries(store)
            if self.submitted.is_set() and not plan and study_done(store, self.args.jobs):
                break
            time.sleep(0.5)
        return time.monotonic() - started

    def note_recoveries(self, store: Any) -> None:
        from sqlalchemy import func, select

        from shared.store import Job
        from shared.store.lease import ATTEMPT_STARTED
        from shared.store.schema import Event, Outbox

        with store.session() as s:
            for kill in (k for k in self.kills if k.back_after is None):
                job = s.get(Job, kill.job_id)
                if job is None or job.attempts <= kill.attempts:
                    continue
                # the next attempt's start is in the job's history (started_at stays the first attempt's)
                next_start = s.scalar(select(Event.at).where(
                    Event.job_id == kill.job_id, Event.message.like(ATTEMPT_STARTED.format(kill.attempts + 1) + "%")))
                if next_start is not None:
                    kill.back_after = max(0.0, unix_time(next_start) - kill.at)
                    owed = s.scalar(select(func.min(Outbox.created_at)).where(
                        Outbox.job_id == kill.job_id, Outbox.created_at > kill.at))
                    kill.requeued_after = owed - kill.at if owed is not None else None


def unix_time(at: datetime) -> float:
    """A stored time as a unix time: SQLite gives it back without its zone, which is UTC."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def jobs_of_worker(store: Any, name: str) -> list[tuple[int, int]]:
    """(job id, attempts) of the jobs the worker named `name` (its node name) holds a lease on."""
    from sqlalchemy import select

    from shared.store import Job, JobStatus

    with store.session() as s:
        rows = s.execute(select(Job.id, Job.attempts).where(Job.status == JobStatus.running, Job.worker_host == name))
        return [(job_id, attempts) for job_id, attempts in rows]


def study_jobs(store: Any) -> list[Any]:
    from sqlalchemy import select

    from shared.store import Job, Study

    with store.session() as s:
        return list(s.scalars(select(Job).join(Study, Study.id == Job.study_id).where(Study.name == STUDY)))


def study_done(store: Any, expected: int) -> bool:
    jobs = study_jobs(store)
    return len(jobs) >= expected and all(job.status in ("succeeded", "failed", "cancelled") for job in jobs)


def summarize(run: Run, store: Any, wall_s: float) -> dict[str, Any]:
    jobs = study_jobs(store)
    statuses = [job.status for job in jobs]
    recoveries = sorted(k.back_after for k in run.kills if k.back_after is not None)
    requeued = sorted(k.requeued_after for k in run.kills if k.requeued_after is not None)
    mismatched, digest_checked = checkpoint_mismatches(store, [job.id for job in jobs])
    out = {
        "mode": "cluster (Redis + PostgreSQL)" if run.services else "embedded (SQLite + filesystem broker)",
        "jobs": run.args.jobs, "epochs": run.args.epochs, "lease_ttl_s": run.args.ttl, "wall_s": round(wall_s, 1),
        "succeeded": statuses.count("succeeded"), "failed": statuses.count("failed"),
        "lost": run.args.jobs - statuses.count("succeeded") - statuses.count("failed"),
        "stale_attempt_epochs": stale_attempt_epochs(store, [job.id for job in jobs]),
        "checkpoint_mismatches": mismatched, "checkpoint_digests_checked": digest_checked,
        "kills_with_a_running_job": len(run.kills), "recovered": len(recoveries),
        "recovery_p50_s": round(statistics.median(recoveries), 1) if recoveries else None,
        "recovery_p95_s": round(_p95(recoveries), 1) if recoveries else None,
        "requeue_p50_s": round(statistics.median(requeued), 1) if requeued else None,
        "events": dict(sorted(run.events.items())),
    }
    out["targets_met"] = targets_met(out, run.args)
    return out


def targets_met(out: dict[str, Any], args: argparse.Namespace) -> bool:
    kills = out["events"].get("worker killed", 0) + out["events"].get("worker killed (idle)", 0)
    return (out["succeeded"] == args.jobs and out["lost"] == 0 and out["stale_attempt_epochs"] == 0
            and out["checkpoint_mismatches"] == 0 and kills >= args.worker_kills
            and out["recovered"] == out["kills_with_a_running_job"]
            and (out["kills_with_a_running_job"] > 0 or not args.worker_kills)  # else no recovery was measured
            and (out["recovery_p95_s"] is None or out["recovery_p95_s"] < 60))


def _p95(values: list[float]) -> float:
    return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cluster", action="store_true", help="Redis + PostgreSQL instead of the embedded mode")
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-kills", type=int, default=8)
    parser.add_argument("--cli-kills", type=int, default=4, help="submit CLIs killed (half between commit and send)")
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--pg-kills", type=int, default=2, help="rounds of pg_terminate_backend")
    parser.add_argument("--kill-gap", type=float, nargs=2, default=(12.0, 30.0), metavar=("MIN", "MAX"))
    parser.add_argument("--ttl", type=float, default=30.0, help="ORCH_LEASE_TTL [the default, 30 s]")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (worker logs, the store)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orch-chaos-")))
        tmp.mkdir(parents=True, exist_ok=True)
        services = stack.enter_context(cluster_services(tmp)) if args.cluster else None
        # the driver's kills are crashes to a worker: enough attempts that they alone never exhaust
        # ORCH_MAX_ATTEMPTS (a random victim can be the same job's worker several times)
        env = {**(services.env if services else {}), "ORCH_LEASE_TTL": str(args.ttl),
               "ORCH_MAX_ATTEMPTS": str(args.worker_kills + 2)}
        orch = Orch(tmp / "home", env=env)
        if services is not None:
            orch.cli("db", "upgrade")
        orch.cli("data", "synth", str(tmp / "data"), "--train", "64", "--val", "32", "--test", "8", "--size", "32")
        run = Run(orch, args, services, tmp / "data", random.Random(args.seed))
        stack.callback(lambda: [os.killpg(w.process.pid, signal.SIGKILL) for w in run.workers if w.process.poll() is None])
        for _ in range(args.workers):
            run.spawn_worker()
        threading.Thread(target=run.submit_study, daemon=True).start()
        store = orch.store()
        out = summarize(run, store, run.drive(store))
        store.dispose()
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if out["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
