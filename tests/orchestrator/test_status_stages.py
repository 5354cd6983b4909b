"""`orch status ID`'s stages line: a job's start-up and a scoring shard's stages, readable."""
from __future__ import annotations

import pytest

from orchestrator.commands.status import precision_line, stage_line

TRAIN = {"best_val_acc": 1.0, "startup": {"warm": True, "wait_ready_s": 2.647, "import_s": 0.0, "threads": 2,
                                          "take_s": 2.647, "store_s": 0.02, "data_s": 0.099, "build_s": 0.103,
                                          "first_step_s": 0.237}}
SHARD = {"n": 100, "timings": {"load_s": 0.126, "decode_s": 0.011, "int8_s": 0.319, "verify_s": 0.0, "infer_s": 0.032},
         "startup": {"warm": True, "wait_ready_s": 0.0, "take_s": 0.0, "store_s": 0.014}}


def test_a_training_jobs_start_up_to_its_first_step() -> None:
    assert stage_line(TRAIN) == ("3.11 s to the first step (take 2.65, store 0.02, data 0.10, build 0.10, "
                                 "first step 0.24; a warm job process, ready 2.65 s after the job was taken)")


def test_a_machines_first_job_names_its_bf16_probe() -> None:
    first = {**TRAIN, "startup": {**TRAIN["startup"], "probe_s": 1.9}}  # type: ignore[dict-item]
    assert "data 0.10, bf16 probe 1.90, build 0.10" in stage_line(first)


def test_a_scoring_shards_stages_after_its_start_up() -> None:
    assert stage_line(SHARD) == ("0.50 s (take 0.00, store 0.01, load 0.13, decode 0.01, int8 0.32, verify 0.00, "
                                 "inference 0.03; a warm job process)")


def test_what_a_job_ran_in_and_why() -> None:
    """Only a machine's first job wrote the probe's finding into its history: the jobs after it said
    nothing of why they trained in bf16 (a walk on an AMX Xeon)."""
    auto = {"precision": "auto"}
    assert precision_line(auto, {"precision": "bf16", "bf16_speedup": 1.8}) == (
        "bf16 (auto: bf16 steps ran 1.80x as fast as fp32 in this machine's probe)")
    assert precision_line(auto, {"precision": "fp32", "bf16_speedup": 0.74}).startswith("fp32 (auto: bf16 steps ran 0.74x")
    assert precision_line(auto, {"precision": "fp32"}) == "fp32 (auto)"  # a CPU without native bf16: no probe
    assert precision_line({"precision": "fp32"}, {"precision": "fp32"}) == "fp32 (--precision fp32)"
    fell_back = {"precision": "fp32", "int8_fallback": "int8 agreed with fp32 on 90.0% of the calibration images"}
    assert precision_line({"precision": "int8"}, fell_back) == (
        "fp32 (--precision int8 asked for; int8 agreed with fp32 on 90.0% of the calibration images)")
    assert precision_line(auto, {"precision": "int8"}) == "int8 (auto)"
    # int8 that passed its check says so (a scoring run read "int8 (auto)" and no why)
    assert precision_line(auto, {"precision": "int8", "int8_agreement": 1.0}) == (
        "int8 (auto: int8 agreed with fp32 on 100.0% of the calibration images)")
    assert precision_line({"precision": "int8"}, {"precision": "int8", "int8_agreement": 0.9999}) == (
        "int8 (--precision int8; int8 agreed with fp32 on 100.0% of the calibration images)")
    assert precision_line(auto, {"best_val_acc": 0.9}) == ""  # a result from before results said


def test_nothing_for_a_result_without_stages() -> None:
    assert stage_line({"out": "p.csv", "n": 200}) == ""
    assert stage_line({"startup": {"warm": False, "take_s": 4.0}}) == "4.00 s (take 4.00; a job process started for it)"


