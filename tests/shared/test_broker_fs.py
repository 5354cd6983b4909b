"""The embedded broker never hands a consumer a half-written message.

kombu's stock filesystem transport creates the message file before writing it; a consumer that
polls in between takes an empty file and the message is lost (35 of 3000 in a tight loop here).
"""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from kombu import Connection
from kombu.transport.filesystem import Transport as StockTransport

from shared.broker_fs import Transport

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
        import pytest
        pytest.skip("kombu's stock transport did not lose a message this time")
    assert got < SENDS
