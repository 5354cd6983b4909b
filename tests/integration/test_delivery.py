"""No lost message, with real processes: a CLI killed between its commit and its send, and a Redis
restarted (without persistence) while jobs wait in it. Each job runs, once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Orch, running_cluster
from tests.integration.test_faults import SLOW_JOB, private_redis, submit_train, wait_epochs  # noqa: F401

pytestmark = pytest.mark.slow

# `orch ARGS`, but the process kills itself with SIGKILL where it would send its first message:
# after the commit, before the send (the window the outbox closes).
KILLED_AT_SEND = ("import os, signal, sys\n"
                  "import shared.delivery\n"
                  "shared.delivery.send_message = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
                  "sys.argv = ['orch', *sys.argv[1:]]\n"
                  "from orchestrator.cli import main\n"
                  "main()\n")


def submit_killed_at_send(orch: Orch, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", KILLED_AT_SEND, *args], env=orch.env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(params=["embedded", "redis-postgres"])
def any_orch(request: pytest.FixtureRequest) -> Orch:
    return request.getfixturevalue("orch" if request.param == "embedded" else "cluster_orch")


def test_a_submit_killed_between_commit_and_send_runs_once(any_orch: Orch, synth_data: Path) -> None:
    orch = any_orch
    killed = submit_killed_at_send(orch, "submit", "ablation", "--data", str(synth_data / "train"),
                                   "--val", str(synth_data / "val"), *SLOW_JOB, "--epochs", "1",
                                   "--seeds", "0,1", "--study", "killed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ids = [job["id"] for job in orch.json("status", "--study", "killed")]
    assert len(ids) == 2 and all(orch.json("status", str(i))["status"] == "queued" for i in ids)

    worker = orch.start_worker()
    for job_id in ids:
        detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=180)
        assert detail["status"] == "succeeded" and detail["attempts"] == 1, detail["error"]
        assert [e["epoch"] for e in detail["epochs"]] == [1]
        assert f"job {job_id}: sent its message" in worker.output()  # by the relay, nobody else
    assert sum(worker.output().count(f"job {i} (train): started") for i in ids) == 2


def test_jobs_waiting_in_a_redis_that_restarts_without_persistence_still_run_once(
        private_redis, tmp_path: Path, synth_data: Path) -> None:  # noqa: F811
    url, restart = private_redis
    with running_cluster(tmp_path, url) as orch:
        first = submit_train(orch, synth_data, epochs=2)
        waiting = [submit_train(orch, synth_data, 1, "--seed", str(seed)) for seed in (1, 2)]
        worker = orch.start_worker()
        wait_epochs(orch, first, 1)
        restart()  # the two waiting jobs' messages are gone with it
        for job_id in [first, *waiting]:
            detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=240)
            assert detail["status"] == "succeeded" and detail["attempts"] == 1, detail["error"]
        assert all(f"job {job_id}: re-sent its message" in worker.output() for job_id in waiting)


def test_a_running_worker_drops_the_message_of_a_job_cancelled_on_a_queue_nobody_reads(
        orch: Orch, synth_data: Path) -> None:
    """The message of a job cancelled while queued stays in its queue until a worker of that queue takes
    it; on a queue nobody reads it stayed for good (listed by every poll, counted by the relay as a
    queued job's). The worker's janitor drops it, and leaves the message of a job still queued there."""
    cancelled, waiting = (submit_train(orch, synth_data, 1, "--queue", "nobody", "--seed", str(seed))
                          for seed in (1, 2))
    orch.run("cancel", str(cancelled), check=True)
    folder = orch.home / "broker" / "queue"
    by_job = {job_id: next(folder.glob(f"*_j{job_id}_*.nobody.msg")) for job_id in (cancelled, waiting)}
    old = time.time() - 120  # past the minute a finished job's message is given before it is dropped
    for path in by_job.values():
        os.utime(path, (old, old))
    worker = orch.start_worker()  # reads the default queue only
    deadline = time.monotonic() + 60
    while by_job[cancelled].exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not by_job[cancelled].exists(), worker.output()[-3000:]
    assert by_job[waiting].exists() and orch.json("status", str(waiting))["status"] == "queued"
