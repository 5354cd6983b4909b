"""No lost message: each state change that owes a message records it in its own transaction, and the
relay sends what nobody sent and re-sends what the broker lost, on the embedded broker and on Redis."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select

from shared import delivery
from shared.celery_app import make_celery, queue_size
from shared.config import Settings, load_settings
from shared.spec import ModelSpec, TrainSpec
from shared.store import Job, JobStatus, Lease, Store, open_store, outbox
from shared.store import jobs as store_jobs
from shared.store.schema import Outbox
from shared.store.takeover import take_expired
from tests.conftest import REDIS_DB, REDIS_URL, need_service


@dataclass
class Setup:
    settings: Settings
    store: Store
    app: Celery

    def size(self) -> int:
        with self.app.connection_for_write() as conn:
            return queue_size(conn, "orch")

    def take_oldest(self) -> None:
        """What a worker killed between taking a message and leasing its job leaves behind: no message."""
        with self.app.connection_for_write() as conn:
            assert conn.default_channel.basic_get("orch", no_ack=True) is not None  # the one a worker takes

    def next_label(self) -> str:
        with self.app.connection_for_write() as conn:
            return str(conn.default_channel.basic_get("orch", no_ack=True).headers["argsrepr"])


@pytest.fixture(params=["embedded", "redis"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("ORCH_BROKER_URL", raising=False)
    if request.param == "redis":
        need_service("Redis", "127.0.0.1", 6379)
        import redis

        url = f"{REDIS_URL}/{REDIS_DB}"
        redis.Redis.from_url(url).flushdb()
        monkeypatch.setenv("ORCH_BROKER_URL", url)
    settings = load_settings(tmp_path)
    store = open_store(settings)
    yield Setup(settings, store, make_celery(settings))
    store.dispose()


def submit(setup: Setup, n: int, *, send: bool = True) -> list[outbox.Owed]:
    """Jobs committed with their owed messages, as `orch submit` does; sent unless told otherwise."""
    with setup.store.session() as s:
        owed = [outbox.owe(s, store_jobs.add_job(
            s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d", seed=i))) for i in range(n)]
    if send:
        for row in owed:  # a few ms apart, as sends are: the queue's order is the order of sending
            delivery.deliver(setup.app, setup.store, [row])
            time.sleep(0.005)
    return owed


def open_rows(store: Store) -> list[Any]:
    with store.session() as s:
        return list(s.scalars(select(Outbox).where(Outbox.confirmed_at.is_(None)).order_by(Outbox.id)))


def test_a_row_nobody_sent_is_sent_once_by_one_of_two_relays(setup: Setup) -> None:
    """The CLI died between its commit and its send: after the grace one relay sends it, not both."""
    [row] = submit(setup, 1, send=False)
    first, second = delivery.Relay(setup.app, setup.store), delivery.Relay(setup.app, setup.store)
    assert first.tick() == 0 and setup.size() == 0  # the sender may still be about to send it
    later = time.time() + delivery.UNSENT_GRACE_S
    assert first.tick(later) == 1
    assert second.tick(later) == 0 and first.tick(later + 1) == 0
    assert setup.size() == 1
    [sent] = open_rows(setup.store)
    assert sent.job_id == row.job_id and sent.sends == 1 and sent.sent_at is not None


def test_a_message_taken_by_a_worker_that_died_before_its_lease_is_resent(setup: Setup) -> None:
    owed = submit(setup, 3)
    relay = delivery.Relay(setup.app, setup.store)
    assert setup.size() == 3 and relay.tick() == 0
    setup.take_oldest()
    now = time.time()
    assert relay.tick(now) == 0  # a worker may be leasing it this very moment
    assert relay.tick(now + delivery.SUSPECT_S) == 1
    assert setup.size() == 3
    resent = {row.job_id: row.sends for row in open_rows(setup.store)}
    assert resent == {owed[0].job_id: 2, owed[1].job_id: 1, owed[2].job_id: 1}
    assert relay.tick(now + 2 * delivery.SUSPECT_S) == 0  # nothing missing any more


def test_a_broker_that_lost_every_message_gets_them_all_again(setup: Setup) -> None:
    """A Redis restarted without persistence (here: its queue emptied), or a wiped broker folder."""
    submit(setup, 3)
    empty_broker(setup)
    relay = delivery.Relay(setup.app, setup.store)
    now = time.time()
    relay.tick(now)
    assert relay.tick(now + delivery.SUSPECT_S) == 3 and setup.size() == 3


def empty_broker(setup: Setup) -> None:
    if setup.settings.embedded_broker:
        from shared.broker_fs import broker_folders

        for path in broker_folders(setup.settings)["queue"].glob("*.msg"):
            path.unlink()
    else:
        import redis

        redis.Redis.from_url(setup.settings.broker_url).flushdb()


def test_after_one_relay_resent_the_lost_messages_another_does_not_send_them_again(setup: Setup) -> None:
    """Seen in the chaos bench: a relay that had suspected a row since the outage re-sent it again the
    moment a worker took another message, although a sibling relay had just re-sent it."""
    submit(setup, 3)
    empty_broker(setup)
    first, second = delivery.Relay(setup.app, setup.store), delivery.Relay(setup.app, setup.store)
    now = time.time()
    first.tick(now)
    second.tick(now)
    assert first.tick(now + delivery.SUSPECT_S) == 3
    setup.take_oldest()  # a worker takes one, and has not leased its job yet
    assert second.tick(now + delivery.SUSPECT_S + 1) == 0
    assert setup.size() == 2


def test_leased_and_cancelled_jobs_confirm_their_rows_and_are_not_resent(setup: Setup) -> None:
    owed = submit(setup, 3)
    setup.take_oldest()
    assert Lease.acquire(setup.store, owed[0].job_id, "w:1", 30) is not None  # the oldest message: taken
    with setup.store.session() as s:
        store_jobs.request_cancel(s, [s.get(Job, owed[1].job_id)])
    relay = delivery.Relay(setup.app, setup.store)
    far = time.time() + delivery.RESEND_MAX_S
    assert relay.tick(far) == 1  # only the job still waiting: the backstop's re-send
    assert [row.job_id for row in open_rows(setup.store)] == [owed[2].job_id]


def test_release_requeue_and_assembly_owe_their_message_in_the_same_transaction(setup: Setup) -> None:
    [released, expired] = [row.job_id for row in submit(setup, 2)]
    relay = delivery.Relay(setup.app, setup.store)
    lease = Lease.acquire(setup.store, released, "w:1", 30)
    assert lease is not None and Lease.acquire(setup.store, expired, "w:2", 0.01) is not None
    relay.tick()
    assert open_rows(setup.store) == []  # both leased: their messages did their work
    assert lease.release("worker stopped; requeued")
    time.sleep(0.05)
    assert [j.job_id for j in take_expired(setup.store, 0.01, "sweeper", max_attempts=3)] == [expired]
    rows = open_rows(setup.store)
    assert [(r.job_id, r.sent_at) for r in rows] == [(released, None), (expired, None)]
    delivery.deliver_unsent(setup.app, setup.store, [released, expired])  # what the worker does next
    assert setup.size() == 2 + 2  # the two first messages are still there: nobody consumed them here
    assert all(row.sends == 1 for row in open_rows(setup.store))


def test_a_resumed_job_goes_before_the_jobs_that_have_not_started(setup: Setup) -> None:
    new = submit(setup, 2)
    lease = Lease.acquire(setup.store, new[0].job_id, "w:1", 30)
    assert lease is not None and lease.release("worker stopped; requeued")
    delivery.deliver_unsent(setup.app, setup.store, [new[0].job_id])
    assert setup.next_label() == new[0].label  # the release's message, sent last, is served first
    assert setup.next_label() == new[0].label and setup.next_label() == new[1].label  # then in order


def test_a_second_owed_message_replaces_the_open_one(setup: Setup) -> None:
    [row] = submit(setup, 1, send=False)
    with setup.store.session() as s:
        again = outbox.owe(s, s.get(Job, row.job_id))
    assert [r.id for r in open_rows(setup.store)] == [again.id]


def test_the_backstop_waits_longer_after_each_send() -> None:
    def owed(sends: int, sent_ago: float) -> outbox.Owed:
        return outbox.Owed(1, 1, "train", "orch", None, 0.0, 1000.0 - sent_ago, sends)

    base = delivery.RESEND_AFTER_S
    assert delivery.overdue([owed(1, base - 1)], 1000.0) == []
    assert len(delivery.overdue([owed(1, base)], 1000.0)) == 1
    assert delivery.overdue([owed(2, 1.5 * base)], 1000.0) == []
    assert len(delivery.overdue([owed(2, 2 * base)], 1000.0)) == 1
    assert len(delivery.overdue([owed(40, delivery.RESEND_MAX_S)], 1000.0)) == 1  # capped


def test_a_job_queued_with_no_message_left_is_recovered_by_a_real_relay_thread(setup: Setup) -> None:
    """The thread, not a tick called by hand: the job's message is back within the suspect window."""
    owed = submit(setup, 1)
    setup.take_oldest()
    relay = delivery.Relay(setup.app, setup.store, interval=0.2)
    relay.start()
    try:
        deadline = time.monotonic() + delivery.SUSPECT_S + 10
        while setup.size() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        relay.stopping.set()
        relay.join(timeout=10)
    assert setup.size() == 1
    with setup.store.session() as s:
        assert s.get(Job, owed[0].job_id).status == JobStatus.queued


