"""The store's job lifecycle: leases, fencing, idempotent epochs, sweep, cancel and retry.

Runs on the embedded SQLite store and on the local PostgreSQL.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.config import load_settings
from shared.errors import StaleLease
from shared.spec import ModelSpec, TrainSpec
from shared.store import Epoch, Event, Job, JobStatus, Lease, Score, Store, open_store
from shared.store import jobs as store_jobs
from shared.store.takeover import take_expired


def new_job(store: Store, seed: int = 0) -> int:
    spec = TrainSpec(model=ModelSpec(arch="resnet18"), data="/data/train", seed=seed)
    with store.session() as s:
        return store_jobs.add_job(s, "train", spec).id


def status(store: Store, job_id: int) -> Job:
    with store.session() as s:
        return s.get(Job, job_id)


def test_one_lease_per_job_and_stale_tokens_are_refused(store: Store) -> None:
    job_id = new_job(store)
    token = Lease.acquire(store, job_id, "a:1", ttl=30)
    assert token is not None and token.token == 1
    assert Lease.acquire(store, job_id, "b:2", ttl=30) is None  # live lease: second delivery skips
    assert token.heartbeat() is False
    with pytest.raises(StaleLease):
        Lease(store, job_id, token.token + 1).heartbeat()
    job = status(store, job_id)
    assert (job.status, job.attempts, job.worker_host) == ("running", 1, "a:1")


def test_expired_lease_is_requeued_and_the_zombie_cannot_write(store: Store) -> None:
    job_id = new_job(store)
    old = Lease.acquire(store, job_id, "a:1", ttl=0.1)
    time.sleep(0.3)
    requeued = take_expired(store, ttl=0.1, owner="sweeper", max_attempts=3)
    assert [(j.job_id, j.outcome) for j in requeued] == [(job_id, "queued")]
    assert status(store, job_id).status == "queued"
    new = Lease.acquire(store, job_id, "b:2", ttl=30)
    assert new is not None and old is not None and new.token == old.token + 2 and status(store, job_id).attempts == 2
    with pytest.raises(StaleLease):
        old.record_epoch({"epoch": 1, "train_loss": 1, "val_loss": 1, "val_acc": 0.5,
                                                      "images_per_s": 1, "seconds": 1})
    assert old.finish(JobStatus.succeeded) is False
    assert new.finish(JobStatus.succeeded) is True
    assert status(store, job_id).status == "succeeded"


def test_expired_running_lease_can_be_taken_directly(store: Store) -> None:
    job_id = new_job(store)
    Lease.acquire(store, job_id, "a:1", ttl=0.1)
    time.sleep(0.3)
    assert Lease.acquire(store, job_id, "b:2", ttl=30) == Lease(store, job_id, 2)  # by a:1's TTL, not its own


def test_each_epoch_is_recorded_once(store: Store) -> None:
    job_id = new_job(store)
    token = Lease.acquire(store, job_id, "a:1", ttl=30)
    metrics = {"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_acc": 0.6, "images_per_s": 100.0, "seconds": 2.0}
    assert token.record_epoch(metrics) is True
    assert token.record_epoch({**metrics, "val_acc": 0.1}) is False
    with store.session() as s:
        rows = s.query(Epoch).filter_by(job_id=job_id).all()
    assert [(r.epoch, r.val_acc) for r in rows] == [(1, 0.6)]


def test_cancel_and_retry_transitions(store: Store) -> None:
    queued, running = new_job(store, seed=1), new_job(store, seed=2)
    token = Lease.acquire(store, running, "a:1", ttl=30)
    with store.session() as s:
        outcome = store_jobs.request_cancel(s, [s.get(Job, queued), s.get(Job, running)])
    assert outcome == {"cancelled": [queued], "stopping": [running], "unchanged": []}
    assert Lease.acquire(store, queued, "b:2", ttl=30) is None  # a cancelled job never starts
    assert token.heartbeat() is True  # the worker sees the cancel
    token.finish(JobStatus.cancelled, error="cancelled")
    with store.session() as s:
        again = store_jobs.reset_for_retry(s, [s.get(Job, queued), s.get(Job, running)])
        assert sorted(j.id for j in again) == sorted([queued, running])
    assert status(store, running).status == "queued" and status(store, running).cancel_requested is False


def test_cancelling_a_study_does_not_compare_each_update_with_every_loaded_job(store: Store) -> None:
    # each UPDATE synchronized with the session walked every job of the study loaded there: quadratic,
    # 9 s of CPU to cancel a 1000-job study; request_cancel expires the session once at the end instead
    from sqlalchemy import event

    ids = [new_job(store, seed=i) for i in range(5)]
    synced: list[object] = []
    with store.session() as s:
        jobs = [s.get(Job, job_id) for job_id in ids]
        event.listen(s, "do_orm_execute", lambda state: state.is_update and synced.append(
            state.execution_options.get("synchronize_session", "auto")))
        assert store_jobs.request_cancel(s, jobs)["cancelled"] == ids
        assert [job.status for job in jobs] == ["cancelled"] * 5  # expired, so read again: the new status
    assert synced and set(synced) == {False}


def test_score_parents_whose_shards_ended_are_settled_once(store: Store) -> None:
    from shared.scoring.protocol import settle_parents
    from shared.spec import ScoreSpec
    from shared.store import Assembly
    from shared.store.scoring_runs import add_score_run

    spec = ScoreSpec(checkpoint="/c.pt", data="/d", out="/o.csv", shards=2)
    with store.session() as s:
        ok, ok_shards = add_score_run(s, spec, queue="orch", source_job_id=None)
        bad, bad_shards = add_score_run(s, spec.model_copy(update={"out": "/p.csv"}), queue="orch", source_job_id=None)
        ok_parent, bad_parent = ok.id, bad.id
        shards = {ok_parent: [j.id for j in ok_shards], bad_parent: [j.id for j in bad_shards]}
    for parent, ids in shards.items():
        for i, shard in enumerate(ids):
            token = Lease.acquire(store, shard, "a:1", ttl=30)
            failed = parent == bad_parent and i == 1
            if not failed:
                token.update(result={"part": f"/parts/{i}.csv"})
            token.finish(JobStatus.failed if failed else JobStatus.succeeded,
                              error="corrupt image" if failed else None)
    sent = settle_parents(store)
    assert [parent.job_id for parent in sent] == [ok_parent]
    assert settle_parents(store) == []  # sent once, not on every sweep
    assert status(store, bad_parent).status == "failed" and "corrupt image" in status(store, bad_parent).error
    assert status(store, bad_parent).assembly == Assembly.failed
    assert status(store, ok_parent).status == "queued" and status(store, ok_parent).assembly == Assembly.sent


def _open_and_add(home: str, start_at: float, results) -> None:  # a spawned process: module level
    import os

    os.environ.pop("ORCH_DATABASE_URL", None)
    while time.time() < start_at:  # every process reaches open_store at the same moment
        pass
    try:
        store = open_store(load_settings(Path(home)))
        with store.session() as s:
            store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d"))
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def test_processes_opening_a_fresh_embedded_store_together_all_succeed(tmp_path: Path) -> None:
    """A worker and a CLI started together on a new home: one migrates, the others wait for it."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    for trial in range(3):
        home, results = tmp_path / f"home{trial}", ctx.Queue()
        start_at = time.time() + 4  # after the spawned interpreters have imported everything
        procs = [ctx.Process(target=_open_and_add, args=(str(home), start_at, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
        assert outcomes == ["ok"] * 4
        with open_store(load_settings(home)).session() as s:
            assert len(s.query(Job).all()) == 4


def test_a_current_store_opens_without_its_setup_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every open wrote `orch.db.setup.lock` beside the database: a home gone read-only for 20 s failed
    a job ("ORCH_DATABASE_URL: cannot use ... Read-only file system beside it") and `orch status` too.
    Only a store that needs its schema (new, or older than orch) takes the lock now."""
    import shared.store.db as db

    open_store(load_settings(tmp_path)).dispose()  # created and migrated: under the lock

    def no_lock(engine: object) -> None:
        raise AssertionError("took the setup lock to read a current store")
    monkeypatch.setattr(db, "_setup_lock", no_lock)
    opened = open_store(load_settings(tmp_path))
    with opened.session() as s:
        assert s.query(Job).count() == 0
    opened.dispose()


def test_a_home_gone_read_only_under_a_running_worker_can_be_read(tmp_path: Path) -> None:
    """The same, for real: the home bind-mounted read-only while a worker's connection is open, as in
    the walk's incident (root only; skipped elsewhere). With no process holding it open, SQLite's WAL
    needs to create its -shm file to read at all, which a read-only folder refuses."""
    import subprocess

    home = tmp_path / "home"
    store = open_store(load_settings(home))  # the worker's: open throughout
    with store.session() as s:
        store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d"))
    bound = subprocess.run(["mount", "--bind", str(home), str(home)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(home)], check=True, capture_output=True)
        with pytest.raises(OSError):
            (home / "probe").write_text("")  # it is read-only
        reader = open_store(load_settings(home))
        with reader.session() as s:
            assert s.query(Job).count() == 1
        reader.dispose()
    finally:
        subprocess.run(["umount", "--lazy", str(home)], check=True)  # SQLite may still map its -shm file
        store.dispose()


def test_a_read_only_copy_that_no_process_holds_open_is_read_as_it_is(tmp_path: Path) -> None:
    """A backup or a read-only share of a home: with no process holding the database open, SQLite's
    WAL reader must create the -shm file beside it, and `orch status` failed ("cannot use ... Read-only
    file system beside it"). It is read as it is on disk now; a write says the store is read-only."""
    import subprocess

    from shared.errors import StoreUnavailable

    home = tmp_path / "home"
    store = open_store(load_settings(home))
    with store.session() as s:
        store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d"))
    store.dispose()  # the last connection: SQLite removes -wal and -shm
    bound = subprocess.run(["mount", "--bind", str(home), str(home)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(home)], check=True, capture_output=True)
        assert not list(home.glob("*-shm"))
        reader = open_store(load_settings(home))
        with reader.session() as s:
            assert s.query(Job).count() == 1
        with pytest.raises(StoreUnavailable, match="the store is read-only here"), reader.session() as s:
            store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d"))
        reader.dispose()
    finally:
        subprocess.run(["umount", "--lazy", str(home)], check=True)


def test_revisions_read_without_alembic_agree_with_alembic(store: Store, tmp_path: Path) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from shared.store.db import MIGRATIONS, current_revision, head_revision, make_engine

    assert head_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    with store.engine.connect() as conn:
        assert current_revision(store.engine) == MigrationContext.configure(conn).get_current_revision()
    assert current_revision(make_engine(f"sqlite:///{tmp_path / 'empty.db'}")) is None


def test_a_schema_written_by_a_newer_orch_is_refused_in_one_line(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab upgrades one machine at a time: the older orch on the next machine met the newer schema
    with alembic's traceback ("Can't locate revision"), or, on PostgreSQL, was told to run `orch db
    upgrade`, which cannot downgrade. Opening the store and `orch db upgrade` both say to upgrade orch."""
    from sqlalchemy import text

    from shared.errors import ConfigError
    from shared.store.db import upgrade

    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_a_newer_orch'"))
    monkeypatch.setenv("ORCH_DATABASE_URL", store.engine.url.render_as_string(hide_password=False))
    newer = "schema is at revision 9999_from_a_newer_orch, newer than this orch knows.*upgrade orch on this"
    with pytest.raises(ConfigError, match=newer):
        open_store(load_settings(tmp_path))
    with pytest.raises(ConfigError, match=newer):
        upgrade(store.engine)


def test_the_assembly_state_moves_only_as_the_protocol_table_allows(store: Store) -> None:
    from shared.spec import ScoreSpec
    from shared.store import Assembly
    from shared.store.scoring_runs import add_score_run, move_assembly

    with pytest.raises(ValueError, match="done -> waiting is not a move"):
        move_assembly(1, Assembly.waiting, [Assembly.done])
    spec = ScoreSpec(checkpoint="/c.pt", data="/d", out="/o.csv")
    with store.session() as s:
        parent_id = add_score_run(s, spec, queue="orch", source_job_id=None)[0].id
    with store.session() as s:  # cancel a waiting run: its CSV will not be written
        store_jobs.request_cancel(s, [s.get(Job, parent_id)])
    assert (status(store, parent_id).status, status(store, parent_id).assembly) == ("cancelled", "failed")
    # queued while its shards run: it read "cancelled before it started" and "it never starts"
    assert status(store, parent_id).error.startswith("its CSV is not written (shards that finish anyway keep")
    with store.session() as s:
        assert [e.message for e in s.scalars(select(Event).where(Event.job_id == parent_id))] == [
            f"cancelled by orch cancel: {store_jobs.RUN_CANCELLED}"]
    with store.session() as s:
        store_jobs.reset_for_retry(s, [s.get(Job, parent_id)])
    assert (status(store, parent_id).status, status(store, parent_id).assembly) == ("queued", "waiting")
    lease = Lease.acquire(store, parent_id, "a:1", ttl=30)
    assert lease is not None
    with pytest.raises(StaleLease):  # waiting, not assembling: nothing recorded
        lease.complete_score({"n": 0}, {"out": "/o.csv", "n_images": 0})
    lease.begin_assembly()
    lease.complete_score({"n": 0}, {"out": "/o.csv", "n_images": 0})
    assert (status(store, parent_id).status, status(store, parent_id).assembly) == ("succeeded", "done")
    with store.session() as s:
        assert s.query(Score).filter_by(job_id=parent_id).count() == 1


def test_a_write_lock_held_by_another_process_is_named_with_what_to_do(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that holds SQLite's write lock (stopped with Ctrl-Z mid-write, or a database browser with
    a change not yet written) made every write wait 30 s, then fail with "database unreachable: database is
    locked", which read as if the file were gone. It now says what holds it and how to find it; once the
    lock goes, writes go through and nothing recorded before is lost."""
    import subprocess
    import sys

    from shared.errors import StoreUnavailable
    from shared.store import db

    home = tmp_path / "home"
    store = open_store(load_settings(home))
    first = new_job(store)
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys\n"
                               f"c = sqlite3.connect({str(home / 'orch.db')!r}, isolation_level=None)\n"
                               "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); sys.stdin.readline()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(db, "SQLITE_BUSY_S", 0.3)  # the real wait is 30 s
        locked = open_store(load_settings(home))
        with pytest.raises(StoreUnavailable, match=r"the store is locked: another process has held its write "
                                                   r"lock for 0\.3 s or more .* `fuser -v` on the store's file"):
            new_job(locked)
        with locked.session() as s:  # reads go on (WAL)
            assert [job.id for job in s.query(Job)] == [first]
    finally:
        holder.communicate("\n", timeout=10)
    assert new_job(locked) == first + 1
    locked.dispose()
    store.dispose()
