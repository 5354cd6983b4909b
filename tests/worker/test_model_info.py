"""A training job records what its model is (params, GMACs) once it is built, not when the job ends:
`orch report --limit 0` showed no params or GMACs for a running job, nor ever for a cancelled one.

The training job's own code (worker.jobs.train.run) runs in this process under a real lease.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.errors import JobCancelled
from shared.store import Epoch, Job, Lease, Store
from shared.store import jobs as store_jobs
from tests.shared.data_helpers import tiny_spec
from worker.context import JobContext
from worker.jobs import train as train_job


def run_job(settings: Settings, store: Store, data: Path, stop_at: int | None) -> tuple[int, list[dict[str, Any]]]:
    """A 1-epoch job whose should_stop looks at the job's row (model_info, epochs recorded) each time
    it is asked, and says stop at its `stop_at`-th call."""
    spec = tiny_spec(data / "train", data / "val", epochs=1, batch_size=32)  # num_classes 1000: the data says 2
    with store.session() as s:
        job_id = store_jobs.add_job(s, "train", spec).id
        spec_json = s.get(Job, job_id).spec
    lease = Lease.acquire(store, job_id, "test:1", ttl=30)
    assert lease is not None
    seen: list[dict[str, Any]] = []

    def peek() -> bool:
        with store.session() as s:
            seen.append({"model_info": s.get(Job, job_id).model_info,
                         "epochs": s.query(Epoch).filter_by(job_id=job_id).count()})
        return stop_at is not None and len(seen) >= stop_at

    ctx = JobContext(settings=settings, store=store, lease=lease, kind="train", spec=spec_json, parent_id=None,
                     source_job_id=None, shard=None, should_stop=peek)
    train_job.run(ctx)
    return job_id, seen


def test_a_running_or_cancelled_job_has_its_params_and_gmacs(job_home: tuple[Settings, Store], synth_data: Path) -> None:
    settings, store = job_home
    job_id, seen = run_job(settings, store, synth_data, stop_at=None)
    with store.session() as s:
        final = s.get(Job, job_id).model_info
    assert final["params"] and final["gmacs"]
    running = [peek["model_info"] for peek in seen if peek["epochs"] == 0 and peek["model_info"]]
    assert running and running[0] == final, seen  # before its first epoch: the 2-class model's, not 1000's

    with pytest.raises(JobCancelled):  # cancelled as its model was built: the second question
        run_job(settings, store, synth_data, stop_at=2)
    with store.session() as s:
        cancelled = s.query(Job).order_by(Job.id.desc()).first()
        assert cancelled is not None and cancelled.model_info == final
