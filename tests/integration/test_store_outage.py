"""A database that goes away while a job trains, with real workers on a real PostgreSQL reached
through a relay the test cuts: the job waits for the store and goes on, or, past the lease's fence,
is given back uncounted; it never fails for the store's outage."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN, Orch, base_env, need_service
from tests.integration.test_faults import submit_train, wait_epochs
from tests.tcp_cut import CuttableRelay

pytestmark = pytest.mark.slow


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[tuple[Orch, CuttableRelay]]:
    """Orch on the embedded broker and a fresh PostgreSQL database reached through a relay."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"orch_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    relay = CuttableRelay(("127.0.0.1", 5432))
    home = tmp_path / "home"
    home.mkdir()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{relay.port}/{name}"
    orch = Orch(base_env(home, ORCH_DATABASE_URL=url), home)
    workers = []
    original = orch.start_worker
    orch.start_worker = lambda *a, **k: workers.append(original(*a, **k)) or workers[-1]  # type: ignore[method-assign]
    try:
        yield orch, relay
    finally:
        for worker in workers:
            worker.kill()
        relay.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def outage(orch: Orch, relay: CuttableRelay, job_id: int, seconds: float) -> None:
    wait_epochs(orch, job_id, 1)
    relay.cut()
    time.sleep(seconds)
    relay.restore()


def test_a_database_restart_shorter_than_the_fence_costs_the_job_nothing(
        relayed: tuple[Orch, CuttableRelay], synth_data: Path) -> None:
    """Before: the job's process ended its run at its first write into the outage, was run again
    twice 2 and 4 s later, and the job failed ("database unreachable ... (gave up after 3 tries)")."""
    orch, relay = relayed
    orch.env = {**orch.env, "ORCH_LEASE_TTL": "30", "ORCH_HEARTBEAT": "2"}  # the fence: 24 s
    job_id = submit_train(orch, synth_data, epochs=5)
    worker = orch.start_worker()
    outage(orch, relay, job_id, 14)  # several epochs' writes fall into it
    detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=300)
    assert detail["status"] == "succeeded", (detail["error"], worker.output()[-3000:])
    assert [e["epoch"] for e in detail["epochs"]] == [1, 2, 3, 4, 5]
    assert detail["attempts"] == 1, detail["events"]  # it waited for the store and went on
    assert "retrying" in worker.output()


def test_a_database_outage_past_the_fence_gives_the_job_back_uncounted(
        relayed: tuple[Orch, CuttableRelay], synth_data: Path) -> None:
    orch, relay = relayed  # the suite's TTL of 10 s: the fence stops the job's process after 8 s
    job_id = submit_train(orch, synth_data, epochs=4)
    worker = orch.start_worker()
    outage(orch, relay, job_id, 16)
    detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=300)
    assert detail["status"] == "succeeded", (detail["error"], worker.output()[-3000:])
    assert [e["epoch"] for e in detail["epochs"]] == [1, 2, 3, 4]
    assert detail["attempts"] == 2 and detail["attempts_counted"] == 1, detail["events"]
    messages = [e["message"] for e in detail["events"]]
    assert any("could not renew its lease" in m or "could not reach the store" in m for m in messages), messages
    assert "Traceback" not in worker.output(), worker.output()[-3000:]
