"""Next week's ablations end to end: a real worker trains SE/CBAM ResNet-50s and ShuffleNet v1 group
counts on synthetic data, and the study report shows each setting as its own config."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Orch, base_env

pytestmark = pytest.mark.slow

# one epoch of 48 images at 32 px, the ImageNet stem (layer4 at 1x1, BatchNorm over batches of 16):
# 0.08 G multiply-adds for ResNet-50, 16x less than the small stem, so a job takes seconds on a CPU
SETTINGS = ("--image-size", "32", "--stem", "imagenet", "--epochs", "1", "--batch-size", "16")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("next") / "data"
    subprocess.run([sys.executable, "-m", "orchestrator", "data", "synth", str(out), "--train", "48", "--val", "16",
                    "--test", "0", "--size", "32"], env=base_env(tmp_path_factory.mktemp("home")), cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    return out


def ablation(orch: Orch, data: Path, study: str, *grid: str) -> list[dict]:
    """Submit and wait; the study's report rows, one per config."""
    proc = orch.run("submit", "ablation", "--data", str(data / "train"), "--val", str(data / "val"), *SETTINGS,
                    *grid, "--study", study, "--wait", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_ids = json.loads(proc.stdout.splitlines()[0])["job_ids"]
    assert all(orch.json("status", str(job))["status"] == "succeeded" for job in job_ids)
    return orch.json_report("--study", study)


def test_attention_and_shufflenet_groups_are_configs_on_the_report(orch: Orch, small_data: Path) -> None:
    worker = orch.start_worker()
    rows = ablation(orch, small_data, "attention", "--model", "resnet50", "--attention", "none,se,cbam",
                    "--seeds", "0,1")
    assert sorted(r["config"] for r in rows) == ["attention=cbam", "attention=none", "attention=se"]
    assert all(r["n"] == 2 and r["seeds"] == [0, 1] and r["model"] == "resnet50" for r in rows)
    params = {r["attention"]: r["params"] for r in rows}  # what the worker built, recorded per job
    assert params["none"] < params["se"] < params["cbam"]
    assert {r["attention_reduction"] for r in rows if r["attention"] != "none"} == {16}

    rows = ablation(orch, small_data, "shuffle", "--model", "shufflenet_v1", "--groups", "1,3,8")
    assert sorted(r["config"] for r in rows) == ["groups=1", "groups=3", "groups=8"]
    assert all(r["model"] == "shufflenet_v1" and r["width_mult"] == 1.0 and r["gmacs"] > 0 for r in rows)
    page = orch.home / "shuffle.html"
    assert "charts: final, curves, groups" in orch.run("report", "--study", "shuffle", "--html", str(page), check=True).stderr
    worker.stop()
