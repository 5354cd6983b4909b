"""`--study` takes a study's id or its name in status, cancel, retry (and report); task messages carry
a readable label for monitors while the job id stays their only argument."""
from __future__ import annotations

import json
from pathlib import Path

from shared.task_label import describe
from tests.conftest import Orch


def queued_labels(orch: Orch) -> dict[int, str]:
    """Job id -> the argsrepr label of each task message waiting in the embedded broker."""
    labels = {}
    for path in sorted((orch.home / "broker" / "queue").iterdir()):
        message = json.loads(path.read_text())
        headers = message["headers"]
        body = json.loads(__import__("base64").b64decode(message["body"]))
        assert body[0] == [int(headers["argsrepr"].split(" ")[1])] and body[1] == {}  # args: the id, nothing else
        labels[body[0][0]] = headers["argsrepr"]
    return labels


def test_study_by_name_in_status_cancel_and_retry(orch: Orch, synth_data: Path) -> None:
    submitted = orch.json("submit", "ablation", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
                          "--model", "resnet50", "--norm", "bn,ln", "--groups", "1,2", "--seeds", "0",
                          "--image-size", "32", "--epochs", "1", "--study", "grp")
    ids = submitted["job_ids"]
    assert len(ids) == 4
    labels = queued_labels(orch)
    assert sorted(labels) == sorted(ids)
    cells = [("bn", ""), ("bn", " · groups 2"), ("ln", ""), ("ln", " · groups 2")]
    assert set(labels.values()) == {f"job {i} · resnet50 · {n}{g} · seed 0 · study grp"
                                    for i, (n, g) in zip(ids, cells, strict=True)}

    listed = orch.json("status", "--study", "grp")
    assert sorted(row["id"] for row in listed) == sorted(ids) and {row["study"] for row in listed} == {1}
    assert orch.json("status", "--study", "1") == listed
    assert {(row["study_name"], row["lr"]) for row in listed} == {("grp", 0.001)}  # a study's jobs differ in lr too
    table = orch.run("status", check=True).stdout
    assert table.count("│ grp ") == 4 and "0.001 " in table  # the study by name, where the JSON has its id too
    assert "study: 1 (grp)" in orch.run("status", str(ids[0]), check=True).stdout
    assert orch.json("cancel", "--study", "grp")["cancelled"] == ids
    assert {row["status"] for row in orch.json("status", "--study", "grp")} == {"cancelled"}
    assert orch.json("retry", "--study", "grp")["job_ids"] == ids
    assert {row["status"] for row in orch.json("status", "--study", "1")} == {"queued"}
    for args in (["status", "--study", "nope"], ["cancel", "--study", "nope"], ["retry", "--study", "nope"],
                 ["report", "--study", "nope"]):
        proc = orch.run(*args)
        assert proc.returncode == 2 and "--study: no study with id or name 'nope'; studies: 1 (grp)" in proc.stderr

    # submit reads --study as the others do: an existing id extends that study; a number is no new name
    base = ("submit", "ablation", "--data", str(synth_data / "train"), "--val", str(synth_data / "val"),
            "--model", "resnet50", "--norm", "bn,ln", "--groups", "1,2", "--image-size", "32", "--epochs", "1")
    extended = orch.json(*base, "--seeds", "0,1", "--study", "1")
    assert extended["study_id"] == 1 and len(extended["job_ids"]) == 4 and sorted(extended["skipped"]) == sorted(ids)
    numbered = orch.run(*base, "--study", "7")
    assert numbered.returncode == 2 and numbered.stderr.strip().endswith(
        "--study: no study has id 7, and a new study's name cannot be a number (every command would read it as "
        "an id); give a name such as norms")


def test_labels_of_each_job_kind() -> None:
    train = {"model": {"arch": "resnet50", "norm": "bn", "groups": 8}, "seed": 1}
    assert describe(7, "train", train, study="groups") == "job 7 · resnet50 · bn · groups 8 · seed 1 · study groups"
    assert describe(8, "train", {"model": {"arch": "resnet18", "groups": 1}, "seed": 0}) == "job 8 · resnet18 · bn · seed 0"
    assert describe(11, "train", {"model": {"arch": "resnet50", "attention": "cbam"}, "seed": 0}) == \
        "job 11 · resnet50 · bn · cbam · seed 0"
    assert describe(12, "train", {"model": {"arch": "shufflenet_v1", "groups": 3, "width_mult": 0.5,
                                            "attention": "none"}, "seed": 0}) == \
        "job 12 · shufflenet_v1 · bn · groups 3 · width 0.5 · seed 0"
    assert describe(9, "score", {"shards": 2}, source_job_id=7) == "job 9 · score of job 7 · 2 shards"
    assert describe(10, "score_shard", {"shards": 2}, shard=1, parent_id=9) == "job 10 · score shard 1 of job 9"


