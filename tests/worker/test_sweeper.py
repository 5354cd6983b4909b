"""The embedded broker's janitor: queues of monitors that went away are unbound and emptied."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from shared.config import load_settings
from shared.queue import broker_folders, make_celery
from worker.sweeper import prune_broker


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
