"""The product end to end: a real `orch worker` subprocess runs a 2 norms x 2 groups ablation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.val_hits import unpack
from tests.conftest import REPO, Orch
from tests.orchestrator.test_report_cli import assert_offline

pytestmark = pytest.mark.slow

ABLATION = ("--model", "resnet50", "--norm", "bn,ln", "--groups", "1,2", "--epochs", "1",
            "--image-size", "32", "--batch-size", "32", "--seeds", "0")


def run_ablation(orch: Orch, data: Path) -> None:
    worker = orch.start_worker()
    submitted = orch.run("submit", "ablation", "--data", str(data / "train"), "--val", str(data / "val"),
                         *ABLATION, "--wait", "--json", timeout=600)
    assert submitted.returncode == 0, submitted.stderr + worker.output()[-3000:]
    ids = json.loads(submitted.stdout.splitlines()[0])
    assert len(ids["job_ids"]) == 4 and ids["study_id"] >= 1
    assert "4 of 4 jobs succeeded" in submitted.stderr

    grouped = orch.json_report("--study", str(ids["study_id"]))
    assert len(grouped) == 4
    assert {(r["norm"], r["groups"]) for r in grouped} == {("bn", 1), ("bn", 2), ("ln", 1), ("ln", 2)}
    assert [r["rank"] for r in grouped] == [1, 2, 3, 4]
    means = [r["val_acc_mean"] for r in grouped]
    assert means == sorted(means, reverse=True) and all(0.0 <= m <= 1.0 for m in means)
    assert all(r["n"] == 1 and r["params"] > 1_000_000 and r["gmacs"] > 0 for r in grouped)
    assert {r["width"] for r in grouped if r["groups"] == 2} == {40}  # ResNeXt Table 2 width for 2 groups

    per_job = orch.json_report()
    assert sorted(r["id"] for r in per_job) == sorted(ids["job_ids"])
    for job_id in ids["job_ids"]:
        detail = orch.json("status", str(job_id))
        assert detail["status"] == "succeeded" and [e["epoch"] for e in detail["epochs"]] == [1]
        assert Path(detail["result"]["best_checkpoint"]).is_file()
        assert (detail["result"]["val_images"], detail["result"]["val_majority"]) == (32, 0.5)  # 16 cats, 16 dogs
        assert detail["result"]["precision"] in ("bf16", "fp32")  # what --precision auto ran here
        hits = recorded_hits(orch, job_id)  # which validation images it got right, in its own column
        assert (hits["images"], hits["best_epoch"], hits["last_epoch"]) == (32, 1, 1)
        assert sum(unpack(hits["best"], 32)) == round(detail["epochs"][0]["val_acc"] * 32)
    table = orch.run("report", "--study", str(ids["study_id"]), check=True).stdout
    assert "±" in table and "resnet50" in table
    check_study_page(orch, ids["study_id"], grouped)
    score_the_study(orch, data, ids["study_id"], ids["job_ids"])
    delete_one_and_train_again(orch, data, ids["job_ids"])
    worker.stop()
    assert worker.proc.returncode is not None


def recorded_hits(orch: Orch, job_id: int) -> dict:
    """jobs.val_hits as the worker wrote it, read in a process of the test's environment (its store)."""
    code = ("import json; from shared.config import load_settings; from shared.store import Job, open_store; "
            f"s = open_store(load_settings()); c = s.session().__enter__(); print(json.dumps(c.get(Job, {job_id}).val_hits))")
    return json.loads(subprocess.run([sys.executable, "-c", code], env=orch.env, cwd=REPO, capture_output=True,
                                     text=True, check=True, timeout=60).stdout)


def score_the_study(orch: Orch, data: Path, study_id: int, job_ids: list[int]) -> None:
    """`orch submit score --study`: every job's best checkpoint on the test folder, one CSV each; run
    again, it scores nothing (each already has its test accuracy there)."""
    out = orch.home / "preds"
    args = ("submit", "score", "--study", str(study_id), "--data", str(data / "test"), "--labels",
            str(data / "test_labels.csv"), "--out", str(out), "--wait", "--json")
    scored = orch.run(*args, timeout=600)
    assert scored.returncode == 0, scored.stderr
    runs = json.loads(scored.stdout.splitlines()[0])["runs"]
    assert sorted(r["source_job_id"] for r in runs) == sorted(job_ids)
    assert all(len((out / f"{r['source_job_id']}.csv").read_text().splitlines()) == 40 for r in runs)
    tested = orch.json_report("--study", str(study_id), "--metric", "test_acc")
    assert all(r["test_acc_n"] == 1 and 0 <= r["test_acc_mean"] <= 1 for r in tested), tested
    again = orch.run(*args, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout) == {
        "study": str(study_id), "runs": [], "already_scored": sorted(job_ids)}, again.stdout + again.stderr
    check_a_failed_run_is_named(orch, args, min(job_ids))


