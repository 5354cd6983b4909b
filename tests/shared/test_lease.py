"""The lease is the one write path: once its token is stale, every write it offers is refused.

Runs on the embedded SQLite store and on the local PostgreSQL (the `store` fixture of test_store).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.errors import NonFiniteLoss, StaleLease
from shared.spec import ScoreSpec
from shared.store import Assembly, Checkpoint, Epoch, EpochFile, Event, Job, JobStatus, Lease, Score, Store, reads
from shared.store import jobs as store_jobs
from shared.store.takeover import take_expired
from tests.shared.test_store import new_job, status

METRICS = {"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_acc": 0.5, "images_per_s": 1.0, "seconds": 1.0}

# Each write a lease offers, as (name, call); a refused write raises StaleLease, except the endings
# (FLAGGED), which return False or None instead: a worker that lost its lease just stops.
WRITES: list[tuple[str, Callable[[Lease, int], Any]]] = [
    ("heartbeat", lambda lease, _: lease.heartbeat()),
    ("epoch", lambda lease, _: lease.record_epoch(METRICS)),
    ("checkpoint", lambda lease, _: lease.record_checkpoint("best", "/x/ckpt-e1-t1.pt", 1, 0.5, "ab")),
    ("epoch_with_its_file", lambda lease, _: lease.record_epoch(METRICS, EpochFile("/x/ckpt-e1-t1.pt", "ab", True))),
    ("event", lambda lease, _: lease.add_event("warning", "from a zombie")),
    ("update", lambda lease, _: lease.update(result={"part": [1, 2]})),
    ("release", lambda lease, _: lease.release("worker stopped")),
    ("requeue", lambda lease, _: lease.requeue("crashed", max_attempts=3)),
    ("finish", lambda lease, _: lease.finish(JobStatus.succeeded, result={"best_val_acc": 1.0})),
    ("parent_failure", lambda lease, parent: lease.fail_parent(parent, "shard failed")),
    ("assembly", lambda lease, _: (lease.begin_assembly(), lease.complete_score(
        {"accuracy": 1.0}, {"out": "/o.csv", "n_images": 3}))),
]
ASSEMBLING = {"assembly"}  # writes a score job's own lease makes (the others: any job's)

FLAGGED = {"release", "requeue", "finish"}


def footprint(store: Store, job_id: int, parent_id: int) -> tuple[Any, ...]:
    """Everything a write of the job's holder could change."""
    with store.session() as s:
        job, parent = s.get(Job, job_id), s.get(Job, parent_id)
        counts = tuple(s.scalar(select(func.count()).select_from(table).where(table.job_id == job_id))
                       for table in (Epoch, Checkpoint, Event, Score))
        return (job.status, job.result, job.error, job.lease_token, job.heartbeat_at, job.cancel_requested,
                parent.status, *counts)


def expire(store: Store, job_id: int) -> Lease:
    """A running job whose holder stopped beating; the sweeper takes its lease. Returns the old lease."""
    old = Lease.acquire(store, job_id, "zombie:1", ttl=0.1)  # its holder's TTL, which the sweeper judges by
    assert old is not None
    time.sleep(0.3)
    taken = take_expired(store, ttl=0.1, owner="sweeper", max_attempts=3)
    assert [(t.job_id, t.outcome) for t in taken] == [(job_id, JobStatus.queued)]
    return old


def job_for(store: Store, name: str, seed: int = 0) -> int:
    if name not in ASSEMBLING:
        return new_job(store, seed=seed)
    with store.session() as s:
        spec = ScoreSpec(checkpoint="/c.pt", data="/d", out=f"/o{seed}.csv")
        return store_jobs.add_job(s, "score", spec, assembly=Assembly.waiting).id


def score_parent(store: Store) -> int:
    with store.session() as s:
        return store_jobs.add_job(s, "score", ScoreSpec(checkpoint="/c.pt", data="/d", out="/o.csv", shards=2)).id


