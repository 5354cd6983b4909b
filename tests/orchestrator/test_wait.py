"""`--wait` with no worker: a Ctrl-C exits 130 naming the jobs; a job nobody takes gets one line on why."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO, Orch, with_ctrl_c


def test_ctrl_c_stops_waiting_with_130_and_names_the_job(orch: Orch, synth_data: Path) -> None:
    """It exited 1, as a failed job does, and said only '(orch status)'."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "submit", "train", "--data",
                             str(synth_data / "train"), "--image-size", "32", "--epochs", "1", "--wait"],
                            env=orch.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=with_ctrl_c)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not orch.json("status"):
        time.sleep(0.3)
    time.sleep(1.5)  # in its poll loop
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "stopped waiting; the job goes on: `orch status 1` follows it, `orch cancel 1` stops it" in err
    assert "Traceback" not in err and orch.json("status", "1")["status"] == "queued"  # the job goes on


def test_a_job_nobody_takes_says_why(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A --wait on a machine with no worker printed 'queued' and then nothing, for as long as one waited."""
    from orchestrator.progress import not_taken_hint
    from shared.config import load_settings
    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Lease, open_store
    from shared.store import jobs as store_jobs
    from shared.store.takeover import take_expired

    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    # no broker answered which queues its workers read: what the store tells (test_unread_queues.py asks them)
    monkeypatch.setattr("orchestrator.workers.queues_read", lambda obj: None)
    store = open_store(load_settings(orch.home))
    try:
        obj = SimpleNamespace(store=store, settings=SimpleNamespace(lease_ttl=30.0))
        with store.session() as s:
            ids = [store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d")).id
                   for _ in range(2)]
        assert not_taken_hint(obj).startswith("still queued and no worker is running a job: is a worker running? "
                                              "`orch worker` starts one")
        assert Lease.acquire(store, ids[0], "orch-7@lab", ttl=30) is not None
        assert not_taken_hint(obj) == (f"still queued: the workers are busy (job {ids[0]} on orch-7@lab); it "
                                       "starts when one is free")
        # behind a long queue --wait said why once, then nothing for 13 minutes: how many wait ahead of it
        with store.session() as s:
            later = store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d")).id
        assert not_taken_hint(obj, first=later) == (f"still queued: the workers are busy (job {ids[0]} on orch-7@lab), "
                                                    "and 1 queued job submitted before it; it starts when one is free")
        assert not_taken_hint(obj, first=ids[1]) == not_taken_hint(obj)  # none ahead: nothing said of the queue
        # a queue no default worker reads: the hint named no queue while a worker idled on `orch`
        assert not_taken_hint(obj, ["gpu"]).endswith("the queue is gpu: only a worker started with "
                                                     "`orch worker --queues gpu` takes it")
        # the busy worker was killed: its job's heartbeat is older than the lease, so no worker is busy
        from sqlalchemy import update

        from shared.store import Job

        with store.session() as s:
            s.execute(update(Job).where(Job.id == ids[0]).values(heartbeat_at=time.time() - 45))
        assert not_taken_hint(obj).startswith("still queued and no worker is running a job")
        # and --wait says so of the job it follows: it read "running" for the 42 s until a takeover
        from orchestrator.progress import describe_state, job_states

        assert describe_state(ids[0], job_states(obj, [ids[0]])[ids[0]]) == (
            f"job {ids[0]}: running  (its worker orch-7@lab is not answering: a live worker's sweeper takes the "
            "job over)")
        assert take_expired(store, 30, "sweeper of orch-8@lab", 3)[0].outcome == "queued"
        assert describe_state(ids[0], job_states(obj, [ids[0]])[ids[0]]) == f"job {ids[0]}: queued"
        assert Lease.acquire(store, ids[0], "orch-8@lab", ttl=30) is not None  # resumed: where it runs now
        assert describe_state(ids[0], job_states(obj, [ids[0]])[ids[0]]) == (
            f"job {ids[0]}: running  (attempt 2, on orch-8@lab)")
    finally:
        store.dispose()


def test_wait_shows_a_running_jobs_place_inside_its_epoch() -> None:
    from orchestrator.progress import describe_state, inside_epoch

    progress = {"phase": "training", "epoch": 2, "done": 30, "total": 120, "images_per_s": 85.3, "at": 0.0}
    assert inside_epoch(progress, 1) == "epoch 2: 25%, 85.3 images/s"
    assert inside_epoch(None, 1) is None  # not yet written
    # epoch 2 recorded by an earlier attempt: this one trains it again (recording an epoch clears its place)
    assert inside_epoch(progress, 2) == "epoch 2 again: 25%, 85.3 images/s"
    assert inside_epoch({**progress, "done": 34}, 1, step=5) == "epoch 2: 25%"  # --wait: a line per 5%
    state = {"status": "running", "epoch": 1, "epochs": 4, "val_acc": 0.6, "error": None,
             "inside": inside_epoch(progress, 1, step=5)}
    assert describe_state(7, state) == "job 7: running  epoch 1/4  val_acc 60.00%  (epoch 2: 25%)"


def test_a_long_wait_in_the_queue_says_again_what_changed(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Behind 30 queued jobs --wait said why at 20 s, then nothing until the job ran 13 minutes later: it
    says again where the line changes (another job runs, fewer wait ahead), at most every REHINT_S."""
    from orchestrator import progress

    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(progress.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + 10.0))
    queued = {"status": "queued", "epoch": None, "epochs": 1, "val_acc": None, "error": None, "queue": "orch"}
    ends_at = 600.0
    monkeypatch.setattr(progress, "job_states", lambda obj, ids: {
        7: {**queued, "status": "succeeded"} if clock[0] >= ends_at else queued})
    # the queue ahead shrinks by one job a minute; the busy worker's job never changes
    monkeypatch.setattr(progress, "not_taken_hint", lambda obj, queues, first: f"{9 - int(clock[0] // 60)} ahead")
    assert progress.wait_for(SimpleNamespace(), [7]) is True  # type: ignore[arg-type]
    hints = [line for line in capsys.readouterr().err.splitlines() if "ahead" in line]
    assert hints == ["[    20s] 9 ahead", "[   140s] 7 ahead", "[   260s] 5 ahead", "[   380s] 3 ahead",
                     "[   500s] 1 ahead"]


def test_an_unchanged_line_is_asked_for_at_most_every_rehint_s(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The line asks the workers over the broker (a second's wait for their answers): a line that never
    changed was asked for at every poll once REHINT_S had passed, 460 times in this 10-minute wait."""
    from orchestrator import progress

    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(progress.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + 1.0))
    queued = {"status": "queued", "epoch": None, "epochs": 1, "val_acc": None, "error": None, "queue": "orch"}
    monkeypatch.setattr(progress, "job_states", lambda obj, ids: {
        7: {**queued, "status": "succeeded"} if clock[0] >= 600.0 else queued})
    asked: list[float] = []
    monkeypatch.setattr(progress, "not_taken_hint", lambda obj, queues, first: asked.append(clock[0]) or "busy")
    assert progress.wait_for(SimpleNamespace(), [7]) is True  # type: ignore[arg-type]
    assert asked == [20.0, 140.0, 260.0, 380.0, 500.0]
    assert [line for line in capsys.readouterr().err.splitlines() if "busy" in line] == ["[    20s] busy"]
