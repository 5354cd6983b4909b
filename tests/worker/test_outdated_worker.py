"""A worker whose orch cannot use the store's schema any more: from a lab's upgrade walk, an older
worker left running after the upgrade took the next jobs and failed each one on its first attempt. It
now gives the job back uncounted and stops, and a worker of the upgraded orch runs the job."""
from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select, text

from tests.conftest import Orch

NEWER = "9999_from_a_newer_orch"


def test_a_worker_meeting_a_newer_schema_gives_its_job_back_and_stops(orch: Orch, synth_data: Path) -> None:
    from shared.celery_app import make_celery, send_job
    from shared.config import load_settings
    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Event, Job, Store
    from shared.store import jobs as store_jobs
    from shared.store.db import head_revision, make_engine

    worker = orch.start_worker("--name", "old@lab", "--threads", "1")
    deadline = time.monotonic() + 120
    while "old@lab ready." not in worker.output():
        assert time.monotonic() < deadline and worker.proc.poll() is None, worker.output()[-2000:]
        time.sleep(0.5)
    settings = load_settings(orch.home)
    store = Store(make_engine(settings.database_url))  # no open_store: it refuses the newer schema too
    try:
        spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=32), data=str(synth_data / "train"), epochs=1)
        with store.session() as s:
            job_id = store_jobs.add_job(s, "train", spec).id
            s.execute(text(f"UPDATE alembic_version SET version_num = '{NEWER}'"))  # a newer orch's upgrade
        send_job(make_celery(settings), job_id, "train", "orch")
        code = worker.proc.wait(timeout=120)
        said = f"newer than this orch knows (its newest is {head_revision()}): a newer orch upgraded it"
        assert code == 2 and f"old@lab stops: database schema is at revision {NEWER}, {said}" in worker.output()
        with store.session() as s:
            job = s.scalars(select(Job).where(Job.id == job_id)).one()
            assert (job.status, job.attempts - job.retried_at_attempt) == ("queued", 0)  # given back, uncounted
            history = " | ".join(s.scalars(select(Event.message).where(Event.job_id == job_id)))
        assert "old@lab cannot use this store" in history and "failed" not in history, history
        with store.session() as s:  # this machine's orch upgraded too: the job runs where nothing was lost
            s.execute(text(f"UPDATE alembic_version SET version_num = '{head_revision()}'"))
        upgraded = orch.start_worker("--threads", "1")
        try:
            assert orch.wait_status(job_id, {"succeeded", "failed"})["status"] == "succeeded"
        finally:
            upgraded.stop()
    finally:
        worker.stop()
        store.engine.dispose()
