"""A job sent to a queue no running worker reads is said so: at submit, under `orch status`'s list, and
in `--wait`'s line on why nothing started (it said "the workers are busy; it starts when one is free"
of workers that never take it). From a lab walk: the only worker of `big` stopped, and `--queue typo`."""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import Orch


@pytest.fixture(params=["embedded", "redis-postgres"])
def any_orch(request: pytest.FixtureRequest) -> Orch:
    return request.getfixturevalue("orch" if request.param == "embedded" else "cluster_orch")


def test_a_queue_no_running_worker_reads_is_said_at_submit_and_in_status(any_orch: Orch, synth_data: Path) -> None:
    orch = any_orch
    worker = orch.start_worker("--name", "w1@lab", "--queues", "orch", "--threads", "1")
    deadline = time.monotonic() + 120
    while "w1@lab ready." not in worker.output():
        assert time.monotonic() < deadline and worker.proc.poll() is None, worker.output()[-2000:]
        time.sleep(0.5)
    submit = orch.run("submit", "train", "--data", str(synth_data / "train"), "--image-size", "32", "--epochs", "1",
                      "--queue", "typo", check=True)
    said = ("no running worker reads queue typo (w1@lab reads orch): its jobs wait until a worker started "
            "with `orch worker --queues typo` takes them")
    assert f"orch: note: {said}" in submit.stderr, submit.stderr
    assert orch.run("status", check=True).stdout.rstrip().endswith(f"queued: job 1: {said}")
    assert "no running worker" not in orch.run("status", "--json", check=True).stdout  # scripts pay no second
    # a queue a worker reads is not said: the question is not asked of the default queue at submit
    other = orch.run("submit", "train", "--data", str(synth_data / "train"), "--image-size", "32", "--epochs", "1",
                     "--queue", "orch", check=True)
    assert "no running worker" not in other.stderr, other.stderr


def test_wait_says_the_busy_workers_do_not_read_its_queue(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker busy on `orch`, a job waiting on `gpu`: --wait said it starts when that worker is free."""
    from orchestrator import workers
    from orchestrator.progress import not_taken_hint
    from shared.config import load_settings
    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Lease, open_store
    from shared.store import jobs as store_jobs

    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    store = open_store(load_settings(orch.home))
    try:
        obj = SimpleNamespace(store=store, settings=SimpleNamespace(lease_ttl=30.0))
        with store.session() as s:
            busy = store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d")).id
            store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d"), queue="gpu")
        assert Lease.acquire(store, busy, "orch-7@lab", ttl=30) is not None
        monkeypatch.setattr(workers, "queues_read", lambda obj: {"orch-7@lab": ["orch"]})
        assert not_taken_hint(obj, ["gpu"]) == (
            "still queued: no running worker reads queue gpu (orch-7@lab reads orch): its jobs wait until a worker "
            "started with `orch worker --queues gpu` takes them (Ctrl-C here stops waiting, not the jobs)")
        monkeypatch.setattr(workers, "queues_read", lambda obj: {})  # no worker answered: `orch worker` serves orch
        assert not_taken_hint(obj, ["orch"]).endswith("(no worker answered): its jobs wait until a worker started "
                                                      "with `orch worker` takes them (Ctrl-C here stops waiting, not the jobs)")
        monkeypatch.setattr(workers, "queues_read", lambda obj: {"orch-7@lab": ["gpu", "orch"]})
        assert not_taken_hint(obj, ["gpu"]).startswith("still queued: the workers are busy (job 1 on orch-7@lab)")
    finally:
        store.dispose()
