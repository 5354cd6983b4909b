"""The embedded broker never hands a consumer a half-written message, and its janitor empties the
queues of monitors that went away and drops the messages of jobs that ended without them.

kombu's stock filesystem transport creates the message file before writing it; a consumer that
polls in between takes an empty file and the message is lost (35 of 3000 in a tight loop here).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection
from kombu.transport.filesystem import Transport as StockTransport

from shared.broker_fs import JOB_IN_NAME, Transport, broker_folders, drop_finished_messages, prune_broker
from shared.celery_app import make_celery, send_job
from shared.config import load_settings

SENDS = 3000


def options(folder: Path) -> dict[str, object]:
    return {"data_folder_in": str(folder / "q"), "data_folder_out": str(folder / "q"),
            "store_processed": True, "processed_folder": str(folder / "done")}


def consume(folder: Path, transport: type, ready, sent, result) -> None:
    """kombu's own _get in a tight loop until every send is accounted for."""
    from queue import Empty

    got = broken = 0
    with Connection("filesystem://", transport=transport, transport_options=options(folder)) as conn:
        channel = conn.channel()
        ready.set()
        while got + broken < SENDS:
            try:
                channel._get("jobs")
                got += 1
            except Empty:
                if sent.is_set() and not any((folder / "q").iterdir()):
                    break  # a broken message was moved away: nothing more will come
            except ValueError:
                broken += 1
    result.put((got, broken))


def race(tmp_path: Path, transport: type) -> tuple[int, int]:
    for sub in ("q", "done"):
        (tmp_path / sub).mkdir()
    ctx = mp.get_context("spawn")
    ready, sent, result = ctx.Event(), ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=consume, args=(tmp_path, transport, ready, sent, result))
    consumer.start()
    assert ready.wait(60)
    with Connection("filesystem://", transport=transport, transport_options=options(tmp_path)) as conn:
        channel = conn.channel()
        for i in range(SENDS):
            channel._put("jobs", {"body": "x" * 100_000, "n": i})
    sent.set()
    got, broken = result.get(timeout=120)
    consumer.join(30)
    return got, broken


def test_orch_transport_delivers_every_message_whole(tmp_path: Path) -> None:
    got, broken = race(tmp_path, Transport)
    assert (got, broken) == (SENDS, 0)
    assert not [p for p in (tmp_path / "q").iterdir()]  # no temp file left behind


def test_the_stock_transport_loses_messages_to_the_same_race(tmp_path: Path) -> None:
    """Shows the race is real on this machine, so the test above can fail; skip once kombu fixes it."""
    got, broken = race(tmp_path, StockTransport)
    assert got + broken <= SENDS
    if broken == 0:
        pytest.skip("kombu's stock transport did not lose a message this time")
    assert got < SENDS


def write_message(folder: Path, queue: str, age_s: float) -> Path:
    path = folder / f"{int(time.monotonic() * 1000)}_{os.urandom(4).hex()}.{queue}.msg"
    path.write_text("{}")
    old = time.time() - age_s
    os.utime(path, (old, old))
    return path


def test_stale_event_queues_are_unbound_and_emptied_work_queues_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ORCH_BROKER_URL", raising=False)
    settings = load_settings(tmp_path)
    make_celery(settings)  # creates the broker folders
    folders = broker_folders(settings)
    table = folders["control"] / "celeryev.exchange"
    table.write_text(json.dumps([["worker.#", "", "celeryev.gone"], ["worker.#", "", "celeryev.live"]]))
    gone = write_message(folders["queue"], "celeryev.gone", age_s=600)
    live = write_message(folders["queue"], "celeryev.live", age_s=5)
    work = write_message(folders["queue"], "orch", age_s=3600)  # a job nobody took yet: never pruned
    done = folders["processed"] / "1_x.orch.msg"
    done.write_text("{}")
    os.utime(done, (time.time() - 120, time.time() - 120))
    orphan = folders["queue"] / ".1_x.orch.msg.tmp"  # a sender killed before its rename
    orphan.write_text("{")
    os.utime(orphan, (time.time() - 600, time.time() - 600))

    removed = prune_broker(settings)

    assert removed == 3 and not gone.exists() and not done.exists() and not orphan.exists()
    assert live.exists() and work.exists()
    assert json.loads(table.read_text()) == [["worker.#", "", "celeryev.live"]]


