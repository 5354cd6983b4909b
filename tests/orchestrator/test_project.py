"""The project file: `orch init` in a data folder, then commands that take their defaults from orch.toml.

Real `orch` subprocesses run in the data folder, as a user types them; no worker (queued is enough).
"""
from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from tests.conftest import Orch


@pytest.fixture
def project(synth_data: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic set (train/ val/ test/ at 32 px), so that orch.toml is written in it only."""
    folder = tmp_path / "cats"
    shutil.copytree(synth_data, folder)
    return folder


def test_init_then_the_design_card_ablation_queues_three_resnet50_cells(orch: Orch, project: Path) -> None:
    init = orch.run("init", cwd=project, check=True)
    written = tomllib.loads((project / "orch.toml").read_text())
    assert written == {"data": "train", "val": "val", "test": "test", "test_labels": "test_labels.csv", "image_size": 32}
    assert "# model = " in init.stdout  # the model is a commented suggestion: resnet50 can follow --groups

    submit = orch.run("submit", "ablation", "--groups", "1,8,32", "--json", cwd=project, check=True)
    notes = submit.stderr.splitlines()
    assert f"orch: --data, --val, --image-size from {project / 'orch.toml'}" in notes
    assert any("using resnet50" in line and "ResNeXt" in line for line in notes)
    jobs = orch.json("status")
    assert [(j["model"], j["groups"], j["status"]) for j in jobs] == \
        [("resnet50", 1, "queued"), ("resnet50", 8, "queued"), ("resnet50", 32, "queued")]
    spec = orch.json("status", str(jobs[0]["id"]))["spec"]
    assert (spec["data"], spec["val"]) == (str(project / "train"), str(project / "val"))
    assert spec["model"]["image_size"] == 32 and spec["model"]["num_classes"] == 2  # classes from the data


def test_flags_win_and_the_file_is_found_from_a_subfolder(orch: Orch, project: Path) -> None:
    orch.run("init", str(project), check=True)
    proc = orch.run("submit", "train", "--image-size", "48", "--model", "resnet18", "--json", cwd=project / "train",
                    check=True)
    assert proc.stderr.splitlines() == [f"orch: --data, --val from {project / 'orch.toml'}"]
    spec = orch.json("status", str(orch.json("status")[0]["id"]))["spec"]
    assert spec["model"]["image_size"] == 48 and spec["data"] == str(project / "train")


def test_groups_with_a_model_in_the_file_keep_that_model(orch: Orch, project: Path) -> None:
    (project / "orch.toml").write_text('data = "train"\nimage_size = 32\nmodel = "resnet101"\n')
    proc = orch.run("submit", "ablation", "--groups", "1,4", "--json", cwd=project, check=True)
    assert "resnet50" not in proc.stderr
    assert {j["model"] for j in orch.json("status")} == {"resnet101"}


def test_init_refuses_to_overwrite_and_a_bad_file_is_one_line(orch: Orch, project: Path) -> None:
    orch.run("init", cwd=project, check=True)
    again = orch.run("init", cwd=project)
    assert again.returncode == 2 and "--force" in again.stderr
    (project / "orch.toml").write_text('data = "train"\nepochs = "many"\n')
    bad = orch.run("submit", "train", cwd=project)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"Error: {project / 'orch.toml'}: epochs: 'many' is not a whole number"]
    (project / "orch.toml").write_text('data = "train"\nnorm = ["bn", "ln"]\n')
    listed = orch.run("submit", "ablation", cwd=project)  # was: norm: unknown "['bn', 'ln']"
    assert listed.returncode == 2 and listed.stderr.strip().splitlines() == [
        f"Error: {project / 'orch.toml'}: norm: one value per key, got a list; a grid goes on the command line "
        "(orch submit ablation --norm a,b)"]
    (project / "orch.toml").write_text('dataset = "train"\n')
    unknown = orch.run("submit", "train", cwd=project)
    assert unknown.returncode == 2 and "unknown key 'dataset'; did you mean 'data'? allowed: data, val," in unknown.stderr
    (project / "orch.toml").write_text('precison = "bf16"\n')  # a misspelling gets the key it was meant to be
    assert "unknown key 'precison'; did you mean 'precision'?" in orch.run("submit", "score", cwd=project).stderr
    (project / "orch.toml").write_text('colour = "red"\n')  # nothing like it: the list alone
    assert "unknown key 'colour'; allowed: data," in orch.run("submit", "ablation", cwd=project).stderr
    # only `orch submit` takes defaults from it: a typo there blocked every command, `orch cancel` too
    for command in (["status"], ["report"], ["cancel", "--study", "1"], ["models", "--arch", "resnet18"]):
        proc = orch.run(*command, cwd=project)
        assert "orch.toml" not in proc.stderr and proc.returncode in (0, 2), (command, proc.stderr)


def test_init_in_an_image_folder_without_splits(orch: Orch, project: Path) -> None:
    train = project / "train"
    init = orch.run("init", cwd=train, check=True)
    assert tomllib.loads((train / "orch.toml").read_text()) == {"data": ".", "image_size": 32}
    assert "flat (cat.1.jpg), 2 classes" in init.stdout
    empty = project / "empty"
    empty.mkdir()
    refused = orch.run("init", str(empty))
    assert refused.returncode == 2 and "no JPEG or PNG images" in refused.stderr
    above = orch.run("init", cwd=project.parent)  # a project folder holding the data folder: its class was "cats"
    assert above.returncode == 2 and above.stderr.strip() == (
        f"Error: {project.parent}: no train/ folder here, but cats/ has one: orch init {project}")


def test_scoring_from_the_project_folder_takes_the_test_labels_too(orch: Orch, project: Path, tmp_path: Path) -> None:
    """orch init left test_labels.csv out: `submit score` from the data folder recorded no test accuracy."""
    from tests.shared.data_helpers import write_untrained_checkpoint

    orch.run("init", cwd=project, check=True)
    checkpoint = write_untrained_checkpoint(tmp_path / "best.pt", ["cat", "dog"])
    submit = orch.run("submit", "score", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "p.csv"), "--json",
                      cwd=project, check=True)
    assert f"orch: --data, --labels from {project / 'orch.toml'}" in submit.stderr.splitlines()
    job = orch.json("status")[0]["id"]
    spec_stored = orch.json("status", str(job))["spec"]
    assert (spec_stored["data"], spec_stored["labels"]) == (str(project / "test"), str(project / "test_labels.csv"))


def test_the_projects_test_labels_label_its_test_folder_only(orch: Orch, project: Path, tmp_path: Path) -> None:
    """orch.toml's test_labels were applied to any --data: another folder scored 50% against them,
    which the report took for the job's test accuracy."""
    import json

    from tests.orchestrator.test_score_cli import add_trained

    orch.run("init", str(project), check=True)
    job = str(add_trained(orch, tmp_path, 0.8))
    other = tmp_path / "other"
    shutil.copytree(project / "test", other)
    elsewhere = orch.run("submit", "score", "--job", job, "--data", str(other), "--out", str(tmp_path / "a.csv"),
                         "--json", cwd=project, check=True)
    assert f"orch: note: not using orch.toml's test_labels: they label its test folder ({project / 'test'}), not " \
           f"{other}; give --labels for it" in elsewhere.stderr.splitlines()
    assert orch.json("status", str(json.loads(elsewhere.stdout)["job_id"]))["spec"]["labels"] is None
    own = orch.run("submit", "score", "--job", job, "--out", str(tmp_path / "b.csv"), "--json", cwd=project, check=True)
    assert orch.json("status", str(json.loads(own.stdout)["job_id"]))["spec"]["labels"] == str(project / "test_labels.csv")
    # the test folder without its labels: `--labels ""` was "no such file"
    bare = orch.run("submit", "score", "--job", job, "--out", str(tmp_path / "c.csv"), "--no-labels", "--json",
                    cwd=project, check=True)
    assert orch.json("status", str(json.loads(bare.stdout)["job_id"]))["spec"]["labels"] is None
    assert "--labels from" not in bare.stderr  # it said the labels came from orch.toml
    both = orch.run("submit", "score", "--job", job, "--out", str(tmp_path / "d.csv"), "--no-labels", "--labels",
                    str(project / "test_labels.csv"), cwd=project)
    assert both.returncode == 2 and "--no-labels: give --labels or --no-labels, not both" in both.stderr


def test_a_kaggle_layout_and_folders_init_does_not_read(orch: Orch, project: Path, tmp_path: Path) -> None:
    """Kaggle's cats-vs-dogs is train/ + test1/: init ignored test1/ without a word, and `submit score`
    then said "run orch init" in the folder orch init had written an orch.toml for."""
    from tests.shared.data_helpers import write_untrained_checkpoint

    shutil.rmtree(project / "val")
    (project / "test").rename(project / "test1")
    (project / "notes").mkdir()
    init = orch.run("init", cwd=project, check=True)
    assert tomllib.loads((project / "orch.toml").read_text())["test"] == "test1"
    assert "orch: note: not read: notes/ (each split is the first folder found of train, training, train_set, " \
           "training_set; val" in init.stderr
    (project / "orch.toml").write_text("data = \"train\"\nimage_size = 32\n")  # no test key
    checkpoint = write_untrained_checkpoint(tmp_path / "best.pt", ["cat", "dog"])
    score = orch.run("submit", "score", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "p.csv"), cwd=project)
    assert score.returncode == 2 and (f"--data: required: give --data FOLDER, or a test = \"FOLDER\" line in "
                                      f"{project / 'orch.toml'}, which has none") in score.stderr


def test_split_folders_in_another_case_or_under_other_names(orch: Orch, project: Path, tmp_path: Path) -> None:
    """Training/ Validation/ Test/ were read as the 3 classes of one training set, with no word: a job
    then trained on them. Any case is a split; names init does not know get a note."""
    for old, new in (("train", "Training"), ("val", "Validation"), ("test", "Test")):
        (project / old).rename(project / new)
    orch.run("init", cwd=project, check=True)
    assert tomllib.loads((project / "orch.toml").read_text()) | {"image_size": 0} == {
        "data": "Training", "val": "Validation", "test": "Test", "test_labels": "test_labels.csv", "image_size": 0}
    from tests.shared.data_helpers import write_image

    odd = tmp_path / "odd"  # ImageFolder splits under names init does not know
    for name in ("part_a/cat/1.jpg", "part_a/dog/2.jpg", "part_b/cat/3.jpg", "part_b/dog/4.jpg"):
        write_image(odd / name)
    init = orch.run("init", cwd=odd, check=True)
    assert "orch: note: the 2 classes (part_a/, part_b/) hold folders, not images: if they are the splits, name " \
           "them train, val, test" in init.stderr