def test_a_running_jobs_heartbeat_says_when_its_worker_stopped_answering(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """After a kill -9, `orch status ID` said 'running' for the lease's 30 s with nothing to tell the
    worker was gone; now its heartbeat's age says so, and what happens next."""
    import time

    from sqlalchemy import update

    from orchestrator.commands.status import heartbeat_line, job_detail
    from shared.store import Job
    from shared.store.clock import read_now
    from tests.orchestrator.study_builder import add_run, open_home

    assert heartbeat_line(3.2, 30) == "3 s ago"
    assert heartbeat_line(41.0, 30).startswith("41 s ago: its worker is not answering (the lease is 30 s)")
    store = open_home(tmp_path / "home", monkeypatch)
    job_id = add_run(store, None, "bn", 1, 0, 1)
    with store.session() as s:  # the job as a killed worker leaves it: running, its last beat 41 s ago
        s.execute(update(Job).where(Job.id == job_id).values(status="running", heartbeat_at=time.time() - 41))
    with store.session() as s:
        detail = job_detail(s.get(Job, job_id), None, now=read_now(s))  # the database's clock, as heartbeats
    assert 40 < detail["heartbeat_age_s"] < 50
    store.dispose()


def test_a_running_jobs_place_inside_its_epoch(orch, synth_data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An epoch of real data runs for minutes to hours: `--wait` and `orch status` said nothing between
    epochs, or while it validated. The job's process writes its place (StepProgress); the readers show it."""
    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Lease
    from shared.store import jobs as store_jobs
    from tests.orchestrator.study_builder import open_home
    from worker.progress import StepProgress

    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        job_id = store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d", epochs=4)).id
    lease = Lease.acquire(store, job_id, "orch-1@lab", ttl=30)
    assert lease is not None
    progress = StepProgress(lease, every_s=0.0)
    progress("training", 1, 64, 640)  # an epoch's first batch starts its clock: nothing written yet
    assert orch.json("status", str(job_id))["progress"] is None
    progress("training", 1, 192, 640)
    detail = orch.json("status", str(job_id))
    assert detail["progress"]["said"].startswith("epoch 1: 30%, ") and detail["progress"]["total"] == 640
    listed = orch.json("status")[0]
    assert listed["epoch"] == "0/4 +30%" and (listed["progress"]["done"], listed["progress"]["total"]) == (192, 640)
    assert "    progress: epoch 1: 30%, " in orch.run("status", str(job_id), check=True).stdout
    progress("training", 1, 640, 640)  # the pass's end clears its place
    assert orch.json("status", str(job_id))["progress"] is None
    progress("validation", 1, 128, 400)
    progress("validation", 1, 256, 400)
    assert orch.json("status", str(job_id))["progress"]["said"].startswith("epoch 1 validation: 64%, ")
    assert orch.json("status")[0]["epoch"] == "0/4 validating 64%"
    lease.record_epoch({"epoch": 1, "train_loss": 0.5, "val_loss": 0.5, "val_acc": 0.6, "images_per_s": 10.0,
                        "seconds": 1.0})
    assert orch.json("status", str(job_id))["progress"] is None  # epoch 1 is recorded: its place is old news
    listed = orch.json("status")[0]
    assert (listed["epoch"], listed["epochs_done"], listed["epochs_total"]) == ("1/4", 1, 4)  # numbers for scripts
    store.dispose()


def test_the_list_marks_a_running_job_whose_worker_stopped_answering(orch, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every worker killed: `orch status` listed its job as "running" for ever (only `orch status ID`
    told the heartbeat's age). The list marks it and says what takes it over; a live one is left alone."""
    import time

    from sqlalchemy import update

    from shared.store import Job
    from tests.orchestrator.study_builder import add_run, open_home

    store = open_home(orch.home, monkeypatch)
    stale, live = add_run(store, None, "bn", 1, 0, 1), add_run(store, None, "ln", 1, 0, 1)
    with store.session() as s:
        s.execute(update(Job).where(Job.id == stale).values(status="running", heartbeat_at=time.time() - 400))
        s.execute(update(Job).where(Job.id == live).values(status="running", heartbeat_at=time.time()))
    store.dispose()
    listed = {row["id"]: row for row in orch.json("status")}
    assert 399 < listed[stale]["heartbeat_age_s"] < 420 and listed[live]["heartbeat_age_s"] < 20
    out = orch.run("status", check=True).stdout
    assert out.count("running?") == 2  # the stale job's cell, and the note's start; the live one's cell says running
    assert "attempts_counted" not in out  # for scripts (JSON) and the notes: not a column
    assert (f"running?: job {stale} is recorded as running, but no worker has answered for 7 min (the lease is "
            in out) and "`orch worker`" in out


def test_a_scoring_shards_place_in_its_images(orch, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A shard of 20,000 images scores for two minutes on a laptop's CPU: `--wait` said "running" until
    it ended. Its process writes its place as training's does (phase "scoring"); the readers show it."""
    from shared.spec import ScoreSpec
    from shared.store import Lease
    from shared.store.scoring_runs import add_score_run
    from tests.orchestrator.study_builder import open_home
    from worker.progress import StepProgress

    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        parent, shards = add_score_run(s, ScoreSpec(checkpoint="/c/best.pt", data="/d", out="/o/p.csv"), queue="orch",
                                       source_job_id=None)
        shard_id = shards[0].id
    lease = Lease.acquire(store, shard_id, "orch-1@lab", ttl=30)
    assert lease is not None
    progress = StepProgress(lease, every_s=0.0)
    progress("decoding", None, 64, 1280)  # a first decode of a big folder: minutes before the first batch
    progress("decoding", None, 384, 1280)
    assert orch.json("status", str(shard_id))["progress"]["said"].startswith("decoding images: 30%, ")
    assert {row["id"]: row for row in orch.json("status")}[shard_id]["epoch"] == "decoding 30%"
    progress("decoding", None, 1280, 1280)
    assert orch.json("status", str(shard_id))["progress"] is None
    progress("scoring", None, 64, 1280)
    progress("scoring", None, 576, 1280)
    detail = orch.json("status", str(shard_id))
    assert detail["progress"]["said"].startswith("scoring: 45%, ") and detail["progress"]["images_per_s"] > 0
    listed = {row["id"]: row for row in orch.json("status")}
    assert listed[shard_id]["epoch"] == "scoring 45%" and listed[parent.id]["epoch"] == "0/1 shards"
    # the parent job waits in the store (queued) while its shards run: the table says it is scoring
    assert listed[parent.id]["status"] == "queued"
    assert listed[parent.id]["shards"] == {"succeeded": 0, "running": 1, "total": 1}
    table = orch.run("status", check=True).stdout
    assert [line.split("│")[3].strip() for line in table.splitlines() if line.startswith(f"│ {parent.id} ")] == ["scoring"]
    assert "      shards: 0 of 1 succeeded, 1 running" in orch.run("status", str(parent.id), check=True).stdout
    from orchestrator.progress import inside_epoch

    assert inside_epoch(detail["progress"], None, step=5) == "scoring: 45%"  # what --wait's line adds
    store.dispose()


def test_a_stopped_job_process_and_a_pending_cancel_are_said(orch, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`kill -STOP` of a job's process: the worker's heartbeat went on, and `orch status ID` showed
    "epoch 2: 30%" for ever; its last step's age is said after a minute. A job asked to cancel read
    plain "running" until its process stopped."""
    import time

    from sqlalchemy import update

    from shared.store import Job
    from tests.orchestrator.study_builder import add_run, open_home

    store = open_home(orch.home, monkeypatch)
    stuck, asked = add_run(store, None, "bn", 1, 0, 1), add_run(store, None, "ln", 1, 0, 1)
    at = {"phase": "training", "epoch": 2, "done": 192, "total": 640, "images_per_s": 7.3}
    with store.session() as s:
        s.execute(update(Job).where(Job.id == stuck).values(status="running", heartbeat_at=time.time(),
                                                           progress={**at, "at": time.time() - 300}))
        s.execute(update(Job).where(Job.id == asked).values(status="running", heartbeat_at=time.time(),
                                                           progress={**at, "at": time.time()}, cancel_requested=True))
    store.dispose()
    assert orch.json("status", str(stuck))["progress"]["said"] == "epoch 2: 30%, 7.3 images/s; its last step 5 min ago"
    assert orch.json("status", str(asked))["progress"]["said"] == "epoch 2: 30%, 7.3 images/s"  # a fresh step
    listed = {row["id"]: row for row in orch.json("status")}
    assert listed[asked]["cancel_requested"] is True and listed[stuck]["cancel_requested"] is False
    table = orch.run("status", check=True).stdout
    assert table.count("cancelling") == 1 and "running?" not in table


def test_a_width_multipliers_default_shows_as_built() -> None:
    """A width study's 1.0 cells showed an empty width_mult column beside 0.5 (1.0 is the default, so
    the spec keeps none); the report said width_mult=1."""
    from types import SimpleNamespace

    from orchestrator.commands.status import job_summary
    from shared.spec import ModelSpec, TrainSpec

    job = SimpleNamespace(id=1, kind="train", status="queued", study_id=None, progress=None, attempts=0, retried_at_attempt=0, queue="orch",
                          worker_host=None, error=None, cancel_requested=False)
    widths = {}
    for given in (None, 1.0, 0.5):
        spec = TrainSpec(model=ModelSpec(arch="mobilenet_v2", image_size=32, width_mult=given), data="/d")
        widths[given] = job_summary(job, spec, None)["width_mult"]  # type: ignore[arg-type]
    assert widths == {None: 1.0, 1.0: 1.0, 0.5: 0.5}
    resnet = TrainSpec(model=ModelSpec(arch="resnet18", image_size=32), data="/d")
    assert job_summary(job, resnet, None)["width_mult"] is None  # type: ignore[arg-type]  # no such knob: left out


def test_an_epoch_trained_again_shows_its_place() -> None:
    """Resumed with no checkpoint left, a job trained epochs 1 and 2 again under "2/8 83.00%", its place
    hidden for minutes (only the epoch after the last recorded one was shown)."""
    from types import SimpleNamespace

    from orchestrator.commands.status import job_summary
    from orchestrator.progress import inside_epoch
    from shared.spec import ModelSpec, TrainSpec

    place = {"phase": "training", "epoch": 1, "done": 256, "total": 640, "images_per_s": 85.0}
    job = SimpleNamespace(id=2, kind="train", status="running", study_id=None, progress=place, attempts=2,
                          retried_at_attempt=1, queue="orch", worker_host="w", error=None, cancel_requested=False)
    spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=32), data="/d", epochs=8)
    assert job_summary(job, spec, (2, 0.83))["epoch"] == "0/8 +40% again"  # type: ignore[arg-type]
    assert inside_epoch(place, 2) == "epoch 1 again: 40%, 85 images/s"
    assert inside_epoch({**place, "phase": "validation", "epoch": 3}, 2) == "epoch 3 validation: 40%, 85 images/s"
    assert inside_epoch({**place, "epoch": 4}, 2) is None  # ahead of what can be: not shown


def test_attention_reads_as_the_report_has_it() -> None:
    """`orch status --json` gave attention null for a plain ResNet where the report and the job's spec said
    "none" (a script filtering on "none" missed them), and no reduction: rows of se at 4 and at 16 read the
    same. The table leaves out a column of nothing but defaults, and shows one that tells rows apart."""
    from types import SimpleNamespace

    from orchestrator.commands.status import job_summary, without_defaults
    from shared.spec import ModelSpec, TrainSpec

    job = SimpleNamespace(id=1, kind="train", status="queued", study_id=None, progress=None, attempts=0, retried_at_attempt=0,
                          queue="orch", worker_host=None, error=None, cancel_requested=False)

    def row(**model: object) -> dict[str, object]:
        spec = TrainSpec(model=ModelSpec(image_size=32, **model), data="/d")  # type: ignore[arg-type]
        return job_summary(job, spec, None)  # type: ignore[arg-type]

    plain, se4, mobile = row(arch="resnet18"), row(arch="resnet18", attention="se", attention_reduction=4), row(arch="mobilenet_v2")
    assert [(r["attention"], r["attention_reduction"]) for r in (plain, se4, mobile)] == [("none", None), ("se", 4), (None, None)]
    assert "attention" not in without_defaults([plain, mobile])[0]  # nothing but the default: no column
    assert "attention_reduction" not in without_defaults([plain, row(arch="resnet18", attention="se")])[0]
    assert [r["attention_reduction"] for r in without_defaults([plain, se4])] == [None, 4]


def test_a_job_is_judged_silent_by_its_holders_lease_not_the_clis() -> None:
    """A worker started with ORCH_LEASE_TTL=120 beats every 2 s but may be away for 40 s: a CLI of the
    default 30 s (here 10 s) called it `running?` and its worker gone."""
    from orchestrator.commands.status import silent_note, table_row

    long_lease = {"id": 5, "status": "running", "heartbeat_age_s": 40.0, "lease_s": 120.0, "study": None,
                  "study_name": None, "val_acc": None}
    assert silent_note([long_lease], 10, 3) is None and table_row(long_lease, 10)["status"] == "running"
    short = {**long_lease, "id": 6, "lease_s": 20.0}
    old = {**long_lease, "id": 7, "lease_s": None}  # a lease taken by an older orch: the CLI's own TTL
    note = silent_note([long_lease, short, old], 10, 3) or ""
    assert note.startswith("running?: jobs 6, 7 are recorded as running, but no worker has answered for 40 s "
                           "(the leases are 10, 20 s)"), note


def test_a_silent_job_on_its_last_attempt_is_said_to_fail_not_resume() -> None:
    """After a job's third lost attempt, `running?` promised a takeover and a resume; the sweeper failed it."""
    from orchestrator.commands.status import heartbeat_line, silent_note

    def row(job_id: int, counted: int) -> dict[str, object]:
        return {"id": job_id, "status": "running", "heartbeat_age_s": 40.0, "attempts_counted": counted}
    assert silent_note([row(3, 2)], 10, 3) == (
        "running?: job 3 is recorded as running, but no worker has answered for 40 s (the lease is 10 s): a live "
        "worker's sweeper takes it over and resumes from the last checkpoint (`orch worker` starts one)")
    assert silent_note([row(3, 3)], 10, 3) == (
        "running?: job 3 is recorded as running, but no worker has answered for 40 s (the lease is 10 s): a live "
        "worker's sweeper fails it, whose attempts are spent (ORCH_MAX_ATTEMPTS=3; `orch retry 3` then resumes it) "
        "(`orch worker` starts one)")
    both = silent_note([row(1, 1), row(3, 3)], 10, 3) or ""
    assert "sweeper takes job 1 over and resumes from the last checkpoint, and fails job 3, whose attempts" in both
    asked = {**row(4, 3), "cancel_requested": True}  # a cancel asked before the worker went: cancelled, not failed
    assert "fails job 3, whose attempts are spent (ORCH_MAX_ATTEMPTS=3; `orch retry 3` then resumes it), and ends job 4 " \
           "cancelled, as asked" in (silent_note([row(3, 3), asked], 10, 3) or "")
    assert "fails it, its attempts being spent" in heartbeat_line(41.0, 10, last_attempt=True)
    # a cancel asked of it: the list's note said "ends it cancelled", the detail "takes the job over and it resumes"
    assert heartbeat_line(41.0, 10, last_attempt=True, cancelling=True).endswith(
        "a live worker's sweeper ends it cancelled, as `orch cancel` asked")


def test_an_ended_jobs_detail_has_its_wall_time(capsys: pytest.CaptureFixture[str]) -> None:
    """It was only a number inside the result's one-line JSON; a scoring run's parent had none at all."""
    from orchestrator.commands.status import print_detail, wall_seconds

    trained = {"id": 3, "kind": "train", "status": "succeeded", "started_at": "2026-11-30T10:00:00",
               "finished_at": "2026-11-30T10:01:40", "spec": {}, "model_info": {}, "epochs": [],
               "result": {"wall_s": 59.32}}  # a resumed run's own count, not its first start to its end
    assert wall_seconds(trained) == 59.32
    scored = {**trained, "kind": "score", "result": {"out": "p.csv"}}
    assert wall_seconds(scored) == 100.0 and wall_seconds({**scored, "finished_at": None}) is None
    print_detail(trained, 30.0, 3)
    assert "   wall time: 59.3 s\n" in capsys.readouterr().out
    print_detail({**scored, "finished_at": "2026-11-30T10:05:00"}, 30.0, 3)
    assert "   wall time: 5 min\n" in capsys.readouterr().out
    # a shard taken over scored again from its start: its own count is its last attempt's
    print_detail({**trained, "kind": "score_shard", "attempts": 2, "result": {"wall_s": 22.5}}, 30.0, 3)
    assert "   wall time: 22.5 s (100.0 s from its first start to its end, over 2 attempts)\n" in capsys.readouterr().out


def test_a_job_on_another_queue_says_which(orch, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A job submitted with --queue nobody reads stayed queued, and no status output named its queue."""
    from shared.spec import ModelSpec, TrainSpec
    from shared.store import jobs as store_jobs
    from tests.orchestrator.study_builder import open_home

    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        spec = TrainSpec(model=ModelSpec(arch="resnet18"), data="/d")
        plain, other = store_jobs.add_job(s, "train", spec).id, store_jobs.add_job(s, "train", spec, queue="nobody").id
    store.dispose()
    assert {row["id"]: row["queue"] for row in orch.json("status")} == {plain: "orch", other: "nobody"}
    table = orch.run("status", check=True).stdout
    assert "queue" in table.splitlines()[2] and "nobody" in table
    assert "       queue: nobody\n" in orch.run("status", str(other), check=True).stdout
    assert "queue:" not in orch.run("status", str(plain), check=True).stdout  # the default queue goes unsaid