def check_a_failed_run_is_named(orch: Orch, args: tuple[str, ...], broken: int) -> None:
    """`--again --wait` where one job's checkpoint changes after submit: its run fails in its shard, the
    others write their CSVs, and the command exits 1 naming the one that did not. Sent to a queue no
    worker reads until the checkpoint has changed."""
    waiting = subprocess.Popen([sys.executable, "-m", "orchestrator", *args, "--again", "--queue", "late"],
                               env=orch.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stdout is not None
    runs = json.loads(waiting.stdout.readline())["runs"]  # printed once queued, before the wait
    checkpoint = Path(orch.json("status", str(broken))["result"]["best_checkpoint"])
    kept = checkpoint.read_bytes()
    checkpoint.write_bytes(kept + b"changed")
    late = orch.start_worker("--queues", "late", log_name="late")
    try:
        _, said = waiting.communicate(timeout=600)
    finally:
        late.stop()
        checkpoint.write_bytes(kept)
    failed = next(r["job_id"] for r in runs if r["source_job_id"] == broken)
    assert waiting.returncode == 1, said
    assert f"job {broken}: score job {failed} failed: shard 0 (job {failed + 1}): --checkpoint: {checkpoint} changed " \
           "since the run was submitted" in said, said
    assert said.count(": wrote ") == len(runs) - 1 and f"scoring run {failed} wrote no CSV" in said, said


def delete_one_and_train_again(orch: Orch, data: Path, job_ids: list[int]) -> None:
    """`orch delete` beside a live worker: the last job's rows and checkpoints go, the others' stay, and
    the next job (SQLite gives it the deleted job's id again) trains into a folder of its own."""
    last, kept = max(job_ids), sorted(set(job_ids) - {max(job_ids)})
    folder = Path(orch.json("status", str(last))["result"]["best_checkpoint"]).parent
    deleted = orch.json("delete", str(last), "--yes")
    # with it went its two scoring runs (score_the_study), each with its shard
    assert deleted["job_ids"][0] == last and len(deleted["job_ids"]) == 5 and deleted["mb"] > 1 and not folder.exists()
    assert sorted(job["id"] for job in orch.json("status") if job["kind"] == "train") == kept
    assert all(Path(orch.json("status", str(j))["result"]["best_checkpoint"]).is_file() for j in kept)
    again = orch.run("submit", "train", "--data", str(data / "train"), "--val", str(data / "val"), "--model",
                     "resnet18", "--image-size", "32", "--epochs", "1", "--wait", "--json", timeout=300)
    assert again.returncode == 0, again.stderr
    new_id = json.loads(again.stdout.splitlines()[0])["job_id"]
    detail = orch.json("status", str(new_id))
    assert detail["status"] == "succeeded" and [e["epoch"] for e in detail["epochs"]] == [1]
    assert Path(detail["result"]["best_checkpoint"]).is_file()


def check_study_page(orch: Orch, study_id: int, grouped: list[dict]) -> None:
    """The statistics and the HTML page on real runs: one seed each, so no interval and says so."""
    assert {r["config"] for r in grouped} == {f"norm={n} groups={g}" for n in ("bn", "ln") for g in (1, 2)}
    assert all(r["n"] == 1 and r["val_acc_ci95_low"] is None and "n=1" in r["interval_note"] for r in grouped)
    assert [r["vs_baseline"] for r in grouped].count("baseline") == 1
    assert all("one common seed (0)" in r["verdict"] for r in grouped if r["vs_baseline"] != "baseline")
    assert all("one epoch" in r["convergence"] for r in grouped), [(r["config"], r["convergence"]) for r in grouped]
    page = orch.home / "report.html"
    out = orch.run("report", "--study", str(study_id), "--html", str(page), check=True).stderr
    # no Pareto chart: ResNeXt's Table 2 widths keep groups 1 and 2 at the same cost (within 2%)
    assert "charts: final, curves, groups)" in out
    assert_offline(page.read_text())


def test_ablation_on_embedded_default(orch: Orch, synth_data: Path) -> None:
    run_ablation(orch, synth_data)
    assert (orch.home / "orch.db").is_file() and (orch.home / "broker" / "queue").is_dir()


def test_ablation_on_redis_and_postgres(cluster_orch: Orch, synth_data: Path) -> None:
    run_ablation(cluster_orch, synth_data)
    assert not (cluster_orch.home / "orch.db").exists()


@pytest.mark.parametrize("args", [["--help"], ["status"], ["report"], ["submit", "--help"]])
def test_cli_does_not_import_torch(orch: Orch, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "orchestrator", *args], env=orch.env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "celery" not in imported or args != ["--help"]
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}
    assert "sqlalchemy" in imported or args in (["--help"], ["submit", "--help"])
