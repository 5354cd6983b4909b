"""Grid expansion for `orch submit ablation`: the cross product, validated, before anything is queued."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from orchestrator.submission import grid_specs, slow_cells_warning
from shared.errors import SpecError
from tests.conftest import Orch

BASE = {"data": "/d/train", "val": "/d/val", "model": "resnet50", "image_size": 32, "stem": None,
        "pretrained": None, "epochs": 1}


def test_grid_is_the_cross_product_of_every_list_including_seeds() -> None:
    specs = grid_specs({**BASE, "norm": "bn,ln,in", "groups": "1,8,32", "seeds": "0,1,2"})
    assert len(specs) == 27
    cells = {(s.model.norm_name, s.model.groups, s.seed) for s in specs}
    assert cells == {(n, g, seed) for n in ("bn", "ln", "in") for g in (1, 8, 32) for seed in (0, 1, 2)}
    assert len({s.spec_hash() for s in specs}) == 27


def test_repeated_values_give_one_cell_each(capsys: pytest.CaptureFixture[str]) -> None:
    specs = grid_specs({**BASE, "norm": "bn,bn", "lr": "0.01,0.010", "seeds": "0"})
    assert [(s.model.norm_name, s.lr, s.seed) for s in specs] == [("bn", 0.01, 0)]
    assert capsys.readouterr().err == ("orch: note: 3 of 4 cells repeat another (a value given twice, or one that "
                                       "is what the default builds, as --norm bn): each is queued once\n")


def test_one_unbuildable_cell_refuses_the_grid_naming_the_option() -> None:
    with pytest.raises(SpecError, match=r"^--groups: .*resnet18"):
        grid_specs({**BASE, "model": "resnet50,resnet18", "groups": "1,8", "seeds": "0"})
    with pytest.raises(SpecError, match=r"^--seeds: .*'0,x'"):
        grid_specs({**BASE, "seeds": "0,x"})


def test_cells_that_cannot_train_refuse_the_grid() -> None:
    with pytest.raises(SpecError, match=r"^--norm: in \(InstanceNorm\) would see one value per channel: resnet50 "
                                        r"at --image-size 32 with the imagenet stem ends in 1x1 maps"):
        grid_specs({**BASE, "norm": "bn,in", "stem": "imagenet"})
    # the norms offered instead are the architecture's: gn sent a MobileNet to a second refusal
    with pytest.raises(SpecError, match=r"use --stem small \(or auto\), a larger --image-size, or --norm bn, ln or gn$"):
        grid_specs({**BASE, "norm": "in", "stem": "imagenet"})
    with pytest.raises(SpecError, match=r"use --stem small \(or auto\), a larger --image-size, or --norm bn or ln$"):
        grid_specs({**BASE, "model": "mobilenet_v2", "norm": "in", "stem": "imagenet"})
    with pytest.raises(SpecError, match=r"^--batch-size: 1 with bn"):
        grid_specs({**BASE, "batch_size": "1,8", "stem": "imagenet"})
    assert len(grid_specs({**BASE, "norm": "bn,in", "batch_size": "1,8"})) == 4  # small stem: 4x4 maps


def test_new_axes_make_cells() -> None:
    specs = grid_specs({**BASE, "attention": "none,se,cbam", "seeds": "0,1"})
    assert {(s.model.attention, s.seed) for s in specs} == {(a, seed) for a in ("none", "se", "cbam") for seed in (0, 1)}
    specs = grid_specs({**BASE, "model": "shufflenet_v1", "groups": "1,3,8", "width_mult": "0.5,1.0"})
    assert len(specs) == 6 and {s.model.arch for s in specs} == {"shufflenet_v1"}


def test_slow_cells_are_named_in_one_line() -> None:
    line = slow_cells_warning(grid_specs({**BASE, "model": "mobilenet_v3_small,resnet50,resnet152", "seeds": "0,1"}))
    assert line is not None and "\n" not in line
    assert line.startswith("orch: warning: 2 of 3 models are estimated at over 4x the multiply-adds of the cheapest "
                           "(arch=mobilenet_v3_small")
    assert "arch=resnet152 (" in line and "arch=resnet50 (" in line
    # attention costs under 1%, and ShuffleNet v1 keeps its complexity across group counts: no warning
    assert slow_cells_warning(grid_specs({**BASE, "attention": "none,se,cbam"})) is None
    assert slow_cells_warning(grid_specs({**BASE, "model": "shufflenet_v1", "groups": "1,3,8"})) is None


def test_ablation_warns_on_stderr_and_still_queues(orch: Orch, synth_data: Path) -> None:
    proc = orch.run("submit", "ablation", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
                    "--image-size", "32", "--model", "shufflenet_v1,resnet152", "--json", check=True)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("orch: warning:")]
    assert len(warnings) == 1 and "arch=resnet152" in warnings[0] and "cheapest (arch=shufflenet_v1" in warnings[0]
    assert len(json.loads(proc.stdout)["job_ids"]) == 2


def test_a_study_submitted_again_after_new_fields_finds_its_cells(orch: Orch, synth_data: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A job recorded before attention and width_mult existed (its stored spec and hash lack them) is
    the same cell as today's spec with their defaults: submitting the study again queues nothing."""
    from sqlalchemy import update

    from shared.spec import TrainSpec, parse
    from shared.store import Job
    from tests.orchestrator.study_builder import open_home

    args = ("submit", "ablation", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
            "--image-size", "32", "--model", "resnet18,shufflenet_v2", "--study", "old", "--json")
    first = json.loads(orch.run(*args, check=True).stdout)["job_ids"]
    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        for job in s.query(Job).filter(Job.id.in_(first)):
            spec = dict(job.spec)
            model = {k: v for k, v in spec["model"].items() if k not in ("attention", "attention_reduction",
                                                                          "width_mult")}
            if model["arch"] == "shufflenet_v2":
                model["arch"] = "shufflenet_v2_x1_0"  # the name it had then
            old = {**spec, "model": model}
            assert parse(TrainSpec, old).model.arch in ("resnet18", "shufflenet_v2")  # still a valid spec
            s.execute(update(Job).where(Job.id == job.id).values(
                spec=old, spec_hash=hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()))
    store.dispose()
    again = json.loads(orch.run(*args, check=True).stdout)
    assert again["job_ids"] == [] and sorted(again["skipped"]) == sorted(first)


