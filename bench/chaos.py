"""Chaos bench (issue 9): a study of short jobs must end, every job once, while workers, `orch submit`
CLIs, the broker and the database connections are killed at random instants.

    python -m bench.chaos                  # embedded: SQLite and the filesystem broker
    python -m bench.chaos --cluster        # a private redis-server (another port) and a fresh PostgreSQL database
    python -m bench.chaos --jobs 4 --epochs 1 --worker-kills 2 --cli-kills 2 \
        --pauses 1 --pause-ttls 1.8 2.0 --ttl 8,16 --kill-gap 3 6       # the test suite's size

Two workers run the study (`--ttl 8,16`: one worker with each lease TTL). A driver SIGKILLs a
worker's whole process group at random instants (one that holds a job: it waits up to BUSY_WAIT_S for one,
then takes an idle one) and starts a new one; it freezes a worker's process group (SIGSTOP; a holder with
the longest TTL) for 0.5-2 of its TTLs, then wakes it (SIGCONT): a holder alive but silent, as a paused VM
or a swap storm makes one. It SIGKILLs submit CLIs, some at a random instant and some exactly between their
commit and their send (the CLI kills itself where it would send), then re-runs the command as a user
would; in the cluster run it also restarts Redis (no persistence: the queued messages go with it) and
terminates the workers' database connections. It prints jobs succeeded / failed / lost, epochs recorded by
a stale attempt, checkpoint files that disagree with the store's row, the p50/p95 time from a worker kill
to its job running again, and takeovers of a frozen holder's job before its own TTL had run. Exit status 0
when every target is met.
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
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chaos_checks import checkpoint_mismatches, stale_attempt_epochs
from bench.chaos_services import Services, cluster_services
from bench.harness import REPO, Orch

STUDY = "chaos"
BUSY_WAIT_S = 20.0  # how long a kill waits for a worker that holds a job
WOKEN_S = 5.0  # a woken worker has renewed (or lost) its leases within this (2 heartbeats and then some)
# `orch ARGS`, except that the process SIGKILLs itself where it would send its first message: after its
# commit, before any send (the window the outbox closes).
KILLED_AT_SEND = ("import os, signal, sys\nimport shared.delivery\n"
                  "shared.delivery.send_message = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
                  "sys.argv = ['orch', *sys.argv[1:]]\nfrom orchestrator.cli import main\nmain()\n")


@dataclass
class Kill:
    at: float  # unix time of the SIGKILL
    job_id: int
    attempts: int  # the job's attempts when its worker was killed
    back_after: float | None = None  # seconds until it ran again
    requeued_after: float | None = None  # seconds until a sweeper took its lease (expired, or its holder gone) and owed its message


@dataclass
class Pause:
    """A worker's process group frozen at `at` for `seconds`: its jobs' leases must not be taken before the
    holder's own TTL has run from its last heartbeat, and once taken, the woken holder must write nothing."""

    at: float
    worker: str
    ttl: float  # the frozen worker's ORCH_LEASE_TTL
    seconds: float
    leases: dict[int, float]  # the jobs it held when frozen: job id -> its last heartbeat (unix seconds)
    taken_after: list[float] = field(default_factory=list)  # seconds from the last heartbeat to a takeover

    @property
    def outlived_the_lease(self) -> bool:
        """Woken after a lease it held had expired (a TTL from its last heartbeat, which came before the freeze)."""
        return any(self.at + self.seconds > beat + self.ttl for beat in self.leases.values())


@dataclass
class Worker:
    name: str  # the node name: what the store records as the holder of the jobs it runs
    process: subprocess.Popen[bytes]
    ttl: float  # its ORCH_LEASE_TTL


