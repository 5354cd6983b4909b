"""Reliability, proven by killing real processes: crash and resume, duplicate delivery, cancel,
retry, a crashing job process, and a Redis restart while a job trains."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Orch, free_port, reachable, running_cluster

pytestmark = pytest.mark.slow
SLOW_JOB = ("--model", "resnet18", "--image-size", "32", "--batch-size", "16", "--lr", "0.002")


def submit_train(orch: Orch, data: Path, epochs: int, *extra: str) -> int:
    out = orch.json("submit", "train", "--data", str(data / "train"), "--val", str(data / "val"),
                    *SLOW_JOB, "--epochs", str(epochs), *extra)
    return out["job_id"]


def wait_epochs(orch: Orch, job_id: int, n: int, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = orch.json("status", str(job_id))
        if len(detail["epochs"]) >= n or detail["status"] in ("failed", "succeeded", "cancelled"):
            return detail
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} recorded fewer than {n} epochs in {timeout}s")


@pytest.fixture(params=["embedded", "redis-postgres"])
def any_orch(request: pytest.FixtureRequest) -> Orch:
    return request.getfixturevalue("orch" if request.param == "embedded" else "cluster_orch")


def test_kill_9_mid_epoch_then_a_new_worker_resumes(any_orch: Orch, synth_data: Path) -> None:
    orch = any_orch
    job_id = submit_train(orch, synth_data, epochs=5)
    first = orch.start_worker()
    before = wait_epochs(orch, job_id, 2)
    first.kill(signal.SIGKILL)  # the whole process group: worker and job child, mid-epoch
    assert wait_until(lambda: not first.job_processes(), timeout=10)  # dying ones may take a moment
    done_before = len(orch.json("status", str(job_id))["epochs"])

    restarted = time.monotonic()
    second = orch.start_worker()
    resumed = wait_until(lambda: orch.json("status", str(job_id))["attempts"] == 2, timeout=90)
    recovery_s = time.monotonic() - restarted
    detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=300)
    assert detail["status"] == "succeeded", detail["error"] + second.output()[-3000:]
    epochs = [e["epoch"] for e in detail["epochs"]]
    assert epochs == [1, 2, 3, 4, 5]  # each exactly once
    first_attempt = [e["epoch"] for e in detail["epochs"] if e["attempt"] == 1]
    assert len(before["epochs"]) <= len(first_attempt) <= done_before
    assert [e["epoch"] for e in detail["epochs"] if e["attempt"] == 2] == list(range(len(first_attempt) + 1, 6))
    assert resumed and recovery_s < 60, f"recovery took {recovery_s:.1f}s"
    # the run's wall time counts the epochs of the first attempt (it counted the last attempt's alone)
    assert detail["result"]["wall_s"] >= sum(e["seconds"] for e in detail["epochs"])
    assert detail["started_at"] == before["started_at"]  # when the run first started, not its takeover
    print(f"recovery started {recovery_s:.1f}s after the new worker started")


def test_a_sibling_worker_takes_a_killed_workers_job_over_at_once(orch: Orch, synth_data: Path) -> None:
    """One worker per GPU on one box: when one is killed, the next sweep of another takes its job
    (the holder's process is gone, and this machine can tell), not the lease's TTL later."""
    orch.env["ORCH_LEASE_TTL"] = "120"  # far longer than the takeover may take
    job_id = submit_train(orch, synth_data, epochs=4)
    first = orch.start_worker(log_name="first")
    wait_epochs(orch, job_id, 1)
    second = orch.start_worker(log_name="second")
    assert wait_until(lambda: ", artifacts " in second.output(), timeout=60), second.output()[-3000:]  # it sweeps
    first.kill(signal.SIGKILL)
    killed = time.monotonic()
    assert wait_until(lambda: orch.json("status", str(job_id))["attempts"] == 2, timeout=60), second.output()[-3000:]
    recovery_s = time.monotonic() - killed
    detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=300)
    assert detail["status"] == "succeeded", detail["error"] + second.output()[-3000:]
    assert [e["epoch"] for e in detail["epochs"]] == [1, 2, 3, 4]
    said = [e["message"] for e in detail["events"]]
    assert any(" is gone (its process " in m and "on this machine ended); taken over by sweeper of " in m
               for m in said), said
    assert recovery_s < 30, f"recovery took {recovery_s:.1f}s with a 120 s lease"
    print(f"taken over and started again {recovery_s:.1f}s after the kill")


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_duplicate_delivery_of_a_running_job_is_not_run_twice(orch: Orch, synth_data: Path) -> None:
    job_id = submit_train(orch, synth_data, epochs=3)
    busy = orch.start_worker("--name", "busy@test")
    wait_epochs(orch, job_id, 1)
    idle = orch.start_worker("--name", "idle@test")
    resend = ("from shared.config import load_settings; from shared.celery_app import make_celery, send_job; "
              f"send_job(make_celery(load_settings()), {job_id}, 'train', 'orch')")
    subprocess.run([sys.executable, "-c", resend], env=orch.env, cwd=REPO, check=True, timeout=60)
    assert wait_until(lambda: f"job {job_id}: not taken" in idle.output(), timeout=60), idle.output()[-2000:]
    detail = orch.wait_status(job_id, {"succeeded", "failed"})
    assert detail["status"] == "succeeded" and detail["attempts"] == 1
    assert [e["epoch"] for e in detail["epochs"]] == [1, 2, 3]
    assert f"job {job_id} (train): started" in busy.output()
    assert f"job {job_id} (train): started" not in idle.output()


def test_cancel_a_running_job_then_retry_resumes(orch: Orch, synth_data: Path) -> None:
    job_id = submit_train(orch, synth_data, epochs=6)
    next_job = submit_train(orch, synth_data, 1, "--seed", "1")
    worker = orch.start_worker()
    wait_epochs(orch, job_id, 2)
    running = worker.job_processes(oldest=True)[0]
    asked = time.monotonic()
    assert orch.run("cancel", str(job_id), check=True).stdout.startswith("stopping")
    detail = orch.wait_status(job_id, {"cancelled", "failed", "succeeded"}, timeout=30)
    took = time.monotonic() - asked
    assert detail["status"] == "cancelled" and took < 15, (detail["status"], took)
    assert running not in worker.job_processes()  # exactly that job's process was stopped
    assert orch.wait_status(next_job, {"succeeded", "failed"})["status"] == "succeeded"  # the worker went on
    kept = len(orch.json("status", str(job_id))["epochs"])

    assert orch.json("retry", str(job_id)) == {"job_ids": [job_id]}
    detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=300)
    assert detail["status"] == "succeeded"
    assert [e["epoch"] for e in detail["epochs"]] == list(range(1, 7))
    assert {e["attempt"] for e in detail["epochs"] if e["epoch"] <= kept} == {1}  # resumed, not repeated
    assert {e["attempt"] for e in detail["epochs"] if e["epoch"] > kept} == {2}


def test_cancel_of_a_queued_job_means_it_never_starts(orch: Orch, synth_data: Path) -> None:
    job_id = submit_train(orch, synth_data, epochs=1)
    assert orch.json("cancel", str(job_id))["cancelled"] == [job_id]
    after = submit_train(orch, synth_data, 1, "--seed", "2")
    worker = orch.start_worker()
    assert orch.wait_status(after, {"succeeded", "failed"})["status"] == "succeeded"
    detail = orch.json("status", str(job_id))
    assert detail["status"] == "cancelled" and detail["attempts"] == 0 and detail["epochs"] == []
    assert f"job {job_id}: not taken" in worker.output()


def test_a_crashing_job_process_fails_the_job_not_the_worker(orch: Orch, synth_data: Path) -> None:
    """A crash is retried (it may be the machine's fault) until ORCH_MAX_ATTEMPTS, then the job
    fails with its cause: a job that kills its process every time is not requeued forever."""
    orch.env = {**orch.env, "ORCH_MAX_ATTEMPTS": "2"}
    job_id = submit_train(orch, synth_data, epochs=20)
    worker = orch.start_worker()
    wait_epochs(orch, job_id, 1)
    children = worker.job_processes()
    assert len(children) == 2  # the job's process, and the next job's, started and waiting (warm)
    os.kill(worker.job_processes(oldest=True)[0], signal.SIGSEGV)
    assert wait_until(lambda: (lambda d: (d["status"], d["attempts"]))(orch.json("status", str(job_id)))
                      == ("running", 2), timeout=60)
    assert wait_until(lambda: len(worker.job_processes()) == 2, timeout=60)  # taken, and the next one warming
    time.sleep(1)
    os.kill(worker.job_processes(oldest=True)[0], signal.SIGSEGV)
    detail = orch.wait_status(job_id, {"failed", "succeeded"}, timeout=60)
    assert detail["status"] == "failed" and "SIGSEGV" in detail["error"] and "after 2 attempts" in detail["error"]
    again = submit_train(orch, synth_data, 1, "--seed", "3")
    assert orch.wait_status(again, {"succeeded", "failed"})["status"] == "succeeded"
    assert worker.proc.poll() is None


@pytest.fixture
def private_redis(tmp_path: Path):
    """A Redis of this test's own (no persistence, like the machine's), so it can be restarted."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(tmp_path)]
    state = {"proc": subprocess.Popen(cmd, stdout=subprocess.DEVNULL)}

    def restart() -> None:
        state["proc"].kill()
        state["proc"].wait()
        time.sleep(2)  # the worker notices the broker is gone
        state["proc"] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        assert wait_until(lambda: reachable("127.0.0.1", port), timeout=10)

    assert wait_until(lambda: reachable("127.0.0.1", port), timeout=10)
    yield f"redis://127.0.0.1:{port}/0", restart
    state["proc"].kill()
    state["proc"].wait()


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused-across-the-restart"])
def test_redis_restart_while_a_job_trains(private_redis, tmp_path: Path, synth_data: Path, paused: bool) -> None:
    """`paused`: the worker's process is stopped across the restart (the job's process goes on), so
    its event loop finds its connections dead only once Redis is back, as on a loaded machine. A
    redis-py retry then reconnected inside the remote-control read, which waited for ever: the worker
    took no job again and logged nothing (seen once in CI; see shared/celery_app.transport_options)."""
    url, restart = private_redis
    with running_cluster(tmp_path, url) as orch:
        job_id = submit_train(orch, synth_data, epochs=4)
        worker = orch.start_worker()
        wait_epochs(orch, job_id, 1)
        if paused:
            os.kill(worker.proc.pid, signal.SIGSTOP)
        restart()
        if paused:
            os.kill(worker.proc.pid, signal.SIGCONT)
        detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=300)
        assert detail["status"] == "succeeded", detail["error"]
        assert [e["epoch"] for e in detail["epochs"]] == [1, 2, 3, 4] and detail["attempts"] == 1
        after = submit_train(orch, synth_data, 1, "--seed", "4")  # the worker reconnected
        # if the job stays queued, the worker's log says what its consumer did
        assert wait_until(lambda: orch.json("status", str(after))["status"] == "succeeded", timeout=120), \
            worker.output()[-6000:]
        assert worker.proc.poll() is None


def test_ctrl_c_stops_the_worker_cleanly_and_requeues_its_job(orch: Orch, synth_data: Path) -> None:
    job_id = submit_train(orch, synth_data, epochs=4)
    first = orch.start_worker()
    wait_epochs(orch, job_id, 1)
    first.stop()  # SIGINT to the process group, as Ctrl-C in a terminal
    assert first.proc.returncode == 0, first.output()[-2000:]
    detail = orch.json("status", str(job_id))
    assert detail["status"] == "queued" and "requeued" in detail["error"]
    # Celery logs every returned task as "succeeded"; the result says what happened ('shutdown' before)
    assert "given back: this worker is stopping" in first.output(), first.output()[-2000:]
    orch.start_worker()
    detail = orch.wait_status(job_id, {"succeeded", "failed"}, timeout=300)
    assert detail["status"] == "succeeded" and [e["epoch"] for e in detail["epochs"]] == [1, 2, 3, 4]
