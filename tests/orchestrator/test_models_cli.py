"""`orch models`: the table, the JSON, the help, and one-line exit-2 errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from shared.spec import ARCHS

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["arch", "groups", "width_per_group", "width_mult", "attention", "attention_reduction", "norm", "stem", "params",
        "gmacs"]
TABLE_KEYS = [key for key in KEYS if key != "attention_reduction"]  # a column only where a row has attention


def orch(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a fresh process: what a user sees, tracebacks included."""
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_table2_as_json() -> None:
    rows = json.loads(invoke("models", "--arch", "resnet50", "--groups", "1,2,4,8,32", "--json"))
    assert [list(row) for row in rows] == [KEYS] * 5
    assert [(r["groups"], r["width_per_group"]) for r in rows] == [(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)]
    assert rows[0]["params"] == 25_557_032 and rows[-1]["params"] == 25_028_904  # resnext50_32x4d
    assert all(r["gmacs"] == pytest.approx(rows[0]["gmacs"], rel=0.10) for r in rows)


def test_table_output() -> None:
    lines = invoke("models", "--arch", "resnet18,resnet50", "--norm", "bn,ln", "--num-classes", "10").splitlines()
    assert lines[0].split() == TABLE_KEYS
    assert len(lines) == 1 + 4  # the cross product of 2 archs x 2 norms
    assert lines[1].split()[:6] == ["resnet18", "1", "64", "-", "none", "bn"] and "11,181,642" in lines[1]


def test_no_arch_lists_every_architecture() -> None:
    rows = json.loads(invoke("models", "--json", "--image-size", "64"))
    assert [r["arch"] for r in rows] == list(ARCHS)
    assert rows[5] == {"arch": "mobilenet_v2", "groups": None, "width_per_group": None, "width_mult": 1.0,
                       "attention": None, "attention_reduction": None, "norm": "bn", "stem": "small", "params": 3_504_872,
                       "gmacs": rows[5]["gmacs"]}


def test_knobs_without_arch_pick_the_archs_they_apply_to() -> None:
    rows = json.loads(invoke("models", "--groups", "32", "--image-size", "32", "--json"))
    assert [(r["arch"], r["width_per_group"]) for r in rows] == \
        [("resnet50", 4), ("resnet101", 4), ("resnet152", 4)]
    rows = json.loads(invoke("models", "--groups", "8", "--image-size", "32", "--json"))
    assert [r["arch"] for r in rows] == ["resnet50", "resnet101", "resnet152", "shufflenet_v1"]
    rows = json.loads(invoke("models", "--width-mult", "0.5,1.5", "--image-size", "32", "--json"))
    assert [(r["arch"], r["width_mult"]) for r in rows] == [  # mobilenet_v2 stops at 1.4
        ("shufflenet_v1", 0.5), ("shufflenet_v1", 1.5), ("shufflenet_v2", 0.5), ("shufflenet_v2", 1.5)]


def test_next_weeks_models_as_json() -> None:
    """The README's model section: the papers' tables in one command each."""
    rows = json.loads(invoke("models", "--arch", "resnet50", "--attention", "none,se,cbam", "--json"))
    assert [(r["attention"], r["params"], r["gmacs"]) for r in rows] == [
        ("none", 25_557_032, 3.858), ("se", 28_088_024, 3.86), ("cbam", 28_089_624, 3.864)]
    rows = json.loads(invoke("models", "--arch", "shufflenet_v1", "--groups", "1,2,3,4,8", "--json"))
    assert [round(r["gmacs"] * 1000) for r in rows] == [143, 141, 137, 134, 138]  # Table 1: 143/140/137/133/137


def test_the_attention_reduction_tells_rows_apart() -> None:
    """Rows of se at reduction 4 and 16 read the same but for their params: no column said why."""
    lines = invoke("models", "--arch", "resnet18", "--attention", "none,se", "--attention-reduction", "4,16",
                   "--image-size", "32").splitlines()
    assert lines[0].split() == [*TABLE_KEYS[:5], "reduction", *TABLE_KEYS[5:]]
    assert [line.split()[4:6] for line in lines[1:]] == [["none", "-"], ["se", "4"], ["se", "16"]]  # none: one row
    rows = json.loads(invoke("models", "--arch", "resnet18", "--attention", "none,cbam", "--image-size", "32", "--json"))
    assert [(r["attention"], r["attention_reduction"]) for r in rows] == [("none", None), ("cbam", 16)]