@dataclass
class Run:
    orch: Orch
    args: argparse.Namespace
    services: Services | None
    data: Path
    rng: random.Random
    workers: list[Worker] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    frozen: set[str] = field(default_factory=set)  # names of the workers frozen now
    events: dict[str, int] = field(default_factory=dict)
    submitted: threading.Event = field(default_factory=threading.Event)

    def spawn_worker(self, ttl: float) -> None:
        n = self.events.get("worker started", 0)
        log = (self.orch.home / f"worker-{n}.log").open("w")
        # the node name in full: it is what the worker records as a job's holder (jobs_of_worker)
        name = f"chaos{n}@{socket.gethostname()}"
        self.workers.append(Worker(name, subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker", "--name", name],
            env={**self.orch.env, "ORCH_LEASE_TTL": f"{ttl:g}"}, cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True), ttl))
        self.count("worker started")

    def count(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1

    def awake_holders(self, store: Any, longest_ttl: bool = False) -> list[Worker]:
        """The workers not frozen that hold a job (`longest_ttl`: of those with the longest TTL), waiting up
        to BUSY_WAIT_S for one; then any that holds a job, or else every worker not frozen: a fault on an
        idle worker tests no recovery (on a fast CPU a one-epoch job is over in seconds). A frozen worker
        is left alone: a kill would end its freeze in a takeover that tests the kill."""
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            awake = [w for w in self.workers if w.name not in self.frozen]
            if not awake:  # every worker frozen: the first wakes within 2 of its TTLs
                time.sleep(0.2)
                continue
            holding = [w for w in awake if jobs_of_worker(store, w.name)]
            top = max(w.ttl for w in awake)
            wanted = [w for w in holding if w.ttl == top or not longest_ttl]
            if wanted:
                return wanted
            if time.monotonic() > deadline or study_done(store, self.args.jobs):
                return holding or awake
            time.sleep(0.2)

    def kill_worker(self, store: Any) -> None:
        """SIGKILL a worker's process group (one that holds a job, if one does within BUSY_WAIT_S)."""
        victim = self.rng.choice(self.awake_holders(store))
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        # read after the kill: a job that ended between the look and the kill was not killed, and would
        # have waited for a recovery that never comes
        running = jobs_of_worker(store, victim.name)
        now = time.time()
        self.kills += [Kill(now, job_id, attempts) for job_id, attempts in running]
        self.workers.remove(victim)
        self.count("worker killed" + ("" if running else " (idle)"))
        self.spawn_worker(victim.ttl)  # restarted as it was, as a service manager would

    def pause_worker(self, store: Any) -> None:
        """SIGSTOP a worker's process group (its job's process too), a holder with the longest TTL: the one
        that a sweeper with a shorter TTL would take from too early; SIGCONT after --pause-ttls of its TTLs."""
        victim = self.rng.choice(self.awake_holders(store, longest_ttl=True))
        os.killpg(victim.process.pid, signal.SIGSTOP)
        self.frozen.add(victim.name)
        # read after the freeze: its last heartbeat is in
        leases = {job: beat for job, _attempts, beat in leases_of_worker(store, victim.name)}
        seconds = victim.ttl * self.rng.uniform(*self.args.pause_ttls)
        self.pauses.append(Pause(time.time(), victim.name, victim.ttl, seconds, leases))
        self.count("worker frozen" + ("" if leases else " (idle)"))
        timer = threading.Timer(seconds, self.wake, (victim,))
        timer.daemon = True
        timer.start()

    def wake(self, worker: Worker) -> None:
        try:
            os.killpg(worker.process.pid, signal.SIGCONT)
            self.count("worker woken")
        except ProcessLookupError:  # the run ended meanwhile
            pass
        self.frozen.discard(worker.name)

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
        """(seconds from the start, action): worker kills and freezes (the freezes spread over the same slots,
        a kill first: each kill restarts a worker, whose first job's start keeps the study going on a fast CPU),
        and in the cluster run Redis and PostgreSQL faults."""
        slots = self.args.worker_kills + self.args.pauses
        freezes = {int((i + 0.5) * slots / self.args.pauses) for i in range(self.args.pauses)}
        plan, at = [], 5.0
        for slot in range(slots):
            at += self.rng.uniform(*self.args.kill_gap)
            plan.append((at, "pause worker" if slot in freezes else "kill worker"))
        if self.services is not None:
            span = max(at, 60.0)
            plan += [(self.rng.uniform(10, span), "restart redis") for _ in range(self.args.redis_restarts)]
            plan += [(self.rng.uniform(10, span), "terminate db connections") for _ in range(self.args.pg_kills)]
        return sorted(plan)

    def act(self, action: str, store: Any) -> None:
        if action == "kill worker":
            self.kill_worker(store)
        elif action == "pause worker":
            self.pause_worker(store)
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
            if self.submitted.is_set() and not plan and not self.frozen and study_done(store, self.args.jobs):
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


def note_takeovers(run: Run, store: Any) -> None:
    """For each job a frozen worker held: when a sweeper took it from that worker while it was frozen (the
    history's takeover lines that name it as the holder; WOKEN_S more for the wake itself), counted from the
    holder's last heartbeat. Later takeovers of the job, from the workers that ran it next, are the kills'."""
    from sqlalchemy import or_, select

    from shared.store.schema import Event

    with store.session() as s:
        for pause in run.pauses:
            from_holder = or_(Event.message.startswith(f"lease of {pause.worker} expired", autoescape=True),
                              Event.message.startswith(f"{pause.worker} is gone", autoescape=True))
            for job_id, beat in pause.leases.items():
                taken = s.scalars(select(Event.at).where(Event.job_id == job_id, from_holder,
                                                         Event.message.contains("taken over by", autoescape=True)))
                pause.taken_after += [unix_time(at) - beat for at in taken
                                      if pause.at < unix_time(at) < pause.at + pause.seconds + WOKEN_S]


def unix_time(at: datetime) -> float:
    """A stored time as a unix time: SQLite gives it back without its zone, which is UTC."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def jobs_of_worker(store: Any, name: str) -> list[tuple[int, int]]:
    """(job id, attempts) of the jobs the worker named `name` (its node name) holds a lease on."""
    return [(job_id, attempts) for job_id, attempts, _beat in leases_of_worker(store, name)]


def leases_of_worker(store: Any, name: str) -> list[tuple[int, int, float]]:
    """(job id, attempts, last heartbeat in unix seconds) of the jobs the worker named `name` holds."""
    from sqlalchemy import select

    from shared.store import Job, JobStatus

    with store.session() as s:
        rows = s.execute(select(Job.id, Job.attempts, Job.heartbeat_at)
                         .where(Job.status == JobStatus.running, Job.worker_host == name))
        return [(job_id, attempts, float(beat)) for job_id, attempts, beat in rows]


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
    note_takeovers(run, store)
    held = [p for p in run.pauses if p.leases]
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
        "freezes_of_a_holder": len(held),
        "freezes_outliving_the_lease": sum(p.outlived_the_lease for p in held),
        "frozen_jobs_taken_over": sum(bool(p.taken_after) for p in held),
        # a takeover before the frozen holder's own TTL had run from its last heartbeat (the sweeper's
        # own TTL, if shorter, must not decide): 0 is the target
        "taken_before_the_holders_ttl": sum(after < p.ttl for p in held for after in p.taken_after),
        "kills": [{"job": k.job_id, "at": round(k.at, 1), "back_after_s": _round(k.back_after),
                   "requeued_after_s": _round(k.requeued_after)} for k in run.kills],
        "pauses": [{"at": round(p.at, 1), "ttl_s": p.ttl, "frozen_s": round(p.seconds, 1),
                    "jobs": list(p.leases),
                    "taken_after_last_beat_s": [round(a, 1) for a in p.taken_after]} for p in run.pauses],
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
            and (out["recovery_p95_s"] is None or out["recovery_p95_s"] < 60)
            and out["taken_before_the_holders_ttl"] == 0 and len(out["pauses"]) == args.pauses
            and (out["freezes_of_a_holder"] > 0 or not args.pauses))  # else no frozen holder was tested


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _p95(values: list[float]) -> float:
    return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]


def ttl_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"give seconds, or a comma list of them such as 8,16; got {text!r}") from None


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
    parser.add_argument("--kill-gap", type=float, nargs=2, default=(12.0, 30.0), metavar=("MIN", "MAX"),
                        help="seconds between two worker faults (kills and freezes) [12 30]")
    parser.add_argument("--pauses", type=int, default=2, help="worker freezes (SIGSTOP, then SIGCONT)")
    parser.add_argument("--pause-ttls", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"),
                        help="how long a freeze lasts, in the frozen worker's TTLs [0.5 2]")
    parser.add_argument("--ttl", type=ttl_list, default=[30.0],
                        help="ORCH_LEASE_TTL, or a comma list: the workers' in turn [the default, 30 s]")
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
        env = {**(services.env if services else {}), "ORCH_LEASE_TTL": f"{args.ttl[0]:g}",
               "ORCH_MAX_ATTEMPTS": str(args.worker_kills + 2)}
        orch = Orch(tmp / "home", env=env)
        if services is not None:
            orch.cli("db", "upgrade")
        orch.cli("data", "synth", str(tmp / "data"), "--train", "64", "--val", "32", "--test", "8", "--size", "32")
        run = Run(orch, args, services, tmp / "data", random.Random(args.seed))
        stack.callback(lambda: [os.killpg(w.process.pid, signal.SIGKILL) for w in run.workers if w.process.poll() is None])
        for _ in range(args.workers):
            run.spawn_worker(args.ttl[len(run.workers) % len(args.ttl)])
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
