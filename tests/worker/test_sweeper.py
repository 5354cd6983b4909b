"""The embedded broker's janitor: queues of monitors that went away are unbound and emptied."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from shared.config import load_settings
from shared.celery_app import broker_folders, make_celery
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


def test_a_queued_job_whose_message_is_gone_is_resent_and_one_still_queued_is_not(
        tmp_path: Path, monkeypatch) -> None:
    """A worker killed between taking a message and leasing its job: another worker's sweep re-sends it."""
    import worker.sweeper as sweeper
    from shared.celery_app import send_job
    from shared.spec import ModelSpec, TrainSpec
    from shared.store import JobKind, Lease, open_store
    from shared.store import jobs as store_jobs

    monkeypatch.delenv("ORCH_BROKER_URL", raising=False)
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    settings = load_settings(tmp_path)
    store, app = open_store(settings), make_celery(settings)
    with store.session() as s:
        ids = [store_jobs.add_job(s, JobKind.train, TrainSpec(model=ModelSpec(arch="resnet18"), data="/d", seed=i)).id
               for i in range(3)]
    for job_id in ids:
        send_job(app, job_id, "train", "orch")
    assert sweeper.job_ids_in_broker(settings) == set(ids)
    taken = next(p for p in broker_folders(settings)["queue"].glob("*.msg") if f'"[{ids[1]}]"' in p.read_text())
    taken.rename(broker_folders(settings)["processed"] / taken.name)  # a worker took it, then died
    resent: list[int] = []
    sweep = sweeper.Sweeper(settings, store, lambda job_id, kind, queue: resent.append(job_id))

    sweep.resend_lost_messages()
    assert resent == [] and set(sweep.missing_since) == {ids[1]}  # not yet: it may be on its way to a lease
    monkeypatch.setattr(sweeper, "LOST_MESSAGE_S", 0.0)
    sweep.resend_lost_messages()
    assert resent == [ids[1]]
    Lease.acquire(store, ids[2], "w:1", 30)  # running jobs have no message and need none
    assert sweeper.job_ids_in_broker(settings) == {ids[0], ids[2]}
    for path in broker_folders(settings)["queue"].glob("*.msg"):
        path.unlink()
    sweep.resend_lost_messages()
    assert sorted(resent) == sorted([ids[1], ids[0], ids[1]])