def test_wait_on_a_resubmitted_study_follows_the_cells_it_did_not_queue(orch: Orch, synth_data: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--wait` said "queued 0 of 2 cells; 2 already done or running" and exited 0 at once, while they ran."""
    import subprocess

    from sqlalchemy import update

    from shared.store import Job, JobStatus
    from tests.orchestrator.study_builder import open_home

    args = ("submit", "ablation", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
            "--image-size", "32", "--seeds", "0,1", "--study", "again")
    first = json.loads(orch.run(*args, "--json", check=True).stdout)["job_ids"]
    with pytest.raises(subprocess.TimeoutExpired):  # no worker: the queued cells do not end, and --wait waits
        orch.run(*args, "--wait", timeout=8)
    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        s.execute(update(Job).where(Job.id.in_(first)).values(status=JobStatus.succeeded))
    store.dispose()
    proc = orch.run(*args, "--wait", timeout=60)
    assert proc.returncode == 0 and "2 of 2 jobs succeeded" in proc.stderr
    assert all(f"job {i}: succeeded" in proc.stderr for i in first)


def test_retry_says_why_there_is_nothing_to_retry(orch: Orch, synth_data: Path) -> None:
    """It printed 'nothing to retry' for a queued job, without saying it was queued."""
    job = orch.json("submit", "train", "--data", str(synth_data / "train"), "--image-size", "32")["job_id"]
    out = orch.run("retry", str(job), check=True).stdout.strip()
    assert out == f"nothing to retry: only failed or cancelled jobs are (queued: {job})"


def test_cancel_of_a_job_whose_worker_is_silent_says_when_it_ends(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """`orch cancel` of a killed worker's job said "stopping" and it ended at the lease's expiry, not
    within the 15 s promised; a retry meanwhile said "nothing to retry ... (running: 16)", exit 0."""
    import time

    from sqlalchemy import update

    from shared.spec import ModelSpec, TrainSpec
    from shared.store import Job, Lease
    from shared.store import jobs as store_jobs
    from tests.orchestrator.study_builder import open_home

    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        job_id = store_jobs.add_job(s, "train", TrainSpec(model=ModelSpec(arch="resnet18"), data="/d")).id
    assert Lease.acquire(store, job_id, "orch-7@lab", ttl=30) is not None
    with store.session() as s:  # as a killed worker leaves it: running, its last beat 45 s ago
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=time.time() - 45))
    store.dispose()
    assert orch.run("cancel", str(job_id), check=True).stdout.splitlines() == [
        f"stopping (a job that ends before it stops keeps its result): {job_id}",
        f"job {job_id}: the worker is not answering; a live worker's sweeper ends it cancelled when the lease "
        "expires (ORCH_LEASE_TTL, 30 s)"]  # its worker's (ttl=30 above), not this CLI's 10 s
    assert orch.json("cancel", str(job_id))["not_answering"] == [job_id]
    assert orch.run("retry", str(job_id), check=True).stdout.strip() == (
        f"nothing to retry: only failed or cancelled jobs are (stopping after orch cancel (retry it once it has "
        f"stopped): {job_id})")


def test_retry_of_a_scoring_run_cancelled_after_its_shards_scored(orch: Orch, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`orch cancel` of a run whose shards then finished, and `orch retry` of it: the retry requeued the
    parent (it assembles from the parts) and printed 'nothing to retry ... (cancelled: 5)'."""
    from sqlalchemy import update

    from shared.spec import ScoreSpec
    from shared.store import Job
    from shared.store.scoring_runs import add_score_run
    from tests.orchestrator.study_builder import open_home

    store = open_home(orch.home, monkeypatch)
    part = tmp_path / "part-0.csv"
    part.write_text("0,1\n")
    with store.session() as s:
        parent, shards = add_score_run(s, ScoreSpec(checkpoint="/c/best.pt", data="/d", out=str(tmp_path / "p.csv")),
                                       queue="orch", source_job_id=None)
        parent_id, shard_id = parent.id, shards[0].id
    with store.session() as s:
        s.execute(update(Job).where(Job.id == shard_id).values(status="succeeded", result={"part": str(part)}))
        s.execute(update(Job).where(Job.id == parent_id).values(status="cancelled", assembly="failed"))
    store.dispose()
    out = orch.run("retry", str(parent_id), check=True).stdout.splitlines()
    assert out == [f"requeued: {parent_id}",
                   f"score job {parent_id}: every shard had scored its part; a worker assembles the CSV from them"]
    assert orch.json("retry", str(parent_id), "--json") == {"job_ids": []}  # queued now: nothing to retry
    events = [e["message"] for e in orch.json("status", str(parent_id))["events"]]
    assert events[-1] == "requeued by orch retry (cancelled after 0 attempts)"
    # a shard named alone: "requeued: 22", then cancelled a second later with no word of why
    shard = orch.run("retry", str(shard_id))
    assert shard.returncode == 2 and shard.stderr.strip() == (
        f"Error: JOB_ID: job {shard_id} is a shard of scoring run {parent_id}: `orch retry {parent_id}` requeues the "
        "run, its failed and cancelled shards with it")


def test_the_cost_warning_names_a_default_by_its_value() -> None:
    """It named the cell submitted as --width-mult 1.0 'width_mult=None' (a default is stored as None)."""
    from shared.spec import ModelSpec, TrainSpec

    specs = [TrainSpec(model=ModelSpec(arch="shufflenet_v1", groups=g, width_mult=w, image_size=32, num_classes=2),
                       data="/d") for g in (1, 3, 8) for w in (0.5, 1.0)]
    warning = slow_cells_warning(specs)
    assert warning is not None and "groups=1 width_mult=1.0 (" in warning and "None" not in warning


def test_an_extended_studys_options_hold_every_value_submitted() -> None:
    """The HTML's 'study as submitted' kept the first submission's width_mult 0.5,1.0 after 1.4 was added."""
    from orchestrator.submission import merged_grid

    first = {"width_mult": "0.5,1.0", "epochs": 2, "data": "/d"}
    second = {"width_mult": "0.5,1.0,1.4", "epochs": 2, "data": "/d", "seeds": "0,1"}
    assert merged_grid(first, second) == {"width_mult": "0.5,1.0,1.4", "epochs": 2, "data": "/d", "seeds": "0,1",
                                          "_submissions": [first, second]}  # and each as submitted
    assert merged_grid(first, {"width_mult": "1.4", "epochs": 3, "data": "/d"})["width_mult"] == "0.5,1.0,1.4"
    assert merged_grid({"epochs": 2}, {"epochs": 3})["epochs"] == "2,3"
    third = merged_grid(merged_grid(first, second), {"attention": "cbam", "pretrained": "/w.pt"})
    assert third["_submissions"] == [first, second, {"attention": "cbam", "pretrained": "/w.pt"}]


def test_an_extended_studys_page_shows_each_submission() -> None:
    """The page showed one merged grid, never submitted: none,se without --pretrained and cbam with it
    read as all three with it."""
    from orchestrator.analysis.html import _submitted
    from orchestrator.submission import merged_grid

    page = _submitted(merged_grid({"attention": "none,se"}, {"attention": "cbam", "pretrained": "/w.pt"}))
    assert page.count("<pre>") == 2 and "submitted 2 times" in page
    assert page.index("none,se") < page.index("/w.pt")
    single = _submitted({"attention": "none,se"})
    assert single.count("<pre>") == 1 and "The study as submitted:" in single


def test_a_value_that_is_the_default_is_the_same_cell(orch: Orch, synth_data: Path) -> None:
    """`--norm bn` (what no --norm builds) after no --norm queued a second job, and the report showed
    two configs both named norm=bn; the same for a width per group the group count gives."""
    base = ("submit", "ablation", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
            "--image-size", "32", "--model", "resnet50", "--groups", "1,8", "--study", "same", "--json")
    first = json.loads(orch.run(*base, check=True).stdout)["job_ids"]
    again = json.loads(orch.run(*base, "--norm", "bn", "--attention-reduction", "8", check=True).stdout)
    assert again["job_ids"] == [] and sorted(again["skipped"]) == sorted(first)
    wider = json.loads(orch.run(*base[:-5], "--groups", "8", "--width-per-group", "14", "--study", "same",
                                "--json", check=True).stdout)  # 8x14d is the Table 2 width for 8 groups
    assert wider["job_ids"] == [] and len(wider["skipped"]) == 1


def test_extending_a_study_with_other_settings_says_so(orch: Orch, synth_data: Path) -> None:
    """--epochs 1 into an --epochs 2 study made a one-seed config that then ranked first, silently."""
    base = ("submit", "ablation", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
            "--image-size", "32", "--norm", "bn,ln", "--study", "ext", "--json")
    orch.run(*base, "--epochs", "2", check=True)
    more_seeds = orch.run(*base, "--epochs", "2", "--seeds", "0,1", check=True)
    assert "other settings" not in more_seeds.stderr
    shorter = orch.run(*base, "--epochs", "1", check=True)
    assert "orch: note: study ext was submitted with other settings (--epochs 2 -> 1): these cells are other " \
           "configs than its earlier ones" in shorter.stderr.splitlines()
    more_norms = orch.run(*base[:-5], "--norm", "gn", "--epochs", "2", "--study", "ext", check=True)
    assert "another grid" not in more_norms.stderr  # one axis given new values extends the study
    # another model and another axis into it: the report compared resnet18 norms with resnet50 groups
    other = orch.run(*base[:-5], "--model", "resnet50", "--groups", "1,8", "--epochs", "2", "--study", "ext", check=True)
    assert ("orch: note: study ext was submitted as --norm bn,ln,gn --seeds 0,1; these cells (--groups 1,8 --model "
            "resnet50) differ in groups, model at once: another grid") in other.stderr, other.stderr


def test_validating_on_the_training_folder_is_said(orch: Orch, synth_data: Path) -> None:
    """--val the same folder as --data was queued without a word: every accuracy the report then
    shows is on images the model trained on."""
    train = str(synth_data / "train")
    proc = orch.run("submit", "train", "--data", train, "--val", train + "/", "--image-size", "32", "--epochs", "1",
                    check=True)
    assert "orch: note: --val is the training folder: validation accuracy will be measured on images the model " \
           "trains on" in proc.stderr
    other = orch.run("submit", "train", "--data", train, "--val", str(synth_data / "val"), "--image-size", "32",
                     "--epochs", "1", check=True)
    assert "--val is the training folder" not in other.stderr


def test_the_default_size_upsampling_small_images_is_said(orch: Orch, synth_data: Path) -> None:
    """The spec's default 224 px on 32-px images is some 49x the compute a step for nothing the images
    hold: a walk queued 10 epochs of it with an example from --help, and nothing said so."""
    train = str(synth_data / "train")
    said = orch.run("submit", "train", "--data", train, "--epochs", "1", check=True).stderr
    assert ("orch: note: no --image-size: training at the default 224 px, 7x the side of "
            f"{train}'s images (32 px), about 49x the compute a step; --image-size 32 trains at their size") in said
    assert orch.json("status", "1")["spec"]["model"]["image_size"] == 224  # said, not changed
    assert "image-size" not in orch.run("submit", "train", "--data", train, "--image-size", "32", check=True).stderr
    grid = orch.run("submit", "ablation", "--data", train, "--norm", "bn,ln", check=True).stderr
    assert grid.count("no --image-size") == 1  # one note for the grid, not one per cell


def test_submit_says_what_of_the_data_it_will_not_use(orch: Orch, tmp_path: Path) -> None:
    """From a walk with messy data: WebP and BMP files were left out without a word (20 of 34 images
    trained); a class of one image had no validation image, unsaid; --val-fraction beside --val was
    ignored, unsaid; and a folder too small to split failed in the worker, after the queue."""
    from tests.shared.data_helpers import write_image

    data = tmp_path / "data"
    for name in ("cat/1.jpg", "cat/2.jpg", "cat/3.png", "dog/4.jpg", "dog/5.jpg", "solo/6.jpg"):
        write_image(data / name)
    (data / "cat" / "7.webp").write_bytes(b"RIFF")
    (data / "dog" / "8.bmp").write_bytes(b"BM")
    write_image(data / "dog" / ".9.jpg")  # hidden: skipped, as a scored folder's row was, unsaid
    (data / "dog" / "._4.jpg").write_bytes(b"\0\x05\x16\x07")  # macOS's metadata beside 4.jpg: no image, not said
    common = ("submit", "train", "--data", str(data), "--image-size", "32", "--epochs", "1")
    queued = orch.run(*common, check=True)
    assert (f"orch: note: 2 files in {data} are not read (.bmp, .webp; e.g. cat/7.webp): orch reads JPEG and PNG; "
            f"convert them to use them; 1 hidden image file in {data} is not read (e.g. dog/.9.jpg): names starting "
            "with '.' are skipped; rename it to use it") in queued.stderr
    assert ("orch: note: --data: class solo has one image, which it trains on: the validation images split off hold "
            "none of it") in queued.stderr
    ignored = orch.run(*common, "--val", str(data), "--val-fraction", "0.3", check=True)
    assert f"orch: note: --val-fraction 0.3 is not used: --val {data} is the validation set" in ignored.stderr
    tiny = tmp_path / "tiny"
    for name in ("a/0.jpg", "b/0.jpg"):
        write_image(tiny / name)
    refused = orch.run("submit", "train", "--data", str(tiny), "--image-size", "32")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"Error: --data: {tiny}: too few images to split off a validation fraction of 0.2 (a class needs 2 images or "
        "more to be on both sides)")
    init = orch.run("init", str(data), check=True)
    assert f"orch: note: 2 files in {data} are not read" in init.stderr


def test_retry_of_a_scoring_run_whose_folder_changed_is_refused(orch: Orch, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run failed on a corrupt image; the image fixed, `orch retry` said "requeued" and the run failed
    again: "--data: ... changed since the run was submitted". The retry says so itself, and requeues nothing."""
    from sqlalchemy import update

    from shared.data import scan
    from shared.scoring.inputs import pin
    from shared.spec import ScoreSpec
    from shared.store import Job
    from shared.store.scoring_runs import add_score_run
    from tests.orchestrator.study_builder import open_home
    from tests.shared.data_helpers import write_image

    folder = tmp_path / "test"
    for i in range(3):
        write_image(folder / f"{i}.jpg")
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    spec = pin(ScoreSpec(checkpoint=str(checkpoint), data=str(folder), out=str(tmp_path / "p.csv")), scan(folder))
    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        parent, _ = add_score_run(s, spec, queue="orch", source_job_id=None)
        parent_id = parent.id
    with store.session() as s:
        s.execute(update(Job).where(Job.id == parent_id).values(status="failed", error="1 corrupt image: 2.jpg"))
    store.dispose()
    write_image(folder / "2.jpg", size=(24, 24))  # fixed: another file than the one pinned
    refused = orch.run("retry", str(parent_id))
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"Error: JOB_ID: scoring run {parent_id} cannot run again: --data: {folder} changed since the run was "
        "submitted (file names or sizes differ); the run is refused, submit it again")
    assert orch.json("status", str(parent_id))["status"] == "failed"


def test_retry_of_a_training_job_whose_folder_is_gone_is_refused(orch: Orch, synth_data: Path, tmp_path: Path) -> None:
    """From the upgrade walk: `orch retry 8` of a job that failed with "no such folder" said "requeued: 8",
    and the job failed again with the same cause."""
    import shutil
    import socket

    data = tmp_path / "doomed"
    shutil.copytree(synth_data / "train", data)
    job = orch.json("submit", "train", "--data", str(data), "--val", str(synth_data / "val"), "--image-size", "32",
                    "--epochs", "1")["job_id"]
    orch.run("cancel", str(job), check=True)
    shutil.rmtree(data)
    refused = orch.run("retry", str(job))
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"Error: JOB_ID: job {job} cannot run again: --data {data}: no such folder on {socket.gethostname()}; "
        "restore it, or submit the job again with another folder"), refused.stderr
    assert orch.json("status", str(job))["status"] == "cancelled"
    shutil.copytree(synth_data / "train", data)  # restored: the retry requeues it
    assert orch.json("retry", str(job)) == {"job_ids": [job]}