def test_a_burst_of_sends_is_taken_in_the_order_sent(tmp_path: Path) -> None:
    """A study's cells are sent within a millisecond of each other; the consumer takes the first name in
    sorted order, so the name's time must tell them apart (a millisecond stamp left them to the
    random uuid after it: the demo ran job 5 before job 4)."""
    for sub in ("q", "done"):
        (tmp_path / sub).mkdir()
    with Connection("filesystem://", transport=Transport, transport_options=options(tmp_path)) as conn:
        channel = conn.channel()
        for i in range(50):
            channel._put("jobs", {"n": i})
        assert [channel._get("jobs")["n"] for _ in range(50)] == list(range(50))


BINDERS = 6


def bind_at_once(folder: Path, transport: type, exchange: str, queue: str, start) -> None:
    with Connection("filesystem://", transport=transport,
                    transport_options={**options(folder), "control_folder": str(folder / "control")}) as conn:
        channel = conn.channel()
        start.wait(60)
        channel._queue_bind(exchange, "", "", queue)


def bind_race(tmp_path: Path, transport: type, rounds: int = 15, *, threads: bool = False) -> int:
    """Rounds in which processes (or threads of one process: Flower's inspector runs its methods in
    threads, each binding its reply queue) binding to a new exchange at once left its table unreadable
    or short."""
    import threading

    for sub in ("q", "done"):
        (tmp_path / sub).mkdir(exist_ok=True)
    ctx = mp.get_context("fork")
    broken = 0
    for r in range(rounds):
        start = threading.Event() if threads else ctx.Event()
        spawn = threading.Thread if threads else ctx.Process
        binders = [spawn(target=bind_at_once, args=(tmp_path, transport, f"reply{r}", f"q{i}", start))
                   for i in range(BINDERS)]
        for binder in binders:
            binder.start()
        time.sleep(0.3)
        start.set()
        for binder in binders:
            binder.join(60)
        try:
            table = json.loads((tmp_path / "control" / f"reply{r}.exchange").read_text())
        except ValueError:
            broken += 1
            continue
        broken += len(table) != BINDERS
    return broken


def test_processes_binding_to_a_new_exchange_at_once_leave_a_whole_table(tmp_path: Path) -> None:
    """kombu truncates a new exchange's table before it locks it: Flower's inspect and a worker's reply
    binding at once left trailing bytes ("Extra data"), and Flower's workers list empty for good."""
    assert bind_race(tmp_path, Transport) == 0


def test_the_stock_transport_breaks_a_new_exchanges_table(tmp_path: Path) -> None:
    """Shows the bind race is real here, so the test above can fail; skip once kombu fixes it."""
    import pytest

    broken = bind_race(tmp_path, StockTransport)
    if broken == 0:
        pytest.skip("kombu's stock transport kept every table whole this time")
    assert broken > 0


def test_threads_binding_to_a_new_exchange_at_once_leave_a_whole_table(tmp_path: Path) -> None:
    """The first fix named its "[]" file by process only: two threads of Flower's shared it, and after the
    first thread's link it was the table itself, which the second truncated and overwrote with "[]"
    (the suite's "Extra data: line 1 column 3 (char 2)", again)."""
    assert bind_race(tmp_path, Transport, threads=True) == 0


def test_a_home_that_cannot_hold_the_broker_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    """A read-only home (or one under a file): `orch submit` printed a traceback from mkdir."""
    import pytest

    from shared.broker_fs import transport_options
    from shared.errors import ConfigError

    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "broker").write_text("a file where the broker's folder goes")
    with pytest.raises(ConfigError, match=r"^--home / ORCH_HOME: cannot create the embedded broker's folder .*"
                                          r"broker/queue \(Not a directory\)$"):
        transport_options(load_settings(tmp_path / "home"))


def test_a_message_put_back_keeps_its_place(tmp_path: Path) -> None:
    """A worker that stops with a message taken and not acked puts it back (kombu restores it): with the
    time of the put back in its name, it went behind every message sent after it, and the next worker
    ran those jobs first."""
    from kombu import Exchange, Queue

    for sub in ("q", "done", "control"):
        (tmp_path / sub).mkdir()
    jobs = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")
    transport = {**options(tmp_path), "control_folder": str(tmp_path / "control")}
    with Connection("filesystem://", transport=Transport, transport_options=transport) as conn:
        producer = conn.Producer()
        for n in range(3):
            producer.publish({"n": n}, exchange=jobs.exchange, routing_key="jobs", declare=[jobs])
        taker = conn.channel()
        first = taker.basic_get("jobs", no_ack=False)  # taken, not acked
        assert first is not None and first.payload == {"n": 0}
        taker.close()  # the stopping worker's channel: its unacked message goes back
        channel = conn.channel()
        assert [channel.basic_get("jobs", no_ack=True).payload["n"] for _ in range(3)] == [0, 1, 2]


