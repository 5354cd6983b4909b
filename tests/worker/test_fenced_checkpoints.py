"""Checkpoint files are fenced: a stale attempt's files never become current, resume loads the file
the store names (falling back past a corrupt newest one), and only the newest two and the best stay.

The training job's own code (worker.jobs.train.run) runs in this process under real leases.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.config import Settings
from shared.errors import JobCancelled, StaleLease
from shared.store import Epoch, Job, Lease, Store, reads
from shared.store import jobs as store_jobs
from shared.store.takeover import take_expired
from tests.shared.data_helpers import tiny_spec
from worker import checkpoints
from worker.context import JobContext
from worker.jobs import train as train_job


def submit(store: Store, data: Path, epochs: int) -> int:
    spec = tiny_spec(data / "train", data / "val", epochs=epochs, batch_size=32)
    with store.session() as s:
        return store_jobs.add_job(s, "train", spec).id


def run_attempt(settings: Settings, store: Store, lease: Lease, should_stop: Callable[[], bool] = lambda: False) -> dict:
    with store.session() as s:
        spec_json = s.get(Job, lease.job_id).spec
    ctx = JobContext(settings=settings, store=store, lease=lease, kind="train", spec=spec_json, parent_id=None,
                     source_job_id=None, shard=None, should_stop=should_stop)
    return train_job.run(ctx)


def take_over(store: Store, job_id: int, owner: str) -> Lease:
    """The holder's lease expires; the sweeper takes it and requeues; `owner` leases the job."""
    time.sleep(0.3)
    assert [t.job_id for t in take_expired(store, ttl=0.1, owner="sweeper", max_attempts=5)] == [job_id]
    lease = Lease.acquire(store, job_id, owner, ttl=30)
    assert lease is not None
    return lease


def current_files(store: Store, job_id: int) -> dict[str, tuple[str, str | None]]:
    return {tag: (row.path, row.digest) for tag, row in Lease(store, job_id, 0).checkpoints().items()}


def test_a_stale_attempts_files_never_become_current(job_home: tuple[Settings, Store], synth_data: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the zombie's last.pt/best.pt, written before its refused store write, replaced the
    successor's, so `submit score --job` scored the zombie's weights."""
    settings, store = job_home
    job_id = submit(store, synth_data, epochs=2)
    zombie = Lease.acquire(store, job_id, "zombie:1", ttl=0.1)
    assert zombie is not None
    successor = take_over(store, job_id, "next:2")
    done = run_attempt(settings, store, successor)
    rows = current_files(store, job_id)
    assert done["best_checkpoint"] == rows["best"][0] and f"-t{successor.token}.pt" in rows["last"][0]

    # The zombie started before the takeover (it found no checkpoint then), trains on, writes its
    # epoch's file and is refused at its first store write.
    monkeypatch.setattr(checkpoints, "resume_point", lambda lease: (None, set()))
    monkeypatch.setattr(Lease, "update", lambda self, **columns: None)  # its model_info: written as it started
    with pytest.raises(StaleLease):
        run_attempt(settings, store, zombie)
    assert current_files(store, job_id) == rows
    for path, recorded in rows.values():
        assert checkpoints.digest(Path(path)) == recorded, f"{path} is not the file the store recorded"
    assert (settings.job_dir(job_id) / f"ckpt-e1-t{zombie.token}.pt").exists()  # written, never current


def test_a_corrupt_newest_checkpoint_resumes_from_the_one_before(job_home: tuple[Settings, Store],
                                                                 synth_data: Path) -> None:
    """Before: a corrupt last.pt failed the job for good although an older checkpoint was fine."""
    settings, store = job_home
    job_id = submit(store, synth_data, epochs=4)

    def epochs_recorded() -> int:
        with store.session() as s:
            return s.query(Epoch).filter_by(job_id=job_id).count()

    first = Lease.acquire(store, job_id, "w:1", ttl=0.1)
    with pytest.raises(JobCancelled):  # the worker dies after epoch 3 (its process is stopped)
        run_attempt(settings, store, first, should_stop=lambda: epochs_recorded() >= 3)
    rows = current_files(store, job_id)
    assert "-e3-" in rows["last"][0] and "-e2-" in rows["previous"][0]
    newest = Path(rows["last"][0])
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a torn write, a bad disk
    # and epoch 4's file half written when the process was killed (atomic_path's temp name)
    killed_mid_write = settings.job_dir(job_id) / f".ckpt-e4-t{first.token}.pt.99999.tmp"
    killed_mid_write.write_bytes(b"\0" * 1000)

    second = take_over(store, job_id, "w:2")
    result = run_attempt(settings, store, second)
    assert result["epochs"] == 4
    with store.session() as s:
        epochs = [(e.epoch, e.attempt) for e in s.query(Epoch).filter_by(job_id=job_id).order_by(Epoch.epoch)]
        history = [e.message for e in reads.job_events(s, job_id)]
    # epoch 3 was redone (its file was corrupt): one row, holding the attempt whose model went on
    assert epochs == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert any("checkpoint of epoch 3" in m and "digest" in m for m in history), history
    assert "epoch 3 trained again by attempt 2 (its checkpoint was lost): its row now holds this attempt's numbers" \
        in history
    assert "resumed from the checkpoint of epoch 2" in history  # which epoch the second attempt went on from
    final = current_files(store, job_id)
    assert "-e4-" in final["last"][0] and "previous" not in final  # trained to the end: no fallback kept
    for path, recorded in final.values():
        assert checkpoints.digest(Path(path)) == recorded
    # the last and the best are kept; every older file of this job is gone
    kept = {p.name for p in settings.job_dir(job_id).glob("ckpt-*.pt")}
    assert len(kept) <= 2
    assert kept == {Path(path).name for path, _ in final.values()}
    assert not killed_mid_write.exists()  # 100 MB each, for resnet18, left by every kill mid-write


def test_a_train_jobs_report_unpickles_without_torch(job_home: tuple[Settings, Store], synth_data: Path) -> None:
    """Before: the report held torch.__version__, a TorchVersion: unpickling it imported torch in the
    supervisor, whose heartbeats stalled for seconds (enough for its fence to stop a finished job)."""
    import pickle
    import pickletools

    from worker import child

    settings, store = job_home
    job_id = submit(store, synth_data, epochs=1)
    lease = Lease.acquire(store, job_id, "w:1", ttl=30)
    with store.session() as s:
        spec = s.get(Job, job_id).spec
    job = {"id": job_id, "kind": "train", "spec": spec, "parent_id": None, "source_job_id": None, "shard": None}
    result = child._run(job, lease.token, str(settings.home), lambda: False)
    classes = [op.name for op, _, _ in pickletools.genops(pickle.dumps(result)) if "GLOBAL" in op.name]
    assert classes == [] and result["versions"]["torch"]  # plain JSON: nothing to import