def test_the_default_width_multiplier_builds_every_network() -> None:
    """--width-mult 1.0, every network's own width, refused a grid of resnet18,mobilenet_v2 (--groups 1 and
    --attention none, the others' defaults, were taken by every architecture)."""
    rows = json.loads(invoke("models", "--arch", "resnet18,mobilenet_v2", "--width-mult", "1.0", "--image-size", "32",
                             "--json"))
    assert [(r["arch"], r["width_mult"]) for r in rows] == [("resnet18", None), ("mobilenet_v2", 1.0)]
    result = orch("models", "--arch", "resnet18", "--width-mult", "0.5")
    assert result.returncode == 2 and "--width-mult: width_mult applies to mobilenet_v2" in result.stderr


def test_help_teaches_with_examples() -> None:
    result = orch("models", "--help")
    assert result.returncode == 0
    assert "Examples:" in result.stdout and "--groups 1,2,4,8,32" in result.stdout


def test_cli_import_loads_no_torch() -> None:
    code = "import sys, orchestrator.cli; sys.exit('torch' in sys.modules or 'torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--arch", "resnet19"], "Error: --arch: unknown 'resnet19'; allowed: resnet18, resnet34, resnet50, "
                             "resnet101, resnet152, mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, "
                             "shufflenet_v1, shufflenet_v2, shufflenet_v2_x0_5, shufflenet_v2_x1_0, "
                             "shufflenet_v2_x1_5, shufflenet_v2_x2_0"),
    (["--arch", "resnet50", "--norm", "bn,xx"], "Error: --norm: unknown 'xx'; allowed: bn, ln, in, gn"),
    (["--arch", "resnet18", "--groups", "1,8"], "Error: --groups: groups need a bottleneck depth "
                                                "(resnet50, resnet101, resnet152); resnet18 uses basic blocks"),
    (["--arch", "resnet50", "--groups", "8,x"], "Error: --groups: 'x' is not a whole number"),
    (["--arch", "resnet50", "--groups", "0"], "Error: --groups: must be at least 1, got 0"),
    (["--arch", "resnet50", "--groups", "300"], "Error: --groups: must be at most 256, got 300"),
    (["--arch", "resnet50", "--groups", "200"], "Error: --groups: groups=200 is too many for an automatic "
                                                "width_per_group"),
    (["--arch", "resnet34", "--width-per-group", "4"], "Error: --width-per-group: width_per_group needs a "
                                                        "bottleneck depth"),
    (["--arch", "resnet50", "--width-per-group", "0"], "Error: --width-per-group: must be at least 1, got 0"),
    (["--arch", "resnet50", "--groups", "8", "--norm", "gn"], "Error: --norm: gn (GroupNorm with 32 groups) needs "
                                                              "channel counts divisible by 32"),
    (["--arch", "mobilenet_v2", "--norm", "gn"], "Error: --norm: mobilenet_v2 takes norm bn, ln, in: gn (GroupNorm "
                                                 "with 32 groups) cannot split its 16- and 24-channel layers"),
    (["--arch", "shufflenet_v2_x1_0", "--groups", "2"], "Error: --groups: groups apply to the bottleneck"),
    (["--arch", "shufflenet_v2", "--width-mult", "0.5,0.75"], "Error: --width-mult: shufflenet_v2 is defined for "
                                                              "width_mult 0.5, 1.0, 1.5, 2.0 (torchvision's), got 0.75"),
    (["--arch", "shufflenet_v2", "--norm", "ln"], "Error: --norm: shufflenet_v2 takes norm bn: torchvision builds it "
                                                  "with BatchNorm only"),
    (["--arch", "mobilenet_v2", "--groups", "1,2"], "Error: --groups: groups apply to the bottleneck ResNets "
                                                    "(resnet50, resnet101, resnet152) and shufflenet_v1 (1, 2, 3, 4, 8)"),
    (["--arch", "mobilenet_v3_small", "--attention", "none,se"], "Error: --attention: attention se or cbam applies to "
                                                                 "the ResNet family"),
    (["--arch", "shufflenet_v1", "--groups", "1,6"], "Error: --groups: shufflenet_v1 is defined for groups 1, 2, 3, 4, "
                                                     "8 (the ShuffleNet paper's Table 1), got 6"),
    (["--arch", "resnet50", "--attention", "sk"], "Error: --attention: unknown 'sk'; allowed: none, se, cbam"),
    (["--norm", "in", "--stem", "imagenet", "--image-size", "32"], "Error: --norm: in (InstanceNorm) would see one "
                                                                   "value per channel: resnet50 at --image-size 32"),
    (["--image-size", "16"], "Error: --image-size: must be at least 32, got 16"),
    (["--num-classes", "1"], "Error: --num-classes: must be at least 2, got 1"),
    (["--stem", "tiny"], "Error: --stem: unknown 'tiny'; allowed: auto, imagenet, small"),
])
def test_invalid_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = orch("models", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(message)