@pytest.mark.parametrize("name,write", WRITES, ids=[name for name, _ in WRITES])
@pytest.mark.parametrize("successor", ["sweeper", "worker"])
def test_each_write_is_refused_once_the_token_is_stale(store: Store, name: str, write: Callable[[Lease, int], Any],
                                                       successor: str) -> None:
    job_id, parent_id = job_for(store, name), score_parent(store)
    old = expire(store, job_id)
    if successor == "worker":  # and another worker leased it again: running, under token + 2
        assert Lease.acquire(store, job_id, "next:2", ttl=30) is not None
    before = footprint(store, job_id, parent_id)
    try:
        result = write(old, parent_id)
        refused = name in FLAGGED and result in (False, None)
    except StaleLease:
        refused = name not in FLAGGED
    assert refused, f"{name} was not refused as it should be under a stale token"
    assert footprint(store, job_id, parent_id) == before


def test_the_same_writes_are_accepted_under_the_current_token(store: Store) -> None:
    """The control for the test above: with a live lease each write goes through."""
    for name, write in WRITES:
        job_id, parent_id = job_for(store, name, seed=len(name)), score_parent(store)
        lease = Lease.acquire(store, job_id, "w:1", ttl=30)
        assert lease is not None
        result = write(lease, parent_id)
        assert name not in FLAGGED or result not in (False, None), name


def test_takeover_leaves_an_event_and_a_crashing_job_fails_after_max_attempts(store: Store) -> None:
    """A job that kills its worker every time is not requeued forever."""
    job_id = new_job(store)
    for attempt in (1, 2):
        assert Lease.acquire(store, job_id, f"w:{attempt}", ttl=0.1) is not None
        time.sleep(0.3)
        (taken,) = take_expired(store, ttl=0.1, owner="sweeper", max_attempts=2)
        assert taken.attempts == attempt
    assert taken.outcome == JobStatus.failed
    job = status(store, job_id)
    assert job.status == "failed" and "lease of w:2 expired" in job.error and "after 2 attempts" in job.error
    with store.session() as s:
        events = [e.message for e in reads.job_events(s, job_id)]
    assert len(events) == 4 and "taken over by sweeper" in events[0]
    assert events[1] == "attempt 2 started on w:2"  # the first attempt's start is the job's started_at
    assert events[3].startswith("attempt 2 ended (lease of w:2 expired") and events[3].endswith("the job failed")


def test_a_takeover_keeps_when_the_job_first_started(store: Store) -> None:
    """`orch status` showed the takeover's time as the job's start (the history has each attempt's)."""
    job_id = new_job(store)
    assert Lease.acquire(store, job_id, "w:1", ttl=0.1) is not None
    first = status(store, job_id).started_at
    time.sleep(0.3)
    (taken,) = take_expired(store, ttl=0.1, owner="sweeper", max_attempts=3)
    assert taken.attempts == 1 and Lease.acquire(store, job_id, "w:2", ttl=30) is not None
    job = status(store, job_id)
    assert job.attempts == 2 and first is not None and job.started_at == first


def test_a_crashed_attempt_counts_too(store: Store) -> None:
    job_id = new_job(store)
    outcomes = []
    for _ in range(3):
        lease = Lease.acquire(store, job_id, "w", ttl=30)
        assert lease is not None
        outcomes.append(lease.requeue("job process died with SIGKILL", max_attempts=3))
        # queued again, no worker holds it: `orch status` showed the dead one beside "queued"
        assert outcomes[-1] != "queued" or status(store, job_id).worker_host is None
    assert outcomes == ["queued", "queued", "failed"]
    assert "SIGKILL" in status(store, job_id).error and Lease.acquire(store, job_id, "w", ttl=30) is None


def test_orch_retry_gives_a_fresh_count_of_attempts(store: Store) -> None:
    """A cancel, a retry, then two crashes failed the job 'after 3 attempts': the cancelled one counted."""
    job_id = new_job(store)
    for _ in range(2):
        lease = Lease.acquire(store, job_id, "w", ttl=30)
        assert lease is not None and lease.requeue("crashed", max_attempts=2) is not None
    assert status(store, job_id).status == "failed"
    with store.session() as s:
        assert [j.id for j in store_jobs.reset_for_retry(s, [s.get(Job, job_id)])] == [job_id]
    outcomes = []
    for _ in range(2):
        lease = Lease.acquire(store, job_id, "w", ttl=30)
        assert lease is not None
        outcomes.append(lease.requeue("crashed again", max_attempts=2))
    assert outcomes == ["queued", "failed"]
    assert status(store, job_id).error == ("crashed again; gave up after 2 attempts that count (4 in all; those "
                                           "before orch retry, or ended by a worker's stop, do not) (ORCH_MAX_ATTEMPTS)")


