"""Scoring end to end: a real worker trains a model, then scores the numbered test folder with it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Orch

pytestmark = pytest.mark.slow


def submit_score(orch: Orch, *args: str, said: str = "") -> tuple[int, dict[str, int | list[int]]]:
    """`said`: a line --wait must print on stderr."""
    proc = orch.run("submit", "score", *args, "--wait", "--json", timeout=300)
    assert said in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout.splitlines()[0]) if proc.stdout else {}


def train_one(orch: Orch, data: Path) -> int:
    trained = orch.run("submit", "train", "--data", str(data / "train"), "--val", str(data / "val"),
                       "--model", "resnet18", "--image-size", "32", "--epochs", "1", "--batch-size", "32",
                       "--wait", "--json", timeout=300)
    assert trained.returncode == 0, trained.stderr
    return int(json.loads(trained.stdout.splitlines()[0])["job_id"])


def test_score_a_trained_job(orch: Orch, synth_data: Path, tmp_path: Path) -> None:
    worker = orch.start_worker()
    job = train_one(orch, synth_data)
    test, labels = str(synth_data / "test"), str(synth_data / "test_labels.csv")

    rc, one = submit_score(orch, "--job", str(job), "--data", test, "--out", str(tmp_path / "one.csv"),
                           "--labels", labels)
    assert rc == 0, worker.output()[-3000:]
    lines = (tmp_path / "one.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in lines] == list(range(40))  # numeric order, no header
    assert all(line.split(",")[1] in ("0", "1") for line in lines)

    rc, two = submit_score(orch, "--job", str(job), "--data", test, "--out", str(tmp_path / "two.csv"),
                           "--labels", labels, "--shards", "2", said="2 of 2 shards succeeded")
    assert rc == 0 and len(two["shard_job_ids"]) == 2
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
    shards = [orch.json("status", str(i)) for i in two["shard_job_ids"]]
    assert {s["status"] for s in shards} == {"succeeded"} and {s["parent_id"] for s in shards} == {two["job_id"]}
    assert orch.json("status", str(two["job_id"]))["result"]["accuracy"] is not None
    # assembled by the shard that completed the set, named as `orch status` names its worker (it gave the machine's)
    assembler, _, shard = orch.json("status", str(two["job_id"]))["worker"].rpartition(" via shard job ")
    assert assembler == {s["id"]: s["worker"] for s in shards}[int(shard)]

    check_retry_scores_a_lost_part_again(orch, two, tmp_path)

    parent = orch.json("status", str(one["job_id"]))
    truth = dict(line.split(",") for line in Path(labels).read_text().splitlines()[1:])
    agree = sum(truth[i] == y for i, y in (line.split(",") for line in lines)) / 40
    assert parent["status"] == "succeeded" and parent["result"]["accuracy"] == pytest.approx(agree)
    # auto scoring on an x86 CPU is int8, or says why it fell back (see shared/engine/quantize.py)
    assert parent["result"]["precision"] == "int8" or parent["result"]["int8_fallback"], parent["result"]
    row = next(r for r in orch.json_report() if r["id"] == job)
    assert row["test_acc"] == pytest.approx(agree) and row["val_acc"] is not None
    check_hits_are_the_csvs(orch, [one["job_id"], two["job_id"]], lines, truth)
    assert "images, 1 bit each>" in orch.run("status", str(two["shard_job_ids"][0]), check=True).stdout
    assert "test_acc" in orch.run("report", check=True).stdout
    check_not_test_accuracies(orch, job, synth_data, tmp_path, agree)

    check_failures(orch, job, synth_data, tmp_path)
    worker.stop()


def check_retry_scores_a_lost_part_again(orch: Orch, run: dict[str, Any], tmp_path: Path) -> None:
    """A run whose finished shard lost its part file failed ("score parts missing"); `orch retry`
    requeued only the failed shard, which failed again on the same missing part: a dead end. The
    shard whose part is gone is scored again too."""
    import time

    from sqlalchemy import update

    from shared.store import Job
    from tests.orchestrator.study_builder import open_home

    done, lost = run["shard_job_ids"]
    part = Path(orch.json("status", str(lost))["result"]["part"])
    assert not part.exists() and not part.parent.exists()  # deleted once the run succeeded: its kept CSV has the rows
    (tmp_path / "two.csv").unlink()
    store = open_home(orch.home, pytest.MonkeyPatch())
    with store.session() as s:  # as the assembler left it: the run failed, its other shard failed with it
        s.execute(update(Job).where(Job.id == run["job_id"]).values(status="failed", assembly="failed",
                                                                    error="score parts missing"))
        s.execute(update(Job).where(Job.id == done).values(status="failed", error="its run failed"))
    store.dispose()
    requeued = orch.json("retry", str(run["job_id"]))["job_ids"]
    assert sorted(requeued) == sorted([run["job_id"], done, lost])  # the run waits for its shards again
    deadline = time.monotonic() + 180
    while orch.json("status", str(run["job_id"]))["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(1)
    assert orch.json("status", str(run["job_id"]))["status"] == "succeeded" and not part.exists()
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
    events = [e["message"] for e in orch.json("status", str(lost))["events"]]
    assert "requeued by orch retry (its part file is missing: scored again)" in events


def check_hits_are_the_csvs(orch: Orch, runs: list[int], lines: list[str], truth: dict[str, str]) -> None:
    """Each test score recorded which images it got right, as its CSV says (the report pairs two jobs'
    scores image by image); one shard or two, the same set and the same bits."""
    from shared.store import Score
    from shared.val_hits import unpack
    from tests.orchestrator.study_builder import open_home

    store = open_home(orch.home, pytest.MonkeyPatch())
    with store.session() as s:
        recorded = [s.query(Score).filter_by(job_id=run).one().hits for run in runs]
    store.dispose()
    right = [truth[i] == y for i, y in (line.split(",") for line in lines)]
    assert recorded[0] == recorded[1] and recorded[0]["images"] == 40, recorded
    assert unpack(recorded[0]["hits"], 40) == right


def check_not_test_accuracies(orch: Orch, job: int, synth_data: Path, tmp_path: Path, test_acc: float) -> None:
    """A score with labels for half the images, or on the job's own validation folder, is no test
    accuracy: `--wait` says so and the report keeps the test folder's (it showed the latest score's)."""
    half = tmp_path / "half.csv"
    half.write_text("".join(line + "\n" for line in (synth_data / "test_labels.csv").read_text().splitlines()[:21]))
    partial = orch.run("submit", "score", "--job", str(job), "--data", str(synth_data / "test"), "--labels", str(half),
                       "--out", str(tmp_path / "half_preds.csv"), "--wait", timeout=300)
    assert partial.returncode == 0 and "(20 of 40 labelled); not the job's test_acc in reports: not every image " \
                                      "labelled" in partial.stderr, partial.stderr
    on_val = orch.run("submit", "score", "--job", str(job), "--data", str(synth_data / "val"), "--names", "--header",
                      "--out", str(tmp_path / "val_preds.csv"), "--shards", "2", "--wait", timeout=300)
    assert on_val.returncode == 0 and f"not the job's test_acc in reports: job {job}'s validation folder" \
        in on_val.stderr, on_val.stderr
    # a labelled folder's ids are positions: --names says which file each row is
    rows = (tmp_path / "val_preds.csv").read_text().splitlines()
    assert rows[0] == "id,label,file" and len(rows) == 33
    assert [row.split(",")[2] for row in rows[1:]] == sorted(p.name for p in (synth_data / "val").iterdir())
    assert next(r for r in orch.json_report() if r["id"] == job)["test_acc"] == pytest.approx(test_acc)


def check_failures(orch: Orch, job: int, synth_data: Path, tmp_path: Path) -> None:
    """A corrupt image fails the job (one line naming it, no CSV); a class-count mismatch is refused."""
    test = str(synth_data / "test")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(synth_data / "test", corrupt)
    (corrupt / "7.jpg").write_bytes(b"\xff\xd8 truncated")
    rc, failed = submit_score(orch, "--job", str(job), "--data", str(corrupt), "--out", str(tmp_path / "bad.csv"))
    detail = orch.json("status", str(failed["job_id"]))
    assert rc == 1 and detail["status"] == "failed" and "7.jpg" in detail["error"]
    assert not (tmp_path / "bad.csv").exists() and not list(tmp_path.glob(".bad.csv*"))

    mismatch = tmp_path / "labels3.csv"
    mismatch.write_text("".join(f"{i},{i % 3}\n" for i in range(40)))
    proc = orch.run("submit", "score", "--job", str(job), "--data", test, "--out", str(tmp_path / "x.csv"),
                    "--labels", str(mismatch))
    assert proc.returncode == 2 and "--labels: id 2 has class index 2, but the checkpoint has 2" in proc.stderr