def test_status_limit_0_lists_every_job_as_the_report_does(orch: Orch, synth_data: Path) -> None:
    """`--limit 0` said 'no jobs yet' and `--limit -1` listed them all: the report's meaning is the other way."""
    ids = orch.json("submit", "ablation", "--data", str(synth_data / "train"), "--image-size", "32",
                    "--seeds", "0,1,2")["job_ids"]
    assert [row["id"] for row in orch.json("status", "--limit", "0")] == ids
    assert [row["id"] for row in orch.json("status", "--limit", "2")] == ids[1:]
    negative = orch.run("status", "--limit", "-1")
    assert negative.returncode == 2 and negative.stderr.strip() == "Error: --limit: must be 0 (all) or more, got -1"


def test_a_listing_cut_by_limit_says_how_many_it_left_out(orch: Orch, synth_data: Path) -> None:
    """`orch status --study S --json` listed the newest 30 of a study's jobs with nothing said: a script
    waiting for the study to end never saw the rest (`orch report` says 'the best 30 of N runs')."""
    ids = orch.json("submit", "ablation", "--data", str(synth_data / "train"), "--image-size", "32",
                    "--seeds", "0,1,2", "--study", "three")["job_ids"]
    cut = orch.run("status", "--study", "three", "--limit", "2", "--json", check=True)
    assert [row["id"] for row in json.loads(cut.stdout)] == ids[1:]  # stdout stays JSON: the note is on stderr
    assert cut.stderr.strip() == "the newest 2 of the study's 3 jobs: --limit 0 shows all"
    table = orch.run("status", "--limit", "1", check=True)
    assert table.stderr.strip() == "the newest 1 of 3 jobs: --limit 0 shows all" and "the newest" not in table.stdout
    for whole in (["--limit", "3"], ["--limit", "0"], ["--study", "three"]):
        assert orch.run("status", *whole, "--json", check=True).stderr == ""


def test_status_lists_the_jobs_in_the_states_asked_for(orch: Orch, synth_data: Path) -> None:
    """`orch status --state failed,cancelled`: the jobs a retry would requeue, out of a listing of many."""
    ids = orch.json("submit", "ablation", "--data", str(synth_data / "train"), "--image-size", "32",
                    "--seeds", "0,1,2,3", "--study", "four")["job_ids"]
    orch.run("cancel", str(ids[0]), check=True)
    orch.run("cancel", str(ids[2]), check=True)
    assert [row["id"] for row in orch.json("status", "--state", "cancelled")] == [ids[0], ids[2]]
    assert [row["id"] for row in orch.json("status", "--state", "queued,cancelled")] == ids
    assert [row["id"] for row in orch.json("status", "--state", "queued", "--study", "four")] == [ids[1], ids[3]]
    cut = orch.run("status", "--state", "queued", "--limit", "1", "--json", check=True)
    assert [row["id"] for row in json.loads(cut.stdout)] == [ids[3]]
    assert cut.stderr.strip() == "the newest 1 of 2 queued jobs: --limit 0 shows all"
    assert orch.json("status", "--state", "failed") == []
    assert orch.run("status", "--state", "failed,running", check=True).stdout.strip() == "no failed or running jobs"
    table = orch.run("status", "--state", "cancelled", check=True).stdout
    listed_ids = [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]
    assert str(ids[0]) in listed_ids and str(ids[2]) in listed_ids and str(ids[1]) not in listed_ids
    for bad, message in ((["--state", "done"], "--state: unknown state 'done'; give one or more of queued, running, "
                                                "succeeded, failed, cancelled (comma-separated)"),
                         (["--state", "queued,"], "--state: unknown state ''"),
                         ([str(ids[0]), "--state", "queued"], "--state: give a job ID or --state STATE, not both")):
        proc = orch.run("status", *bad)
        assert proc.returncode == 2 and proc.stderr.startswith(f"Error: {message}") and "Traceback" not in proc.stderr


def test_blank_study_name_is_refused_and_padding_is_stripped(orch: Orch, synth_data: Path) -> None:
    """`--study ''` (an unset shell variable) made a study named '' and `--study '  '` one named '  ',
    reachable by no name; ' grp ' was stored padded, and found by no command (they strip the name)."""
    base = ("submit", "ablation", "--data", str(synth_data / "train"), "--image-size", "32", "--epochs", "1")
    for blank in ("", "   "):
        proc = orch.run(*base, "--study", blank)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"Error: --study: empty name {blank!r}; give a name such as norms, or leave --study out"]
    assert orch.json("status") == []  # nothing recorded
    padded = orch.json(*base, "--study", " grp ")
    listed = orch.json("status", "--study", "grp")
    assert [row["id"] for row in listed] == padded["job_ids"] and listed[0]["study_name"] == "grp"