def test_a_worker_stop_does_not_count_against_max_attempts(store: Store) -> None:
    """A crash, a worker's Ctrl-C (its job handed back), then a crash: the job failed 'after 3
    attempts' where the README says a worker's stop never fails a job."""
    job_id = new_job(store)
    outcomes = []
    for cause, limit in (("crashed", 3), ("worker stopped; requeued", None), ("crashed", 3), ("crashed", 3)):
        lease = Lease.acquire(store, job_id, "w", ttl=30)
        assert lease is not None
        outcomes.append(lease.requeue(cause, max_attempts=limit))
    assert outcomes == ["queued", "queued", "queued", "failed"]  # three crashes, not two
    assert status(store, job_id).error.startswith("crashed; gave up after 3 attempts that count (4 in all;")


@pytest.mark.parametrize("ending", ["release", "sweeper"])
def test_a_cancel_that_meets_a_release_or_requeue_ends_the_job_cancelled(store: Store, ending: str) -> None:
    """Before: the job went back to queued with cancel_requested set, and nobody ever took it."""
    job_id = new_job(store)
    lease = Lease.acquire(store, job_id, "w:1", ttl=0.1)
    with store.session() as s:
        assert store_jobs.request_cancel(s, [s.get(Job, job_id)])["stopping"] == [job_id]
    if ending == "release":
        assert lease.release("worker stopped; requeued")
    else:
        time.sleep(0.3)
        assert [t.outcome for t in take_expired(store, 0.1, "sweeper", 3)] == [JobStatus.cancelled]
    job = status(store, job_id)
    assert (job.status, job.cancel_requested) == ("cancelled", False) and job.finished_at is not None


def test_a_cancel_that_read_a_running_job_which_was_released_meanwhile_cancels_it(store: Store) -> None:
    job_id = new_job(store)
    lease = Lease.acquire(store, job_id, "w:1", ttl=30)
    with store.session() as s:
        seen = s.get(Job, job_id)
        assert seen.status == "running"
        assert lease.release("worker stopped; requeued")  # between the CLI's read and its write
        assert store_jobs.request_cancel(s, [seen])["cancelled"] == [job_id]
    assert status(store, job_id).status == "cancelled"


