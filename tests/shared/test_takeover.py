"""A job whose holder is a process of this machine that ended is taken over at once, not a TTL later;
one whose holder runs, or cannot be judged from here, is left to its lease.

Holders are real processes (a `sleep` started and killed here), judged by the real /proc.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from shared.store import Event, Job, JobStatus, Lease, Store, holder
from shared.store.takeover import take_expired, take_orphaned
from tests.shared.test_store import new_job, status

pytestmark = pytest.mark.skipif(holder.this_machine() is None, reason="needs Linux's /proc of this pid namespace")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_this_process_is_alive_and_a_killed_one_is_gone(sleeper: subprocess.Popen[bytes]) -> None:
    me, other = holder.this_process(), holder.identity_of(sleeper.pid)
    assert me is not None and other is not None and me.startswith(holder.this_machine() or "?")
    assert holder.pid_of(other) == sleeper.pid
    assert not holder.gone(me) and not holder.gone(other)
    sleeper.kill()  # not reaped yet: a zombie has ended (once the signal is taken: it is asynchronous)
    deadline = time.monotonic() + 5
    while not holder.gone(other) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert holder.gone(other)
    sleeper.wait()
    assert holder.gone(other)


def test_what_cannot_be_proven_here_is_never_gone(sleeper: subprocess.Popen[bytes]) -> None:
    other = holder.identity_of(sleeper.pid)
    assert other is not None
    boot, pidns, pid, start = other.split("/")
    assert holder.gone(f"{boot}/{pidns}/{pid}/{int(start) + 1}")  # the pid reused by a later process
    sleeper.kill()
    sleeper.wait()
    for foreign in (f"another-boot/{pidns}/{pid}/{start}", f"{boot}/1/{pid}/{start}", "w1@lab", "", None,
                    f"{boot}/{pidns}/x/{start}"):  # another machine, a container's pids, not a holder string
        assert not holder.gone(foreign), foreign


def hold(store: Store, job_id: int, process: str | None) -> Lease:
    lease = Lease.acquire(store, job_id, "w1@lab", ttl=30)
    assert lease is not None
    with store.session() as s:
        assert s.scalar(select(Job.holder_process).where(Job.id == job_id)) == holder.this_process()
        s.execute(update(Job).where(Job.id == job_id).values(holder_process=process))
    return lease


def test_a_dead_holders_job_is_requeued_at_once(store: Store, sleeper: subprocess.Popen[bytes]) -> None:
    dead, alive, elsewhere = new_job(store), new_job(store, seed=1), new_job(store, seed=2)
    old = hold(store, dead, holder.identity_of(sleeper.pid))
    hold(store, alive, holder.this_process())
    hold(store, elsewhere, "another-boot/1/42/7")
    assert take_orphaned(store, "sweeper of w2@lab", max_attempts=3) == []  # all three run, as far as we know
    sleeper.kill()
    sleeper.wait()
    (taken,) = take_orphaned(store, "sweeper of w2@lab", max_attempts=3)
    assert (taken.job_id, taken.outcome, taken.holder) == (dead, JobStatus.queued, "w1@lab")
    assert taken.cause == f"w1@lab is gone (its process {sleeper.pid} on this machine ended)"
    job = status(store, dead)
    assert (job.status, job.lease_token, job.holder_process, job.worker_host) == (JobStatus.queued, 2, None, None)
    assert not old.finish(JobStatus.succeeded)  # the dead holder's token is refused from now on
    with store.session() as s:
        said = s.scalars(select(Event.message).where(Event.job_id == dead)).all()
    assert f"{taken.cause}; taken over by sweeper of w2@lab after attempt 1" in said
    assert [status(store, j).status for j in (alive, elsewhere)] == [JobStatus.running] * 2
    assert take_orphaned(store, "sweeper of w2@lab", max_attempts=3) == []  # once
    assert take_expired(store, ttl=30, owner="sweeper", max_attempts=3) == []  # and the TTL is not involved


def test_a_dead_holder_counts_an_attempt_as_a_crash_does(store: Store, sleeper: subprocess.Popen[bytes]) -> None:
    job_id = new_job(store)
    with store.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(attempts=2))
    hold(store, job_id, holder.identity_of(sleeper.pid))
    sleeper.kill()
    sleeper.wait()
    (taken,) = take_orphaned(store, "sweeper", max_attempts=3)
    assert taken.outcome == JobStatus.failed
    assert status(store, job_id).error == f"{taken.cause}; gave up after 3 attempts (ORCH_MAX_ATTEMPTS)"