def test_a_queue_is_served_in_order_behind_many_messages_of_other_queues(tmp_path: Path) -> None:
    """orch's `_get` picks its queue's names out before sorting (kombu's pops the sorted folder from the
    front: quadratic in the other queues' messages ahead); it takes the same message kombu's would."""
    for sub in ("q", "done"):
        (tmp_path / sub).mkdir()
    with Connection("filesystem://", transport=Transport, transport_options=options(tmp_path)) as conn:
        channel = conn.channel()
        for i in range(30):
            channel._put("other", {"n": -i})
            channel._put("jobs", {"n": i, "properties": {"priority": 9 if i == 3 else 0}})
        taken = [channel._get("jobs")["n"] for _ in range(30)]
        assert taken == [i for i in range(30) if i != 3] + [3]  # priority first (0 before 9), then sent order
        assert len(list((tmp_path / "q").iterdir())) == 30  # the other queue's, untouched
        with pytest.raises(Empty):
            channel._get("jobs")


def test_the_janitor_drops_the_messages_of_finished_jobs_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ORCH_BROKER_URL", raising=False)
    settings = load_settings(tmp_path)
    app = make_celery(settings)
    for job_id, queue in ((1, "nobody"), (2, "nobody"), (3, "orch"), (4, "nobody")):
        send_job(app, job_id, "train", queue)
    folder = broker_folders(settings)["queue"]
    by_job = {int(JOB_IN_NAME.match(p.name).group(1)): p for p in folder.iterdir()}
    assert sorted(by_job) == [1, 2, 3, 4]  # each message's name carries its job's id
    old = time.time() - 120
    for job_id in (1, 2, 3):  # job 4's message was sent a moment ago: left however its job stands
        os.utime(by_job[job_id], (old, old))
    legacy = write_message(folder, "nobody", age_s=3600)  # sent before names carried a job's id
    asked: list[set[int]] = []

    def finished_among(ids):
        asked.append(set(ids))
        return {1, 3, 4} & set(ids)  # 2 is still queued

    assert drop_finished_messages(settings, finished_among) == 2
    assert asked == [{1, 2, 3}]
    assert not by_job[1].exists() and not by_job[3].exists()
    assert by_job[2].exists() and by_job[4].exists() and legacy.exists()


def idle_channel(tmp_path: Path, conn: Connection):
    """A channel whose queue folder last changed 10 s ago, with one message of another queue in it."""
    channel = conn.channel()
    channel._put("other", {"n": 0})
    old = time.time_ns() - 10 * 10**9
    os.utime(tmp_path / "q", ns=(old, old))
    return channel, old


def test_an_idle_poll_lists_the_folder_only_when_it_changed(tmp_path: Path, monkeypatch) -> None:
    """An idle worker polls 20 times a second; a stat tells it whether there is anything new to list."""
    for sub in ("q", "done"):
        (tmp_path / sub).mkdir()
    listings = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listings.append(path) or real_listdir(path))
    with Connection("filesystem://", transport=Transport, transport_options=options(tmp_path)) as conn:
        channel, _ = idle_channel(tmp_path, conn)
        for _ in range(20):
            with pytest.raises(Empty):
                channel._get("jobs")
        assert len(listings) == 1
        channel._put("jobs", {"n": 1})  # a new name changes the folder's mtime: seen at the next poll
        assert channel._get("jobs")["n"] == 1 and len(listings) == 2


def test_a_change_the_folders_mtime_missed_is_seen_within_a_second(tmp_path: Path) -> None:
    """A message whose arrival left the folder's mtime as it was (a change in the listing's own clock
    tick) is not left behind: the folder is listed at least once a second."""
    for sub in ("q", "done"):
        (tmp_path / sub).mkdir()
    with Connection("filesystem://", transport=Transport, transport_options=options(tmp_path)) as conn:
        channel, old = idle_channel(tmp_path, conn)
        with pytest.raises(Empty):
            channel._get("jobs")  # listed, and the listing kept
        channel._put("jobs", {"n": 1})
        os.utime(tmp_path / "q", ns=(old, old))  # as if the change had not moved the mtime
        with pytest.raises(Empty):
            channel._get("jobs")  # the kept listing: the case this test is about is real
        started = time.monotonic()
        while True:
            try:
                assert channel._get("jobs")["n"] == 1
                break
            except Empty:
                assert time.monotonic() - started < 1.5
                time.sleep(0.05)
