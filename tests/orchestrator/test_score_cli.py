"""`orch submit score` at submit time: what it records and sends, and every input it refuses (exit 2).

No worker and no torch: the training jobs and their best checkpoints are rows written straight
into the store, as a finished `orch submit train` leaves them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from shared.config import load_settings
from shared.spec import ModelSpec, TrainSpec
from shared.store import Checkpoint, Job, JobStatus, Study, open_store
from shared.store import jobs as store_jobs
from tests.conftest import Orch


def cli(orch: Orch, *args: str) -> Any:
    """`orch ARGS --json` in-process (the same command code as the subprocess, without its start-up)."""
    from click.testing import CliRunner

    from orchestrator.cli import main

    result = CliRunner().invoke(main, [*args, "--json"], env=orch.env)
    assert result.exit_code == 0, f"orch {' '.join(args)}: {result.output}"
    return json.loads(result.stdout)


def numbered(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"\xff\xd8")  # submit checks names, not pixels
    return folder


def add_trained(orch: Orch, tmp_path: Path, val_acc: float, study_id: int | None = None,
                status: str = JobStatus.succeeded) -> int:
    store = open_store(load_settings(orch.home))
    spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=32), data=str(tmp_path), seed=int(val_acc * 100))
    with store.session() as s:
        job = store_jobs.add_job(s, "train", spec, study_id=study_id)
        job.status, job.result = status, {"classes": ["cat", "dog"], "best_val_acc": val_acc}
        best = tmp_path / f"job{job.id}-best.pt"
        best.write_bytes(b"weights")
        s.add(Checkpoint(job_id=job.id, tag="best", path=str(best), epoch=1, val_acc=val_acc))
        job_id = job.id
    store.dispose()
    return job_id


def add_study(orch: Orch, name: str) -> int:
    store = open_store(load_settings(orch.home))
    with store.session() as s:
        study = Study(name=name, grid={})
        s.add(study)
        s.flush()
        study_id = study.id
    store.dispose()
    return study_id


@pytest.fixture
def setup(orch: Orch, tmp_path: Path) -> tuple[Orch, dict[str, str]]:
    job_id = add_trained(orch, tmp_path, 0.8)
    test = numbered(tmp_path / "test", [f"{i}.jpg" for i in range(12)])
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(12)))
    (tmp_path / "labels3.csv").write_text("".join(f"{i},{i % 3}\n" for i in range(12)))
    (tmp_path / "swapped.csv").write_text("label,id\n" + "".join(f"{i % 2},{i}\n" for i in range(12)))
    (tmp_path / "twice.csv").write_text("0,1\n1,0\n0,0\n")
    (tmp_path / "wide.csv").write_text("0,1,cat\n")
    (tmp_path / "only_one.csv").write_text("".join(f"{i},1\n" for i in range(12)))  # a test set of dogs only
    numbered(tmp_path / "empty", [])
    for name in ("cat/1.jpg", "cat/2.jpg", "dog/3.jpg", "dog/4.jpg"):  # labelled by its layout: ids 0..3 by position
        (tmp_path / "labelled" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "labelled" / name).write_bytes(b"\xff\xd8")
    (tmp_path / "all_cats.csv").write_text("0,0\n1,0\n2,0\n3,0\n")
    (tmp_path / "as_named.csv").write_text("0,0\n1,0\n2,1\n3,1\n")
    (tmp_path / "as_named_from_1.csv").write_text("1,0\n2,0\n3,1\n4,1\n")
    numbered(tmp_path / "named", ["0.jpg", "1.jpg", "cover.jpg"])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "shifted.csv").write_text("".join(f"{i + 1},{i % 2}\n" for i in range(12)))
    running = add_trained(orch, tmp_path, 0.9, status=JobStatus.running)
    deleted = add_trained(orch, tmp_path, 0.7)
    (tmp_path / f"job{deleted}-best.pt").unlink()
    (tmp_path / "other-host").mkdir()
    elsewhere = add_trained(orch, tmp_path / "other-host", 0.6)  # in a folder this host does not have
    shutil.rmtree(tmp_path / "other-host")
    return orch, {"job": str(job_id), "running": str(running), "elsewhere": str(elsewhere), "deleted": str(deleted),
                  "test": str(test), "tmp": str(tmp_path)}


def test_submit_records_a_parent_and_its_shards_and_sends_only_the_shards(setup: tuple[Orch, dict[str, str]]) -> None:
    orch, f = setup
    ids = cli(orch, "submit", "score", "--job", f["job"], "--data", f["test"], "--out", f"{f['tmp']}/p.csv",
                    "--labels", f"{f['tmp']}/labels.csv", "--shards", "3", "--probs")
    assert set(ids) == {"job_id", "shard_job_ids"} and len(ids["shard_job_ids"]) == 3
    parent = cli(orch, "status", str(ids["job_id"]))
    assert parent["kind"] == "score" and parent["status"] == "queued" and parent["source_job_id"] == int(f["job"])
    assert parent["spec"]["checkpoint"].endswith(f"job{f['job']}-best.pt") and parent["spec"]["probs"] is True
    # the inputs are pinned: the checkpoint's bytes and the folder's 12 files, for every shard to check
    pins = parent["spec"]["inputs"]
    assert pins["checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest() and pins["files"] == 12
    assert parent["assembly"] == "waiting"
    for shard_id in ids["shard_job_ids"]:
        shard = cli(orch, "status", str(shard_id))
        assert (shard["kind"], shard["parent_id"], shard["spec"]) == ("score_shard", ids["job_id"], parent["spec"])
    sent = [json.loads(p.read_text()) for p in (orch.home / "broker" / "queue").iterdir()]
    assert sorted(m["headers"]["task"] for m in sent) == ["orch.score_shard"] * 3
    # the parent stays queued while its shards run; status shows how many are done
    assert parent["epoch"] == "0/3 shards"
    store = open_store(load_settings(orch.home))
    with store.session() as s:
        s.get(Job, ids["shard_job_ids"][1]).status = JobStatus.succeeded
    store.dispose()
    listed = {row["id"]: row for row in cli(orch, "status")}
    assert listed[ids["job_id"]]["epoch"] == "1/3 shards" and listed[ids["shard_job_ids"][0]]["epoch"] is None


def test_best_of_picks_the_best_succeeded_job_of_the_study(setup: tuple[Orch, dict[str, str]], tmp_path: Path) -> None:
    orch, f = setup
    study = add_study(orch, "norms")
    add_trained(orch, tmp_path, 0.6, study)
    best = add_trained(orch, tmp_path, 0.7, study)
    add_trained(orch, tmp_path, 0.95, study, status=JobStatus.failed)  # no result a user would trust... yet
    for key in (str(study), "norms"):
        ids = cli(orch, "submit", "score", "--best-of", key, "--data", f["test"], "--out", f"{f['tmp']}/b.csv")
        assert cli(orch, "status", str(ids["job_id"]))["source_job_id"] == best
    said = orch.run("submit", "score", "--best-of", "norms", "--data", f["test"], "--out", f"{f['tmp']}/c.csv").stderr
    assert f"orch: --best-of norms: job {best} (the best val_acc of its succeeded jobs)" in said.splitlines()


BAD = [
    ("no source", [], "exactly one of --job"),
    ("two sources", ["--job", "{job}", "--best-of", "1"], "exactly one of --job"),
    ("unknown job", ["--job", "999"], "--job: no training job 999"),
    ("running job", ["--job", "{running}"], "--job: job {running} is running"),
    ("unknown study", ["--best-of", "nope"], "--best-of: no study nope"),
    ("not a checkpoint", ["--checkpoint", "{tmp}/bad.pt"], "--checkpoint"),
    ("labels class count", ["--job", "{job}", "--labels", "{tmp}/labels3.csv"],
     "--labels: id 2 has class index 2, but the checkpoint has 2 classes (0..1: cat, dog)"),
    ("labels header", ["--job", "{job}", "--labels", "{tmp}/swapped.csv"], "the header is 'label,id'; expected id,label"),
    ("labels id twice", ["--job", "{job}", "--labels", "{tmp}/twice.csv"], "id 0 has label 1 on line 1 and 0 on line 3"),
    ("labels third column", ["--job", "{job}", "--labels", "{tmp}/wide.csv"], "bad line 1 '0,1,cat'"),
    ("out over the labels", ["--job", "{job}", "--labels", "{tmp}/labels.csv", "--out", "{tmp}/labels.csv"],
     "--out: {tmp}/labels.csv is the --labels file"),
    ("out over an image", ["--job", "{job}", "--out", "{tmp}/test/3.jpg"], "is an image's name"),
    ("empty folder", ["--job", "{job}", "--data", "{tmp}/empty"], "Error: --data: {tmp}/empty: no JPEG or PNG images"),
    ("non-numeric name", ["--job", "{job}", "--data", "{tmp}/named"], "--data: {tmp}/named: cover.jpg is not a numbered"),
    ("missing folder", ["--job", "{job}", "--data", "{tmp}/nope"], "--data: no such folder"),
    ("too many shards", ["--job", "{job}", "--shards", "13"], "--shards: 13 is more than the 12 images"),
    ("zero shards", ["--job", "{job}", "--shards", "0"], "--shards"),
    ("zero batch", ["--job", "{job}", "--batch-size", "0"], "--batch-size"),
    ("out folder missing", ["--job", "{job}", "--out", "{tmp}/no/p.csv"], "--out: no such folder"),
    ("out is a folder", ["--job", "{job}", "--out", "{tmp}"], "--out"),
    ("labels shifted by one", ["--job", "{job}", "--labels", "{tmp}/shifted.csv"],
     "--labels: its ids are the folder's shifted by +1 (1..12 against 0..11"),
    ("labels numbered from 1 on a labelled folder", ["--job", "{job}", "--data", "{tmp}/labelled", "--labels",
                                                     "{tmp}/as_named_from_1.csv"], "its ids are the folder's shifted by +1"),
    ("labels given a folder", ["--job", "{job}", "--labels", "{tmp}/test"], "--labels: {tmp}/test is a folder, not a file"),
    # another folder's CSV, or one that says cat of dog/3.jpg: it scored 100% and became the test accuracy
    ("labels against the folder's own", ["--job", "{job}", "--data", "{tmp}/labelled", "--labels", "{tmp}/all_cats.csv"],
     "--labels: contradicts the folder's own labels on 2 of 4 images (e.g. id 2, dog/3.jpg: the folder says dog (1), "
     "the CSV 0)"),
    # a worker whose ORCH_ARTIFACTS this host does not see: it said "job N has no best checkpoint"
    ("best checkpoint on another host", ["--job", "{elsewhere}"], "--job: job {elsewhere}'s best checkpoint "
                                                                 "{tmp}/other-host/job{elsewhere}-best.pt is not on this host"),
    # its folder is here, the file is not: it blamed a lab's hosts, in embedded mode
    ("best checkpoint deleted", ["--job", "{deleted}"], "--job: job {deleted}'s best checkpoint {tmp}/job{deleted}-best.pt "
                                                        "is missing (deleted or moved?)"),
    ("a study and a job", ["--study", "1", "--job", "{job}"], "exactly one of --job ID, --checkpoint FILE, --best-of "
                                                              "STUDY, --study STUDY"),
    ("again without a study", ["--job", "{job}", "--again"], "--again: only with --study"),
    ("unknown study to score", ["--study", "nope"], "--study: no study with id or name 'nope'"),
]


def test_bad_input_exits_2_with_one_line_and_records_nothing(setup: tuple[Orch, dict[str, str]]) -> None:
    from click.testing import CliRunner

    from orchestrator.cli import main

    orch, f = setup
    before = cli(orch, "status")
    runner = CliRunner()  # in-process: the same command and error path as `orch`, without 15 interpreter starts
    failures = []
    for name, extra, fragment in BAD:
        base = {"--data": f["test"], "--out": f"{f['tmp']}/p.csv"}  # each given once: twice is refused
        args = ["submit", "score", *[a for k, v in base.items() if k not in extra for a in (k, v)],
                *[a.format(**f) for a in extra]]
        result = runner.invoke(main, args, env=orch.env)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        clean_exit = result.exception is None or isinstance(result.exception, SystemExit)
        if not (result.exit_code == 2 and len(lines) == 1 and fragment.format(**f) in lines[0] and clean_exit):
            failures.append(f"{name}: rc={result.exit_code} stderr={result.stderr!r} exc={result.exception!r}")
    assert not failures, "\n".join(failures)
    assert cli(orch, "status") == before
    queue = orch.home / "broker" / "queue"
    assert not queue.exists() or not list(queue.iterdir())  # every check runs before the broker is touched


def test_wait_only_reads_the_store(setup: tuple[Orch, dict[str, str]]) -> None:
    """A shard that died failed (as its worker records it): --wait reports the run failed and exits,
    and leaves the parent to the protocol (the worker's sweeper fails it), writing nothing."""
    from orchestrator.commands.score import wait_for_score
    from orchestrator.context import CliState

    orch, f = setup
    ids = cli(orch, "submit", "score", "--job", f["job"], "--data", f["test"], "--out", f"{f['tmp']}/w.csv",
              "--shards", "2")
    parent, shards = ids["job_id"], ids["shard_job_ids"]
    store = open_store(load_settings(orch.home))
    with store.session() as s:
        for shard, status in zip(shards, (JobStatus.failed, JobStatus.succeeded), strict=True):
            s.get(Job, shard).status, s.get(Job, shard).error = status, "job process died with SIGKILL"
    before = cli(orch, "status", str(parent))
    state = CliState(str(orch.home))
    assert wait_for_score(state, parent, shards) is False
    after = cli(orch, "status", str(parent))
    assert after == before and after["status"] == "queued" and after["assembly"] == "waiting"
    state.store.dispose()
    store.dispose()


def test_scoring_a_jobs_own_training_or_validation_folder_says_it_is_no_test(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The helper's walk-through scored job 2's training folder and the report showed it as test_acc."""
    from orchestrator.commands.score import warn_if_trained_on
    from orchestrator.context import CliState
    from tests.orchestrator.study_builder import add_run, open_home

    store = open_home(tmp_path / "home", monkeypatch)
    job_id = add_run(store, None, "bn", 1, 0, 1)  # its spec: data /data/train, val /data/val
    store.dispose()
    state = CliState(str(tmp_path / "home"))
    for folder, role in (("/data/train", "training"), ("/data/val", "validation"), ("/data/test", None)):
        assert warn_if_trained_on(state, job_id, folder) == (role is not None)
        err = capsys.readouterr().err
        assert (f"is job {job_id}'s {role} folder" in err) if role else err == ""


def test_labels_of_some_classes_only_are_accepted(setup: tuple[Orch, dict[str, str]]) -> None:
    """A test set of one class was refused ("the labels have 2 classes") while one of classes 0 and 2
    of three passed: the class count was read as the largest index + 1."""
    orch, f = setup
    ids = cli(orch, "submit", "score", "--job", f["job"], "--data", f["test"], "--labels", f"{f['tmp']}/only_one.csv",
              "--out", f"{f['tmp']}/dogs.csv")
    assert ids["job_id"] > 0 and len(ids["shard_job_ids"]) == 1


def test_labels_that_say_what_a_labelled_folder_says_are_accepted(setup: tuple[Orch, dict[str, str]]) -> None:
    orch, f = setup
    ids = cli(orch, "submit", "score", "--job", f["job"], "--data", f"{f['tmp']}/labelled", "--labels",
              f"{f['tmp']}/as_named.csv", "--out", f"{f['tmp']}/named.csv")
    assert ids["job_id"] > 0


def test_the_wait_line_says_what_the_accuracy_stands_on_and_what_ran() -> None:
    from orchestrator.commands.score import INT8_SAID, score_line

    assert score_line({"n": 1}) == "1 row"
    assert score_line({"n": 100, "accuracy": 0.56, "labelled": 50, "not_test_acc": "not every image labelled"}) == \
        "100 rows; accuracy 56.00% (50 of 100 labelled); not the job's test_acc in reports: not every image labelled"
    assert score_line({"n": 100, "accuracy": 0.55, "labelled": 100, "precision": "fp32",
                       "int8_fallback": "int8 agreed with fp32 on 50.0%"}) == \
        "100 rows; ran fp32, not int8: int8 agreed with fp32 on 50.0%; accuracy 55.00%"
    # what ran, every time: int8 silently gave 69% where the checkpoint (fp32) gave 71%
    assert score_line({"n": 100, "accuracy": 0.69, "labelled": 100, "precision": "int8"}) == \
        f"100 rows; scored in int8{INT8_SAID}; accuracy 69.00%"
    assert score_line({"n": 100, "precision": "bf16"}) == "100 rows; scored in bf16"


def test_ctrl_c_of_a_score_wait_names_the_scoring_run(setup: tuple[Orch, dict[str, str]]) -> None:
    """It named the shard job it was following (`orch cancel 28`), not the run the user submitted (27)."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO, with_ctrl_c

    orch, f = setup
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "submit", "score", "--job", f["job"], "--data",
                             f["test"], "--out", f"{f['tmp']}/p.csv", "--wait"], env=orch.env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=with_ctrl_c)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(row["kind"] == "score" for row in cli(orch, "status")):
        time.sleep(0.3)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    parent = next(row["id"] for row in cli(orch, "status") if row["kind"] == "score")
    assert proc.returncode == 130, err
    assert f"`orch status {parent}` follows it, `orch cancel {parent}` stops it" in err, err


