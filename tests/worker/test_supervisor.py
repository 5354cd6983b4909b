"""The supervisor against real spawned job processes: a report of any size reaches it, and a child
that dies without one is requeued until ORCH_MAX_ATTEMPTS, then fails with its cause."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from shared.config import Settings, load_settings
from shared.spec import ModelSpec, TrainSpec
from shared.store import Event, Job, Store, open_store
from shared.store import jobs as store_jobs
from shared.store.takeover import take_expired
from worker.supervisor import Supervisor
from worker.warm import WarmChild

CLASSES = 20_000  # their names make a report of ~300 kB: the pipe holds 64 kB


def report_like_a_job(conn: Connection, classes: int) -> None:
    """What worker.child does once its job is done: one report on the pipe, then exit."""
    conn.recv()  # (job, token)
    conn.send(("succeeded", "", {"classes": [f"class-{i:05d}" for i in range(classes)], "startup": {}}))
    conn.close()


def die_like_a_crash(conn: Connection, _classes: int) -> None:
    conn.recv()
    os.kill(os.getpid(), signal.SIGSEGV)


class OneChild:
    """A WarmPool stand-in that hands out freshly spawned processes running `target`."""

    def __init__(self, target: Any):
        self.target = target
        self.spawned: list[multiprocessing.process.BaseProcess] = []

    def take(self, tick: Any, interval: float) -> tuple[WarmChild, dict[str, Any]]:
        mp = multiprocessing.get_context("spawn")
        parent, child = mp.Pipe(duplex=True)
        proc = mp.Process(target=self.target, args=(child, CLASSES))
        proc.start()
        self.spawned.append(proc)
        child.close()
        return WarmChild(proc, parent), {"warm": False}

    def refill(self) -> None:
        pass  # nothing kept ready: take() starts each one


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Store]]:
    for name in ("ORCH_DATABASE_URL", "ORCH_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCH_LEASE_TTL", "6")
    monkeypatch.setenv("ORCH_HEARTBEAT", "0.5")
    monkeypatch.setenv("ORCH_MAX_ATTEMPTS", "2")
    settings = load_settings(tmp_path / "home")
    store = open_store(settings)
    yield settings, store
    store.dispose()


def supervisor(settings: Settings, store: Store, target: Any, sent: list[int]) -> Supervisor:
    return Supervisor(settings=settings, store=store, owner="test:1", resend=lambda i, k, q: sent.append(i),
                      children=OneChild(target))  # type: ignore[arg-type]


def new_job(store: Store) -> int:
    with store.session() as s:
        return store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d")).id


def run_with_timeout(sup: Supervisor, job_id: int, timeout: float) -> list[str]:
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(sup.run(job_id)), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():  # a hung supervisor: free its child, so the test fails instead of hanging
        for proc in sup.children.spawned:  # type: ignore[attr-defined]
            proc.kill()
        thread.join(30)
    return outcome


def test_a_report_bigger_than_the_pipe_buffer_reaches_the_supervisor(home: tuple[Settings, Store]) -> None:
    """Before: the supervisor joined the child before reading, the child blocked in send: the job
    stayed running forever with a live heartbeat."""
    settings, store = home
    job_id = new_job(store)
    outcome = run_with_timeout(supervisor(settings, store, report_like_a_job, []), job_id, timeout=90)
    assert outcome == ["succeeded"]
    with store.session() as s:
        job = s.get(Job, job_id)
        assert job.status == "succeeded" and len(job.result["classes"]) == CLASSES


def test_a_crashing_job_process_is_retried_then_fails_with_its_cause(home: tuple[Settings, Store]) -> None:
    settings, store = home
    job_id, sent = new_job(store), []
    sup = supervisor(settings, store, die_like_a_crash, sent)
    assert run_with_timeout(sup, job_id, timeout=90) == ["crashed"]
    with store.session() as s:
        assert (s.get(Job, job_id).status, sent) == ("queued", [job_id])  # attempt 1 of 2: re-sent
    assert run_with_timeout(sup, job_id, timeout=90) == ["crashed"]
    with store.session() as s:
        job = s.get(Job, job_id)
    assert job.status == "failed" and "SIGSEGV" in job.error and "after 2 attempts" in job.error
    assert sent == [job_id] and job.attempts == 2


def report_the_store_lost(conn: Connection, _classes: int) -> None:
    """A job whose process gave up on a store that did not answer (worker.child's classify)."""
    conn.recv()
    conn.send(("store_lost", "database unreachable: connection refused", {}))
    conn.close()


def test_a_process_that_lost_the_store_gives_its_job_back_uncounted(home: tuple[Settings, Store]) -> None:
    """Before: a transient failure, run again twice in place, then the job failed for the store's outage."""
    settings, store = home
    job_id, sent = new_job(store), []
    sup = supervisor(settings, store, report_the_store_lost, sent)
    for _ in range(3):  # more times than ORCH_MAX_ATTEMPTS (2): none of them counts
        assert run_with_timeout(sup, job_id, timeout=90) == ["store_lost"]
    with store.session() as s:
        job = s.get(Job, job_id)
        events = list(s.scalars(select(Event.message).where(Event.job_id == job_id)))
    assert (job.status, job.attempts, job.attempts - job.retried_at_attempt) == ("queued", 3, 0)
    assert sent == [job_id] * 3 and len(sup.children.spawned) == 3  # type: ignore[attr-defined]
    assert job.error == "the store did not answer"
    assert sum("could not reach the store (database unreachable: connection refused)" in m for m in events) == 3


def report_after_a_takeover(conn: Connection, _classes: int) -> None:
    """A job that ends while its worker was frozen past the lease: another worker's sweeper took it."""
    job, _token = conn.recv()
    from shared.config import load_settings
    from shared.store import open_store

    store = open_store(load_settings())
    with store.session() as s:  # as if its holder's TTL had run out (the sweeper judges by that one)
        s.execute(update(Job).where(Job.id == job["id"]).values(lease_ttl=-1))
    take_expired(store, ttl=30, owner="sweeper-of-w3", max_attempts=3)
    store.dispose()
    conn.send(("succeeded", "", {"classes": ["a", "b"], "startup": {}}))
    conn.close()


def test_an_ending_refused_for_a_lost_lease_is_not_logged_as_the_jobs(home: tuple[Settings, Store],
                                                                      caplog: pytest.LogCaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A frozen worker (kill -STOP) woke after its job's lease was taken over and logged "job 18:
    succeeded" although its ending was refused; it says so, and the job is the new holder's to end."""
    settings, store = home
    monkeypatch.setenv("ORCH_HOME", str(settings.home))  # the spawned job process opens this store
    job_id = new_job(store)
    from dataclasses import replace

    # no beat before the report (a frozen worker's first act on waking), and no fence meanwhile
    frozen = replace(settings, heartbeat=60.0, lease_ttl=600.0)
    with caplog.at_level("INFO", logger="orch.worker"):
        assert run_with_timeout(supervisor(frozen, store, report_after_a_takeover, []), job_id, 90) == ["stale"]
    with store.session() as s:
        assert s.get(Job, job_id).status == "queued"  # the sweeper's requeue stands, not "succeeded"
    said = [r.getMessage() for r in caplog.records]
    assert f"job {job_id}: succeeded here, but its lease had been taken over meanwhile: not recorded; the worker " \
           "that took it over ends it" in said, said
    assert f"job {job_id}: succeeded" not in said


def stop_like_kill_stop(conn: Connection, _classes: int) -> None:
    """A job process that stops doing anything: kill -STOP, or a deadlock."""
    conn.recv()
    os.kill(os.getpid(), signal.SIGSTOP)


def work_then_report(conn: Connection, _classes: int) -> None:
    """A slow phase that is working (CPU busy for 4 s, longer than the stall limit), then done."""
    import time

    conn.recv()
    end = time.monotonic() + 4
    while time.monotonic() < end:
        sum(range(10_000))
    conn.send(("succeeded", "", {"classes": ["a", "b"], "startup": {}}))
    conn.close()


def test_a_job_process_that_does_no_work_is_killed_and_requeued(home: tuple[Settings, Store]) -> None:
    """`kill -STOP` of a job's process: the worker's heartbeat went on and the job stayed "running" for
    ever. A process that uses no CPU for ORCH_STALL_TIMEOUT is killed, and the attempt counts as a
    crash; a process busy for longer than that is left to finish."""
    from dataclasses import replace

    settings, store = home
    quick = replace(settings, stall_after=2.0)
    job_id, sent = new_job(store), []
    assert run_with_timeout(supervisor(quick, store, stop_like_kill_stop, sent), job_id, timeout=60) == ["crashed"]
    from shared.store import reads

    with store.session() as s:
        job = s.get(Job, job_id)
        assert (job.status, sent) == ("queued", [job_id])  # attempt 1 of 2: requeued, resumes from its checkpoint
        events = [e.message for e in reads.job_events(s, job_id)]
    assert any("job process used no CPU for 2 s (stopped or hung; ORCH_STALL_TIMEOUT): killed" in m for m in events), events
    busy = new_job(store)
    assert run_with_timeout(supervisor(quick, store, work_then_report, []), busy, timeout=60) == ["succeeded"]


def fail_unexpectedly(conn: Connection, _classes: int) -> None:
    """The real job process's ending (worker.child.main) for a job its code cannot run: an error no
    one expected (here a KeyError), not one of orch's own, which say what to do in one line."""
    job, token = conn.recv()
    from worker.child import main

    main({**job, "kind": "no-such-kind"}, token, os.environ["ORCH_HOME"], conn, {"requested": False})


def test_an_unexpected_errors_traceback_is_kept_in_the_jobs_history(home: tuple[Settings, Store],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the worker's log had the traceback, on the worker's machine; `orch status ID` showed one
    line. The job's history now ends with its last lines."""
    from shared.store.reads import job_events

    settings, store = home
    monkeypatch.setenv("ORCH_HOME", str(settings.home))
    job_id = new_job(store)
    assert run_with_timeout(supervisor(settings, store, fail_unexpectedly, []), job_id, timeout=90) == ["failed"]
    with store.session() as s:
        job = s.get(Job, job_id)
        events = [(e.kind, e.message) for e in job_events(s, job_id)]
        assert job.status == "failed" and job.error == "KeyError: 'no-such-kind'" and job.result == {}
    kind, trace = events[-1]
    assert kind == "traceback" and trace.startswith("Traceback (most recent call last):"), events
    assert "worker/child.py" in trace and trace.endswith("KeyError: 'no-such-kind'")
    assert events[-2][0] == "warning" and "the job failed" in events[-2][1]


def test_a_worker_that_was_stopped_renews_before_it_fences() -> None:
    """kill -STOP of the worker (not its job) for 50 s, then -CONT: its fence stopped the healthy job at
    once and the history blamed the store ("could not renew its lease for 12 s", "worker lost the
    store"). A gap in the fence's own ticks is the worker not running: the task thread gets its beat
    first; where the beat gets through the job goes on, where it does not the fence stops the job."""
    import multiprocessing as mp
    import time

    from worker.supervisor import SelfFence

    def fence_after_a_pause(renew: bool) -> SelfFence:
        proc = mp.get_context("spawn").Process(target=time.sleep, args=(30,))
        proc.start()
        now = [100.0]
        renewed = [100.0]
        fence = SelfFence(proc, lambda: renewed[0], after=8.0, grace=1.0, beat_within=0.5, clock=lambda: now[0])
        fence.start()
        try:
            time.sleep(0.3)  # ticking: no gap, renewed just now
            now[0] += 50.0  # the process was stopped for 50 s: the fence's next tick sees the gap
            time.sleep(0.3)
            assert not fence.fired.is_set()  # the beat goes first
            if renew:
                renewed[0] = now[0]  # the task thread's beat got through
            now[0] += 1.0  # past the window
            time.sleep(0.5)
            return fence
        finally:
            fence.stop()
            proc.kill()
            proc.join()

    assert not fence_after_a_pause(renew=True).fired.is_set()  # renewed on waking: the job goes on
    failed = fence_after_a_pause(renew=False)
    assert failed.fired.is_set() and failed.silent_s == 51.0  # no beat got through: stopped, and for how long
