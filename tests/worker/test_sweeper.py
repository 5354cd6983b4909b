"""The sweeper takes the leases of workers that are gone, not of workers whose heartbeats the store
refused: after a spell without writes (a SQLite lock past the TTL, a PostgreSQL restart) every lease
reads as expired, and taking them counted an attempt against every running job."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.broker_fs import transport_options
from shared.config import Settings, load_settings
from shared.errors import StoreUnavailable
from shared.spec import ModelSpec, TrainSpec
from shared.store import Job, JobStatus, Lease, Store, open_store
from shared.store import jobs as store_jobs
from worker.sweeper import Sweeper, awake_clock

TTL, HEARTBEAT = 3.0, 0.5  # the sweeper's interval: max(1 s, TTL / 3) = 1 s


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Store]:
    monkeypatch.setenv("ORCH_LEASE_TTL", str(TTL))
    monkeypatch.setenv("ORCH_HEARTBEAT", str(HEARTBEAT))
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    settings = load_settings(tmp_path / "home")
    transport_options(settings)  # the embedded broker's folders, which every sweep prunes
    return settings, open_store(settings)


@pytest.fixture
def sweeping(home: tuple[Settings, Store]) -> Iterator[tuple[Sweeper, list[int]]]:
    """This worker's sweeper, running as in a worker (a sweep a second)."""
    settings, store = home
    sent: list[int] = []
    sweeper = Sweeper(settings, store, lambda job_id, kind, queue: sent.append(job_id), "sweeper of w:1")
    sweeper.start()
    yield sweeper, sent
    sweeper.stopping.set()
    sweeper.join(35)


def leased(store: Store, owner: str, seed: int) -> Lease:
    with store.session() as s:
        job_id = store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d", seed=seed)).id
    lease = Lease.acquire(store, job_id, owner, TTL)
    assert lease is not None
    return lease


def statuses(store: Store, *leases: Lease) -> list[JobStatus]:
    with store.session() as s:
        return [s.get(Job, lease.job_id).status for lease in leases]


def beating(lease: Lease, stop: threading.Event) -> threading.Thread:
    """A live worker's supervisor: a heartbeat every HEARTBEAT seconds, waiting on the store like any writer."""
    def beat() -> None:
        while not stop.wait(HEARTBEAT):
            lease.heartbeat()
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return thread


def test_after_a_lock_held_past_the_ttl_live_workers_get_a_ttl_to_beat_again(
        home: tuple[Settings, Store], sweeping: tuple[Sweeper, list[int]]) -> None:
    settings, store = home
    sweeper, sent = sweeping
    alive, gone = leased(store, "w:2", 0), leased(store, "w:3", 1)  # w:3 was killed: it never beats
    stop = threading.Event()
    beats = beating(alive, stop)
    try:
        time.sleep(1.5)
        lock = sqlite3.connect(settings.home / "orch.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # no writes from now on: every heartbeat and the sweep wait
        time.sleep(TTL + 1.5)  # both leases expired meanwhile
        lock.execute("ROLLBACK")
        released = awake_clock()
        time.sleep(1.5)  # the sweeper's late write and the next sweep: neither takes a lease
        assert statuses(store, alive, gone) == [JobStatus.running] * 2 and sent == []
        assert sweeper.hold_off_until > released
        time.sleep(max(0.0, sweeper.hold_off_until - awake_clock()) + 2.5)
        assert statuses(store, alive, gone) == [JobStatus.running, JobStatus.queued] and sent == [gone.job_id]
    finally:
        stop.set()
        beats.join(35)


def test_after_an_outage_the_first_sweep_that_reaches_the_store_holds_off(
        home: tuple[Settings, Store], sweeping: tuple[Sweeper, list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL restart: the sweeps fail while it is down, and the first one after it finds every
    lease of the cluster expired."""
    settings, store = home
    sweeper, sent = sweeping
    time.sleep(1.5)
    lease = leased(store, "w:2", 0)  # its worker cannot beat while the store is down

    def down(_store: Store) -> None:
        raise StoreUnavailable("database unreachable: connection refused")
    with monkeypatch.context() as patched:
        patched.setattr(Lease, "await_writes", staticmethod(down))
        time.sleep(TTL + 1)
        assert sweeper.hold_off_until == 0.0
    time.sleep(1.5)  # a sweep reached the store: the lease is past its TTL but not taken
    assert statuses(store, lease) == [JobStatus.running] and sent == []
    assert sweeper.hold_off_until > awake_clock()