def test_a_message_a_stopping_worker_took_goes_back_in_its_place(setup: Setup) -> None:
    """A worker stopping with SIGTERM took the next job's message, said "not taken (this worker is
    stopping)" and acked it: the relay re-sent it 5 s later, behind the jobs submitted after it, and the
    next worker ran those first (25, 23, 26, 24). Given back, it is the next message again; a resuming
    job's own message keeps its place ahead of every new one."""
    import json
    from types import SimpleNamespace

    from shared.config import PRIORITY_NEW, PRIORITY_RESUME
    from worker.app import give_back_message

    def next_job() -> int:
        with setup.app.connection_for_write() as conn:
            return int(json.loads(conn.default_channel.basic_get("orch", no_ack=True).body)[0][0])

    def taken(priority: int) -> Any:  # the task a stopping worker ran, as Celery's request has it
        return SimpleNamespace(request=SimpleNamespace(delivery_info={"routing_key": "orch", "priority": priority},
                                                       argsrepr="a label"))

    first, second, third = (row.job_id for row in submit(setup, 3))
    setup.take_oldest()  # the stopping worker takes the first job's message
    give_back_message(setup.app, taken(PRIORITY_NEW), "train", first)  # type: ignore[arg-type]
    assert [next_job() for _ in range(3)] == [first, second, third]
    submit(setup, 2)  # and a job the stopping worker gave back resuming goes before them
    give_back_message(setup.app, taken(PRIORITY_RESUME), "train", third)  # type: ignore[arg-type]
    give_back_message(setup.app, taken(PRIORITY_NEW), "train", first)  # type: ignore[arg-type]
    assert next_job() == third and next_job() == first
