"""Flower, started by `orch flower` against the test broker, lists finished tasks through its HTTP API."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import REPO, Orch, free_port

pytestmark = pytest.mark.slow
AUTH = ("admin", "s3cret-pass")


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout}s")


def flower_log(orch: Orch) -> str:
    return (orch.home / "flower.log").read_text()


def command_lines(pid: int) -> str:
    """The argv of `pid` and every process below it, as ps shows them."""
    out = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(os.getpgid(pid))], capture_output=True, text=True)
    assert str(pid) in out.stdout, out
    return out.stdout


def test_a_password_on_the_command_line_is_refused(orch: Orch) -> None:
    proc = orch.run("flower", "--basic-auth", ":".join(AUTH), "--port", str(free_port()), timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "FLOWER_BASIC_AUTH" in lines[0] and AUTH[1] not in lines[0]


def test_an_open_flower_on_the_network_is_warned_about(orch: Orch) -> None:
    """--address 0.0.0.0 without a password started an open monitor (Flower can shut workers down)
    with no word said; on loopback, or with a password, nothing is said."""
    for extra, env, warned in ((["--address", "0.0.0.0"], {}, True),
                               (["--address", "0.0.0.0"], {"FLOWER_BASIC_AUTH": ":".join(AUTH)}, False),
                               ([], {}, False)):
        port = free_port()
        log_path = orch.home / "flower-open.log"
        with open(log_path, "w") as log:
            flower = subprocess.Popen([sys.executable, "-m", "orchestrator", "flower", "--port", str(port), *extra],
                                      env={**orch.env, **env}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}")
        finally:
            os.killpg(flower.pid, signal.SIGKILL)
            flower.wait()
        text = log_path.read_text()
        assert (f"warning: Flower on 0.0.0.0:{port} without a password" in text) is warned, (extra, env, text)


@contextmanager
def flower_running(orch: Orch) -> Iterator[str]:
    """`orch flower` on a free port, with a password: yields its base URL."""
    port = free_port()
    log = open(orch.home / "flower.log", "w")
    secret = orch.home / "flower-auth"
    secret.write_text(":".join(AUTH) + "\n")
    flower = subprocess.Popen([sys.executable, "-m", "orchestrator", "flower", "--port", str(port),
                               "--basic-auth-file", str(secret)], env=orch.env, cwd=REPO,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base)
        assert requests.get(f"{base}/api/tasks", timeout=5).status_code == 401  # a password is required
        assert AUTH[1] not in command_lines(flower.pid)  # what ps shows
        yield base
    finally:
        os.killpg(flower.pid, signal.SIGKILL)
        flower.wait()


def tasks_once(base: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Flower's task list, polled for up to 30 s until `wanted` holds (events arrive over the broker)."""
    tasks: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = requests.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()
        if wanted(tasks):
            break
        time.sleep(1)
    return tasks


@pytest.mark.parametrize("backend", ["orch", "cluster_orch"])
def test_flower_lists_finished_tasks(backend: str, request: pytest.FixtureRequest, synth_data: Path) -> None:
    orch: Orch = request.getfixturevalue(backend)
    with flower_running(orch) as base:
        orch.start_worker()
        job = orch.json("submit", "train", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
                        "--image-size", "32", "--epochs", "1", "--batch-size", "32")["job_id"]
        assert orch.wait_status(job, {"succeeded", "failed"})["status"] == "succeeded"
        tasks = tasks_once(base, lambda tasks: any(t.get("state") == "SUCCESS" for t in tasks.values()))
        finished = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        assert finished, (tasks, flower_log(orch)[-2000:])
        assert finished[0]["name"] == "orch.train" and str(job) in str(finished[0]["args"])
        # what a monitor shows in place of the arguments (the message's argsrepr; the worker reads the id)
        assert finished[0]["args"] == f"job {job} · resnet18 · bn · seed 0", finished[0]["args"]
        workers = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(name.startswith("orch-") for name in workers):
            workers = requests.get(f"{base}/api/workers?refresh=1", auth=AUTH, timeout=30).json()
        assert any(name.startswith("orch-") for name in workers), (workers, flower_log(orch)[-2000:])
        assert orch.json("status", str(job))["worker"] in workers  # orch status names the worker as Flower does


def test_flower_shows_a_failed_job_as_failure_and_a_cancelled_one_as_revoked(orch: Orch, synth_data: Path,
                                                                              tmp_path: Path) -> None:
    """Both showed SUCCESS: the task returned normally whatever became of its job."""
    unreadable = tmp_path / "unreadable"
    for name in ("cat", "dog"):
        (unreadable / name).mkdir(parents=True)
        for i in range(4):
            (unreadable / name / f"{i}.jpg").write_text("not a JPEG")
    with flower_running(orch) as base:
        orch.start_worker()
        failed = orch.json("submit", "train", "--data", str(unreadable), "--image-size", "32", "--epochs", "1")["job_id"]
        long = orch.json("submit", "train", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
                         "--image-size", "32", "--epochs", "50", "--batch-size", "16")["job_id"]
        error = orch.wait_status(failed, {"succeeded", "failed"})["error"]
        orch.wait_status(long, {"running"})
        orch.run("cancel", str(long), check=True)
        assert orch.wait_status(long, {"cancelled", "succeeded", "failed"}, timeout=60)["status"] == "cancelled"

        def state_of(tasks: dict[str, Any], job: int) -> str | None:
            return next((t.get("state") for t in tasks.values() if t.get("args", "").startswith(f"job {job} ")), None)

        tasks = tasks_once(base, lambda tasks: state_of(tasks, failed) == "FAILURE" and state_of(tasks, long) == "REVOKED")
        assert (state_of(tasks, failed), state_of(tasks, long)) == ("FAILURE", "REVOKED"), (tasks, flower_log(orch)[-2000:])
        shown = next(t for t in tasks.values() if t.get("args", "").startswith(f"job {failed} "))
        assert error.splitlines()[0][:40] in shown["exception"], (error, shown["exception"])