def test_scoring_a_job_with_a_test_accuracy_says_the_report_will_show_the_new_one(
        setup: tuple[Orch, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A sanity score of 2 images replaced the report's 59.50% on 200 with 100%, without a word."""
    from tests.orchestrator.study_builder import add_score, open_home

    orch, f = setup
    args = ["submit", "score", "--job", f["job"], "--data", f["test"], "--out", f"{f['tmp']}/again.csv"]
    first = orch.run(*args, "--labels", f"{f['tmp']}/labels.csv", check=True)
    assert "latest test accuracy" not in first.stderr  # none yet
    store = open_home(orch.home, monkeypatch)
    add_score(store, int(f["job"]), 0.595)  # 40 images, into /out/JOB.csv
    store.dispose()
    again = orch.run(*args, "--labels", f"{f['tmp']}/labels.csv", check=True)
    assert (f"orch: note: reports show job {f['job']}'s latest test accuracy: 59.50% on 40 images (/out/{f['job']}.csv) "
            "until this run of 12 images ends, then this run's where every image is labelled") in again.stderr, again.stderr
    assert "latest test accuracy" not in orch.run(*args, check=True).stderr  # unlabelled: no test accuracy to replace


def test_scoring_a_cancelled_job_says_it_stopped_part_way(setup: tuple[Orch, dict[str, str]], tmp_path: Path) -> None:
    """A job cancelled after epoch 1 of 2 was scored as if it had trained, without a word."""
    orch, f = setup
    cancelled = add_trained(orch, tmp_path, 0.6, status=JobStatus.cancelled)
    proc = orch.run("submit", "score", "--job", str(cancelled), "--data", f["test"], "--out", f"{f['tmp']}/c.csv",
                    check=True)
    assert (f"orch: note: job {cancelled} is cancelled: its best checkpoint is of the epochs it finished, not of the "
            f"whole run (`orch retry {cancelled}` resumes it)") in proc.stderr, proc.stderr
    assert "is cancelled" not in orch.run("submit", "score", "--job", f["job"], "--data", f["test"], "--out",
                                          f"{f['tmp']}/d.csv", check=True).stderr


def test_a_scoring_runs_id_where_a_training_job_is_wanted_names_the_job_it_scored(
        setup: tuple[Orch, dict[str, str]]) -> None:
    """`submit score --job 15` of a scoring run said "no training job 15": true, and no help to find the id to give."""
    orch, f = setup
    ids = cli(orch, "submit", "score", "--job", f["job"], "--data", f["test"], "--out", f"{f['tmp']}/p.csv")
    run, shard = ids["job_id"], ids["shard_job_ids"][0]
    for given, what in ((run, "a scoring run"), (shard, f"a shard of scoring run {run}")):
        said = f"--job: job {given} is {what} that scored training job {f['job']}, not a training job; "
        for command, fix in (
                (["submit", "score", "--job", str(given), "--data", f["test"], "--out", f"{f['tmp']}/q.csv"],
                 f"give {f['job']}"),
                (["report", "--job", str(given)], f"give {f['job']}"),  # "no training job with recorded epochs"
                (["report", "--job", f"{f['job']},{given}"], f"drop {given}")):  # "give 1" of a listed 1
            proc = orch.run(*command)
            assert proc.returncode == 2 and proc.stderr.splitlines() == [f"Error: {said}{fix}"], proc.stderr


def test_a_checkpoint_written_over_since_its_job_wrote_it_is_refused(setup: tuple[Orch, dict[str, str]],
                                                                     tmp_path: Path) -> None:
    """From the scripting walk: a second store (ORCH_DATABASE_URL changed, ORCH_HOME kept) numbered its jobs
    from 1 too, wrote its job 1's checkpoints over this store's, and `submit score --job 1` scored the
    other model as job 1's without a word. The store recorded each file's sha256 as it was written."""
    import hashlib

    from sqlalchemy import update

    orch, f = setup
    (tmp_path / "rec").mkdir()
    job = add_trained(orch, tmp_path / "rec", 0.75)
    best = tmp_path / "rec" / f"job{job}-best.pt"
    store = open_store(load_settings(orch.home))
    with store.session() as s:
        s.execute(update(Checkpoint).where(Checkpoint.job_id == job)
                  .values(digest=hashlib.sha256(best.read_bytes()).hexdigest()))
    store.dispose()
    args = ["--data", f["test"], "--out", f"{f['tmp']}/w.csv"]
    assert orch.run("submit", "score", "--job", str(job), *args).returncode == 0  # the file it wrote
    best.write_bytes(b"another store's weights")
    found, recorded = hashlib.sha256(best.read_bytes()).hexdigest(), hashlib.sha256(b"weights").hexdigest()
    for option, value in (("--job", str(job)), ("--checkpoint", str(best))):
        refused = orch.run("submit", "score", option, value, *args)
        assert refused.returncode == 2 and refused.stderr.splitlines() == [
            f"Error: {option}: {best} is not the file job {job} wrote (sha256 {found[:12]}, recorded {recorded[:12]}): "
            f"something wrote over it, such as another store's job {job} where two stores share one ORCH_ARTIFACTS "
            "folder; the run is refused"], refused.stderr


def test_a_study_scores_each_succeeded_job_into_a_folder(setup: tuple[Orch, dict[str, str]], tmp_path: Path) -> None:
    """`--study`: one scoring run per succeeded job, `--out` a folder of <job id>.csv; a job that is not
    succeeded is named and left out; a missing checkpoint refuses the whole study, nothing queued."""
    from click.testing import CliRunner

    from orchestrator.cli import main

    orch, f = setup
    study = add_study(orch, "seeds")
    jobs = [add_trained(orch, tmp_path, acc, study) for acc in (0.61, 0.62)]
    failed = add_trained(orch, tmp_path, 0.63, study, status=JobStatus.failed)
    out = tmp_path / "preds"
    args = ["submit", "score", "--study", "seeds", "--data", f["test"], "--labels", f"{f['tmp']}/labels.csv"]
    refused = orch.run(*args, "--out", str(tmp_path / "p.csv"))
    assert refused.returncode == 2 and "--out: with --study, a folder for one CSV per job" in refused.stderr
    queued = orch.run(*args, "--out", str(out), "--json", check=True)
    assert f"orch: note: study seeds: not scored, not succeeded: jobs {failed} (failed)" in queued.stderr
    runs = json.loads(queued.stdout)["runs"]
    assert [r["source_job_id"] for r in runs] == jobs and all(r["out"] == str(out / f"{j}.csv") for r, j in zip(runs, jobs, strict=True))
    for run, job in zip(runs, jobs, strict=True):
        parent = cli(orch, "status", str(run["job_id"]))
        assert parent["source_job_id"] == job and parent["spec"]["checkpoint"].endswith(f"job{job}-best.pt")
    # a third job whose checkpoint is gone: refused before anything is queued
    gone = add_trained(orch, tmp_path, 0.64, study)
    (tmp_path / f"job{gone}-best.pt").unlink()
    before = cli(orch, "status")
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--again"], env=orch.env)
    assert result.exit_code == 2 and f"--study: job {gone}'s best checkpoint" in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("; nothing was queued") and cli(orch, "status") == before
