"""score() and load_for_inference(): order, accuracy, shards, batching; precision resolution."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.data import list_numbered, read_labels_csv, write_synthetic
from shared.engine import load_for_inference, score, train
from shared.engine.precision import resolve
from shared.errors import CheckpointError
from tests.shared.data_helpers import one_thread, tiny_spec


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, best checkpoint) of a one-epoch tiny run."""
    root = tmp_path_factory.mktemp("score")
    write_synthetic(root / "d", classes=["cat", "dog"], counts={"train": 32, "val": 12, "test": 13}, size=32,
                    layout="folder")
    with one_thread():
        result = train(tiny_spec(root / "d" / "train", root / "d" / "val", epochs=1), root / "w",
                       cache_dir=root / "cache")
    return root / "d", Path(result["best_checkpoint"])


def test_numbered_folder_in_id_order_with_and_without_labels(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    out = score(ckpt, data / "test", batch_size=5, cache_dir=tmp_path)
    assert out["ids"] == list(range(13)) and out["n"] == 13 and out["accuracy"] is None
    probs = np.asarray(out["probs"])
    assert probs.shape == (13, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert out["labels"] == [int(i) for i in probs.argmax(1)] and out["classes"] == ["cat", "dog"]
    labels = read_labels_csv(data / "test_labels.csv")
    scored = score(ckpt, data / "test", cache_dir=tmp_path, labels=labels)
    expected = np.mean([p == labels[i] for i, p in zip(scored["ids"], scored["labels"])])
    assert scored["accuracy"] == pytest.approx(expected)
    assert np.allclose(scored["probs"], probs, atol=1e-5)  # batch size does not change the answer


def test_a_shard_scores_only_its_items(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    items = list_numbered(data / "test")
    whole = score(ckpt, data / "test", cache_dir=tmp_path)
    part = score(ckpt, data / "test", items=[items[7], items[2], items[11]], cache_dir=tmp_path)
    assert part["ids"] == [2, 7, 11]
    assert np.allclose(part["probs"], np.asarray(whole["probs"])[[2, 7, 11]], atol=1e-5)


def test_a_labelled_folder_reports_accuracy(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    out = score(ckpt, data / "val", cache_dir=tmp_path)
    model, spec, classes = load_for_inference(ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert out["n"] == 12 and out["accuracy"] == pytest.approx(state["history"][0]["val_acc"])


def test_load_for_inference_errors(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, ckpt = trained
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_for_inference(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_for_inference(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_for_inference(tmp_path / "partial.pt")
    state = torch.load(ckpt, weights_only=True)
    state["spec"]["model"]["arch"] = "resnet34"
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_for_inference(tmp_path / "other.pt")


def test_precision_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.engine.precision as precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve("fp32", cpu).autocast_dtype is None and resolve("fp32", cpu).channels_last
    assert resolve("bf16", cpu).autocast_dtype == torch.bfloat16 and resolve("bf16", cpu).channels_last
    assert resolve("auto", cuda).name == "bf16" and resolve("fp32", cuda).channels_last
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve("auto", cpu).name == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve("auto", cpu).name == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve("fp16", cpu)
