"""Options come from the spec fields: a new field (an axis or not) reaches the CLI with no other code.

In-process through click's runner where a store is not needed; `orch status` and `orch report`
against a real store to show that readers resolve defaults the same way.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import click
import pytest
from click.testing import CliRunner
from pydantic import Field

from orchestrator.cli import main
from orchestrator.fields import GRID_FIELDS, TRAIN_FIELDS, option_fields
from orchestrator.options import spec_options
from orchestrator.submission import train_specs
from shared.config import load_settings
from shared.errors import SpecError
from shared.spec import ModelSpec, ScoreSpec, Spec, TrainSpec, axis, parse, read_stored
from shared.store import Epoch, JobKind, open_store
from shared.store import jobs as store_jobs
from tests.conftest import REPO, Orch

BASE = {"data": "/d/train", "image_size": 32}


class Toy(Spec):
    """A spec with a new axis and a new plain field, as the models engineer would add them."""

    attention: Literal["none", "se", "cbam"] = axis("none", description="Attention block.")
    width_mult: float = axis(1.0, gt=0, description="Width multiplier.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")


def toy_command(grid: bool) -> click.Command:
    @click.command()
    @spec_options(option_fields(Toy, grid=grid))
    def toy(**options: object) -> None:
        click.echo(json.dumps(options))

    return toy


def test_a_new_axis_is_a_comma_list_in_a_grid_and_one_value_elsewhere() -> None:
    grid = CliRunner().invoke(toy_command(grid=True), ["--attention", "se,cbam", "--width-mult", "0.5,1"])
    assert json.loads(grid.stdout) == {"attention": "se,cbam", "width_mult": "0.5,1", "dropout": None}
    single = CliRunner().invoke(toy_command(grid=False), ["--attention", "se", "--width-mult", "0.5"])
    assert json.loads(single.stdout) == {"attention": "se", "width_mult": 0.5, "dropout": None}
    bad = CliRunner().invoke(toy_command(grid=False), ["--attention", "sk"])
    assert bad.exit_code == 2 and "unknown 'sk'; allowed: none, se, cbam" in bad.output
    help_text = CliRunner().invoke(toy_command(grid=True), ["--help"]).stdout
    assert "[none|se|cbam][,...]" not in help_text and "none|se|cbam[,...]" in help_text
    assert "Attention block. Comma list. [default: none]" in " ".join(help_text.split())


def test_every_option_field_has_help_and_the_tables_name_real_fields() -> None:
    for cls in (TrainSpec, ScoreSpec, ModelSpec):
        for field in option_fields(cls, grid=True):
            assert field.help, f"{cls.__name__}.{field.path} needs a description: it is the option's help"
    assert {f.option for f in GRID_FIELDS if f.listed} >= {"--model", "--norm", "--groups", "--width-per-group",
                                                          "--lr", "--batch-size", "--seeds"}
    assert "--momentum" in {f.option for f in TRAIN_FIELDS}  # a spec field with no option before


def test_momentum_and_num_classes_reach_the_spec() -> None:
    spec = train_specs({**BASE, "optimizer": "sgd", "momentum": 0.5}, TRAIN_FIELDS, {"model.num_classes": 2})[0]
    assert (spec.optimizer, spec.momentum, spec.model.num_classes) == ("sgd", 0.5, 2)


def test_groups_without_a_model_use_resnet50_and_an_explicit_model_is_kept(
        capsys: pytest.CaptureFixture[str]) -> None:
    specs = train_specs({**BASE, "groups": "1,8,32"})
    assert [(s.model.arch, s.model.groups) for s in specs] == [("resnet50", 1), ("resnet50", 8), ("resnet50", 32)]
    assert "using resnet50 (the ResNeXt paper's base)" in capsys.readouterr().err
    assert {s.model.arch for s in train_specs({**BASE, "groups": "1"})} == {"resnet18"}
    with pytest.raises(SpecError, match=r"^--groups: .*resnet18"):
        train_specs({**BASE, "model": "resnet18", "groups": "1,8"})


def test_spec_error_carries_field_and_message() -> None:
    with pytest.raises(SpecError) as caught:
        parse(TrainSpec, {"data": "/d", "model": {"arch": "resnet18", "groups": 8}})
    assert caught.value.field == "model.groups" and caught.value.message.startswith("groups need a bottleneck")
    assert str(caught.value) == f"{caught.value.field}: {caught.value.message}"


def test_a_stored_spec_reads_back_under_rules_added_since() -> None:
    stored = {"data": "/d", "model": {"arch": "resnet18", "groups": 8, "num_classes": 1000}}
    spec = read_stored(TrainSpec, stored)  # a job recorded before the groups rule must still show
    assert spec.model.groups == 8 and spec.model.norm_name == "bn"
    assert spec.model_for_classes(2).num_classes == 2  # old specs said 1000: the data decides
    fresh = parse(TrainSpec, {"data": "/d", "model": {"num_classes": 2}})
    assert fresh.model_for_classes(2) is fresh.model


def test_bad_values_name_the_option_and_the_allowed_values() -> None:
    cases = [
        (["submit", "train", "--data", ".", "--optimizer", "rmsprop"], "Error: --optimizer: unknown 'rmsprop'; "
                                                                      "allowed: adam, sgd"),
        (["submit", "train", "--data", ".", "--lr", "fast"], "Error: --lr: 'fast' is not a number"),
        (["submit", "ablation", "--data", ".", "--stem", "tiny"], "Error: --stem: unknown 'tiny'; allowed: auto, "
                                                                  "imagenet, small"),
        (["submit", "score", "--job", "1", "--data", ".", "--out", "x", "--precision", "fp16"],
         "Error: --precision: unknown 'fp16'; allowed: auto, fp32, bf16, int8"),
    ]
    for args, start in cases:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and result.stderr.startswith(start), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_help_shows_defaults_allowed_values_and_examples() -> None:
    text = " ".join(CliRunner().invoke(main, ["submit", "train", "--help"]).stdout.split())
    assert "--optimizer [adam|sgd]" in text and "[default: adam]" in text and "--momentum X" in text
    assert "Allowed: resnet18, resnet34, resnet50" in text and "Examples:" in text


def test_json_help_names_what_a_script_reads() -> None:
    """`orch submit ... --json` said "Print the ids as JSON." and `orch status --json` "Print JSON.": a
    script's writer had to run them to learn the keys (cancel, retry and models named theirs)."""
    printed = {("submit", "train"): ["job_id"], ("submit", "ablation"): ["study_id", "job_ids", "skipped"],
               ("submit", "score"): ["job_id", "shard_job_ids"]}
    for command, keys in printed.items():
        text = " ".join(CliRunner().invoke(main, [*command, "--help"]).stdout.split())
        assert [key for key in keys if f'"{key}"' not in text] == [], command
    status = " ".join(CliRunner().invoke(main, ["status", "--help"]).stdout.split())
    assert "status: queued, running, succeeded, failed or cancelled" in status


