"""Every job ends and none runs twice, with real workers: a worker that loses the store stops its
job's process before anyone may take the job over, and a cancel that meets a worker's stop ends the
job cancelled instead of leaving it queued forever."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import Orch, running
from tests.integration.test_faults import submit_train, wait_epochs, wait_until

pytestmark = pytest.mark.slow
TTL = 20.0  # a loaded test machine can starve a worker for seconds: that too would fence it


def test_a_worker_that_loses_the_store_stops_its_job_before_the_lease_expires(orch: Orch, synth_data: Path) -> None:
    """Before: the heartbeat swallowed the store's errors and the job went on training after the
    TTL, while another worker's sweeper could hand the job to someone else."""
    job_id = submit_train(orch, synth_data, epochs=4)
    orch.env = {**orch.env, "ORCH_LEASE_TTL": str(TTL)}
    worker = orch.start_worker()
    wait_epochs(orch, job_id, 1)
    child = worker.job_processes(oldest=True)[0]
    db = sqlite3.connect(orch.home / "orch.db", timeout=60, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")  # the store stops taking writes: every heartbeat now blocks
    lost_at = time.monotonic()
    try:
        stopped = wait_until(lambda: not running(child), timeout=TTL + 5)
        stopped_after = time.monotonic() - lost_at
    finally:
        # past the TTL and a sweep (every TTL/3): this worker's sweeper has found the expired lease
        time.sleep(max(0.0, lost_at + TTL * 4 / 3 + 1 - time.monotonic()))
        db.execute("ROLLBACK")
        db.close()
    assert stopped and stopped_after < TTL, f"the job's process ran {stopped_after:.1f} s without a lease"
    detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=300)
    assert detail["status"] == "succeeded", detail["error"] + worker.output()[-3000:]
    assert [e["epoch"] for e in detail["epochs"]] == [1, 2, 3, 4]  # each once: nothing ran twice
    assert detail["attempts"] >= 2 and "stopping the job's process" in worker.output()
    # the history says why the attempt ended: the fenced worker's own event. Before, when the store came
    # back after the TTL, the worker's own sweeper could take the expired lease first ("lease of ...
    # expired (no heartbeat ...)") and count the attempt, as if the job had killed its worker.
    messages = [e["message"] for e in detail["events"]]
    assert any("could not renew its lease" in m for m in messages), messages
    assert not any("expired (no heartbeat" in m for m in messages), messages
    assert detail["attempts_counted"] == 1, detail  # only the attempt that finished the job
    shown = orch.run("status", str(job_id), check=True).stdout
    assert "could not renew its lease" in shown, shown


def test_a_cancel_that_meets_a_worker_stop_ends_the_job_cancelled(orch: Orch, synth_data: Path) -> None:
    """Before: the stopping worker released the job to `queued` with cancel_requested set; no worker
    would take it, it was re-sent every 30 s forever and `orch retry` said there was nothing to retry."""
    job_id = submit_train(orch, synth_data, epochs=6)
    orch.env = {**orch.env, "ORCH_HEARTBEAT": "3"}  # the stop, not a heartbeat, sees the job first
    worker = orch.start_worker()
    wait_epochs(orch, job_id, 1)
    assert orch.json("cancel", str(job_id))["stopping"] == [job_id]
    worker.stop()  # Ctrl-C right after: the worker stops and gives its job back
    detail = orch.wait_status(job_id, {"cancelled", "queued", "failed", "succeeded"}, timeout=60)
    assert detail["status"] == "cancelled", (detail["status"], detail["error"], worker.output()[-2000:])
    assert orch.json("retry", str(job_id)) == {"job_ids": [job_id]}  # and it can be retried