def test_lease_times_come_from_the_database_clock(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose clock runs an hour ahead neither expires others' leases nor keeps its own forever."""
    from shared.store.clock import read_now

    job_id = new_job(store)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    lease = Lease.acquire(store, job_id, "w:1", ttl=30)
    assert lease is not None
    with store.session() as s:
        beat, now = status(store, job_id).heartbeat_at, read_now(s)
    assert abs(beat - now) < 5 and abs(now - real()) < 5
    assert take_expired(store, ttl=30, owner="sweeper", max_attempts=3) == []


def test_the_sweeper_leaves_a_lease_its_own_live_supervisor_still_holds(store: Store) -> None:
    """Both leases expired (the store took no writes past the TTL); one is held by this worker's own
    supervisor, which gives its job back uncounted: the sweeper takes only the other one."""
    mine, theirs = new_job(store), new_job(store, seed=1)
    for job_id in (mine, theirs):
        assert Lease.acquire(store, job_id, "w:1", ttl=0.1) is not None
    time.sleep(0.3)
    assert [t.job_id for t in take_expired(store, 0.1, "sweeper of w:1", 3, skip={mine})] == [theirs]
    assert status(store, mine).status == JobStatus.running
    assert [t.job_id for t in take_expired(store, 0.1, "sweeper of w:1", 3)] == [mine]  # once it let go


def test_the_sweepers_write_probe_changes_nothing(store: Store) -> None:
    job_id = new_job(store)
    lease = Lease.acquire(store, job_id, "w:1", ttl=30)
    assert lease is not None
    def row() -> tuple[object, ...]:
        job = status(store, job_id)
        return job.status, job.lease_token, job.heartbeat_at, job.attempts
    before = row()
    Lease.await_writes(store)
    assert row() == before


def test_a_non_finite_metric_is_refused_with_one_clear_line(store: Store) -> None:
    lease = Lease.acquire(store, new_job(store), "w:1", ttl=30)
    with pytest.raises(NonFiniteLoss, match="epoch 1: val_loss is nan"):
        lease.record_epoch({**METRICS, "val_loss": float("nan")})


def test_cancel_retry_and_a_worker_stopping_leave_lines_in_the_jobs_history(store: Store) -> None:
    """Only the sweeper's takeover was recorded: a job cancelled, retried and handed back at a
    worker's Ctrl-C had no history at all in `orch status ID`."""
    queued, running = new_job(store), new_job(store)
    lease = Lease.acquire(store, running, "w:1", ttl=30)
    assert lease is not None
    assert lease.requeue("worker stopped; requeued") == JobStatus.queued  # Ctrl-C: handed back
    lease = Lease.acquire(store, running, "w:2", ttl=30)
    assert lease is not None
    with store.session() as s:
        jobs = list(s.scalars(select(Job).where(Job.id.in_([queued, running])).order_by(Job.id)))
        assert store_jobs.request_cancel(s, jobs) == {"cancelled": [queued], "stopping": [running], "unchanged": []}
    assert lease.requeue("cancelled by its worker") == JobStatus.cancelled
    with store.session() as s:
        jobs = list(s.scalars(select(Job).where(Job.id.in_([queued, running])).order_by(Job.id)))
        assert [j.id for j in store_jobs.reset_for_retry(s, jobs)] == [queued, running]
    with store.session() as s:
        first = [e.message for e in reads.job_events(s, queued)]
        second = [e.message for e in reads.job_events(s, running)]
    assert first == ["cancelled by orch cancel while queued: it never starts", "requeued by orch retry (cancelled after 0 attempts)"]
    assert second == ["attempt 1 ended (worker stopped; requeued): the job is queued",
                      "attempt 2 started on w:2",  # stopped before its first checkpoint: nothing else said so
                      "orch cancel asked its worker to stop it",
                      "attempt 2 ended (cancelled by its worker): the job is cancelled",
                      "requeued by orch retry (cancelled after 2 attempts)"]


def test_every_way_a_job_ends_is_a_line_in_its_history(store: Store) -> None:
    """A job its worker finished (succeeded, failed, or stopped for a cancel) had no line for that
    end: `orch status ID` went from "orch cancel asked its worker to stop it" to "requeued"."""
    endings = [(JobStatus.succeeded, None, "attempt 1 ended: the job succeeded"),
               (JobStatus.failed, "NonFiniteLoss: loss is nan", "attempt 1 ended (NonFiniteLoss: loss is nan): the job failed"),
               (JobStatus.cancelled, "cancelled", "attempt 1 ended: the job is cancelled")]
    for status_, error, line in endings:
        job_id = new_job(store)
        lease = Lease.acquire(store, job_id, "w:1", ttl=30)
        assert lease is not None and lease.finish(status_, error=error)
        assert not lease.finish(status_, error=error)  # ended once: a second end writes nothing, no second line
        with store.session() as s:
            assert [e.message for e in reads.job_events(s, job_id)] == [line]


def test_an_epoch_and_its_checkpoint_are_one_write(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill -9 between recording epoch 1 and recording its file left the epoch in the table and no
    checkpoint: the next attempt trained epoch 1 again from scratch, silently. One transaction now: a
    failure while naming the file leaves no epoch either."""
    from shared.store import lease as lease_module

    job_id = new_job(store)
    lease = Lease.acquire(store, job_id, "w:1", ttl=30)
    assert lease is not None

    def killed(*_: Any) -> None:
        raise RuntimeError("killed between the two writes")

    with monkeypatch.context() as patch:
        patch.setattr(lease_module, "_advance_checkpoint", killed)
        with pytest.raises(RuntimeError):
            lease.record_epoch(METRICS, EpochFile("/x/ckpt-e1-t1.pt", "ab", True))
    with store.session() as s:
        assert reads.last_epochs(s, [job_id]) == {} and lease.checkpoints() == {}
    assert lease.record_epoch(METRICS, EpochFile("/x/ckpt-e1-t1.pt", "ab", True)) is True
    rows = lease.checkpoints()
    assert {tag: (row.path, row.epoch) for tag, row in rows.items()} == {
        "last": ("/x/ckpt-e1-t1.pt", 1), "best": ("/x/ckpt-e1-t1.pt", 1)}
    # epoch 2, no better: last moves, best stays, the replaced last is kept as previous
    assert lease.record_epoch({**METRICS, "epoch": 2, "val_acc": 0.4}, EpochFile("/x/ckpt-e2-t1.pt", "cd", False))
    rows = lease.checkpoints()
    assert {tag: row.epoch for tag, row in rows.items()} == {"last": 2, "best": 1, "previous": 1}


def test_an_epoch_trained_again_replaces_its_row_and_a_replay_does_not(store: Store) -> None:
    """A replayed epoch (the resumed file holds it: no file of its own) is recorded once; an epoch
    trained again because its file was lost replaces the row, with a line in the history: the old row
    described a model that no longer exists."""
    job_id = new_job(store)
    lease = Lease.acquire(store, job_id, "w:1", ttl=30)
    assert lease is not None
    assert lease.record_epoch(METRICS, EpochFile("/x/ckpt-e1-t1.pt", "ab", True)) is True
    assert lease.record_epoch({**METRICS, "val_acc": 0.9}) is False  # a replay
    assert lease.record_epoch({**METRICS, "val_acc": 0.7, "seconds": 2.0}, EpochFile("/x/ckpt-e1-t2.pt", "cd", True))
    with store.session() as s:
        rows = s.scalars(select(Epoch).where(Epoch.job_id == job_id)).all()
        assert [(r.epoch, r.val_acc, r.seconds) for r in rows] == [(1, 0.7, 2.0)]
        events = [e.message for e in reads.job_events(s, job_id)]
    assert any(m.startswith("epoch 1 trained again by attempt 1 (its checkpoint was lost)") for m in events)


def flaky_store(store: Store, monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """The store's next `failures` sessions raise StoreUnavailable, as a database being restarted; returns
    the count of sessions opened (the failed ones included)."""
    from shared.errors import StoreUnavailable

    opened, real = [0], store.session

    def session() -> Any:
        opened[0] += 1
        if opened[0] <= failures:
            raise StoreUnavailable("database unreachable: connection refused")
        return real()
    monkeypatch.setattr(store, "session", session)
    return opened


def test_a_job_process_lease_waits_out_a_database_restart(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's writes failed its attempt at the first refused connection; with patience they wait
    (the worker's fence bounds it), and a write whose commit did land is not recorded twice."""
    from shared.errors import StoreUnavailable

    job_id = new_job(store)
    acquired = Lease.acquire(store, job_id, "w:1", ttl=30)
    assert acquired is not None
    patient = Lease(store, job_id, acquired.token, patience_s=10)
    opened = flaky_store(store, monkeypatch, failures=2)
    patient.add_event("info", "written through the outage")
    assert opened[0] == 3
    opened = flaky_store(store, monkeypatch, failures=1)
    with pytest.raises(StoreUnavailable):
        acquired.add_event("info", "no patience: the caller decides")  # the supervisor's own lease
    monkeypatch.undo()
    written = EpochFile("/x/ckpt-e1-t1.pt", "ab", True)
    assert patient.record_epoch(METRICS, written) is True
    assert patient.record_epoch(METRICS, written) is False  # a retry after a commit whose answer was lost
    with store.session() as s:
        events = [e.message for e in reads.job_events(s, job_id)]
        assert s.scalar(select(func.count()).select_from(Epoch).where(Epoch.job_id == job_id)) == 1
    assert events.count("written through the outage") == 1 and not any("trained again" in m for m in events)
    opened = flaky_store(store, monkeypatch, failures=100)
    short = Lease(store, job_id, acquired.token, patience_s=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        short.add_event("info", "the store stays away")
    assert time.monotonic() - started < 3 and opened[0] >= 2  # retried, then gave up at its patience


def test_a_takeover_says_how_long_the_worker_was_silent(store: Store) -> None:
    """The history said "no heartbeat for 30 s" (the TTL) of a worker silent for 53 s: its sweeper was
    down too. It says the silence measured on the database's clock, and the TTL beside it."""
    job_id = new_job(store)
    assert Lease.acquire(store, job_id, "w:1", ttl=0.5) is not None
    time.sleep(2.2)
    take_expired(store, ttl=30, owner="sweeper", max_attempts=3)  # a sweeper of another TTL: the holder's counts
    with store.session() as s:
        first = reads.job_events(s, job_id)[0].message
    assert first.startswith("lease of w:1 expired (no heartbeat for 2 s; the lease is 0.5 s); taken over"), first


def test_a_lease_is_judged_by_its_holders_ttl_not_the_sweepers(store: Store) -> None:
    """Workers of one lab may set ORCH_LEASE_TTL apart (120 s on a box whose store is far away). A 0.1 s
    sweeper took a 120 s holder's job after 0.1 s of silence while the holder, which fences itself at 0.8
    of its own TTL, ran on: two processes on one job. Every judge now reads the holder's TTL."""
    long_job, short_job = new_job(store), new_job(store, seed=1)
    assert Lease.acquire(store, long_job, "w:120", ttl=120) is not None
    assert Lease.acquire(store, short_job, "w:0.1", ttl=0.1) is not None
    time.sleep(0.3)
    assert Lease.acquire(store, long_job, "thief:1", ttl=0.1) is None
    with store.session() as s:
        assert reads.not_answering(s, [long_job, short_job], lease_ttl=30) == {short_job: 0.1}
        assert reads.running_jobs(s, lease_ttl=0.1) == [(long_job, "w:120")]
    taken = take_expired(store, ttl=0.1, owner="sweeper", max_attempts=3)
    assert [t.job_id for t in taken] == [short_job] and "the lease is 0.1 s" in taken[0].cause
    assert status(store, long_job).status == JobStatus.running and status(store, long_job).lease_ttl == 120


def test_a_scoring_run_starts_when_its_first_shard_does(store: Store) -> None:
    """The parent's started_at was its assembly's: a scoring run of a minute showed 0.03 s."""
    from shared.store.scoring_runs import add_score_run

    with store.session() as s:
        parent, shards = add_score_run(s, ScoreSpec(checkpoint="/c.pt", data="/d", out="/o.csv", shards=2),
                                       queue="orch", source_job_id=None)
        parent_id, shard_ids = parent.id, [shard.id for shard in shards]
    assert status(store, parent_id).started_at is None
    assert Lease.acquire(store, shard_ids[0], "w:1", ttl=30) is not None
    first = status(store, shard_ids[0]).started_at
    assert first is not None and status(store, parent_id).started_at == first
    time.sleep(0.05)
    assert Lease.acquire(store, shard_ids[1], "w:2", ttl=30) is not None  # the second shard leaves it
    assert Lease.acquire(store, parent_id, "w:2 via shard job 2", ttl=30) is not None  # nor does the assembly
    assert status(store, parent_id).started_at == first


def test_a_job_cancelled_while_queued_to_resume_is_not_said_never_to_have_started(store: Store) -> None:
    """A job whose worker stopped mid-epoch, then cancelled while queued, read "cancelled before it
    started" and "it never starts" beside its attempt 1 and its start time."""
    job_id = new_job(store)
    lease = Lease.acquire(store, job_id, "w:1", ttl=30)
    assert lease is not None and lease.requeue("worker stopped; requeued") == JobStatus.queued
    with store.session() as s:
        assert store_jobs.request_cancel(s, [s.get(Job, job_id)])["cancelled"] == [job_id]
    with store.session() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.error == "cancelled while queued to resume"
        assert [e.message for e in reads.job_events(s, job_id)][-1] == (
            "cancelled by orch cancel while queued to resume: it does not start again (`orch retry` resumes it from "
            "its last checkpoint)")