def test_submit_help_loads_no_torch_and_no_store() -> None:
    code = ("import sys; from orchestrator.cli import main\n"
            "try: main(['submit', 'ablation', '--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'torchvision', 'sqlalchemy', 'celery') if m in sys.modules]\n"
            "sys.exit(str(heavy) if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_status_and_report_show_the_same_resolved_norm(orch: Orch, tmp_path: Path) -> None:
    store = open_store(load_settings(orch.home))
    spec = parse(TrainSpec, {"data": str(tmp_path), "model": {"arch": "resnet50", "groups": 2, "num_classes": 2}})
    with store.session() as s:
        job = store_jobs.add_job(s, JobKind.train, spec)
        s.add(Epoch(job_id=job.id, epoch=1, train_loss=1.0, val_loss=1.0, val_acc=0.5, images_per_s=10.0,
                    seconds=1.0, attempt=1))
    store.dispose()
    row = orch.json("status")[0]
    ranked = orch.json_report()[0]
    assert (row["norm"], ranked["norm"]) == ("bn", "bn")
    assert (ranked["model"], ranked["groups"], ranked["width"]) == ("resnet50", 2, 40)
    assert orch.json("status", str(row["id"]))["spec"]["model"]["num_classes"] == 2


def test_every_command_and_group_shows_an_example_in_its_help() -> None:
    """`orch db current`, `orch submit`, `orch data` and `orch db` had none."""
    import click
    from click.testing import CliRunner

    from orchestrator.cli import main

    ctx = click.Context(main)

    def paths(command: click.Command, path: list[str]) -> list[list[str]]:
        below = [command.get_command(ctx, name) for name in command.list_commands(ctx)] if isinstance(
            command, click.Group) else []
        return [path] + [p for sub in below if sub is not None for p in paths(sub, [*path, sub.name or ""])]

    every = paths(main, [])[1:]  # the root lists the commands
    assert len(every) > 15
    missing = [" ".join(path) for path in every if "Example" not in CliRunner().invoke(main, [*path, "--help"]).output]
    assert missing == []
