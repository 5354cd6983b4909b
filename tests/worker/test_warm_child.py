"""The warm child: each job runs in a fresh process that was started (and warmed up) before the job
came, forked from a server that imported torch once, one job per process; a ready process that dies
is replaced, and a killed worker takes its job processes and server with it. Real worker, real kills."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Orch, WorkerProcess, running

pytestmark = pytest.mark.slow
TINY = ("--model", "resnet18", "--image-size", "32", "--batch-size", "16", "--epochs", "1")


def run_one(orch: Orch, data: Path) -> dict:
    out = orch.json("submit", "train", "--data", str(data / "train"), "--val", str(data / "val"), *TINY)
    detail = orch.wait_status(out["job_id"], {"succeeded", "failed"}, timeout=300)
    assert detail["status"] == "succeeded", detail["error"]
    return {**detail["result"]["startup"], "attempts": detail["attempts"]}


def wait_for_one_ready(worker: WorkerProcess, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker.job_processes()
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.2)
    raise AssertionError(f"expected one ready job process, found {worker.job_processes()}")


def test_each_job_runs_in_its_own_process_started_before_it(orch: Orch, synth_data: Path) -> None:
    worker = orch.start_worker()
    ready = wait_for_one_ready(worker)  # an idle worker keeps one job process ready
    first = run_one(orch, synth_data)
    assert first["pid"] == ready and first["warm"] and first["threads"] >= 1
    assert first["preloaded"]  # forked with torch imported: it did not import it itself
    assert not running(first["pid"])  # one job per process: it exited, its memory went with it
    second = run_one(orch, synth_data)
    assert second["pid"] != first["pid"] and second["warm"]
    for key in ("take_s", "store_s", "data_s", "build_s", "first_step_s", "import_s"):
        assert second[key] >= 0.0, key


def test_a_ready_process_that_died_is_replaced(orch: Orch, synth_data: Path) -> None:
    worker = orch.start_worker()
    ready = wait_for_one_ready(worker)
    os.kill(ready, signal.SIGKILL)
    startup = run_one(orch, synth_data)  # the job still runs, in a process started for it
    assert startup["pid"] != ready
    # the attempt that found the dead process ran in a fresh one; on a CPU so loaded that the worker
    # fenced that attempt (no heartbeat for 0.8 TTL), the next attempt may take the new warm process
    assert not startup["warm"] or startup["attempts"] > 1, worker.output()[-3000:]
    assert "died or hung before its job" in worker.output()


def test_a_killed_worker_takes_its_job_processes_and_fork_server_with_it(orch: Orch, synth_data: Path) -> None:
    out = orch.json("submit", "train", "--data", str(synth_data / "train"), *TINY[:-1], "50")
    worker = orch.start_worker()
    assert orch.wait_status(out["job_id"], {"running"}, timeout=120)["status"] == "running"
    deadline = time.monotonic() + 60
    while len(worker.job_processes()) < 2 and time.monotonic() < deadline:  # the job's, and the next one's
        time.sleep(0.2)
    started = [*worker.job_processes(), *worker.job_processes(name="orch-forkserver")]
    assert len(started) == 3, started
    os.kill(worker.proc.pid, signal.SIGKILL)  # the worker alone, not its process group
    worker.proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(map(running, started)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in started if running(pid)], "a job process or the fork server outlived its worker"


def test_a_second_stop_signal_during_the_first_stop_does_not_hang_the_worker(orch: Orch) -> None:
    """Two SIGTERMs (`timeout` signals the worker, then its process group; or `kill` said twice): the
    second ran the shutdown again inside the first, which held the pool's lock while it waited for the
    ready job process, and waited for that lock in the same thread: the worker hung for ever."""
    worker = orch.start_worker()
    ready = wait_for_one_ready(worker)
    deadline = time.monotonic() + 60
    while " ready." not in worker.output() and time.monotonic() < deadline:  # Celery's handlers are in place
        time.sleep(0.2)
    os.kill(ready, signal.SIGSTOP)  # the first stop waits its 5 s for this process to end on its own
    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.wait(timeout=60)
    assert not running(ready)
