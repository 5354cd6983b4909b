"""score() and load_for_inference(): order, accuracy, shards, batching; precision resolution."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.data import list_numbered, read_labels_csv, write_synthetic
from shared.engine import load_for_inference, score, train
from shared.engine.bf16_probe import Bf16Probe
from shared.engine.precision import resolve
from shared.engine.quantize import int8_supported
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
    expected = np.mean([p == labels[i] for i, p in zip(scored["ids"], scored["labels"], strict=True)])
    assert scored["accuracy"] == pytest.approx(expected)
    assert np.allclose(scored["probs"], probs, atol=1e-5)  # batch size does not change the answer


def test_a_shard_scores_only_its_items(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    items = list_numbered(data / "test")
    whole = score(ckpt, data / "test", cache_dir=tmp_path)
    part = score(ckpt, data / "test", items=[items[7], items[2], items[11]], cache_dir=tmp_path)
    assert part["ids"] == [2, 7, 11]
    assert np.allclose(part["probs"], np.asarray(whole["probs"])[[2, 7, 11]], atol=1e-5)


def test_the_callers_check_is_timed_apart_from_inference(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """A shard's wait for its checkpoint hash (before_inference) is its own lap, not inference time."""
    data, ckpt = trained
    calls: list[str] = []

    def wait_for_the_hash() -> None:
        calls.append("checked")
        time.sleep(0.3)

    out = score(ckpt, data / "test", cache_dir=tmp_path, precision="fp32", before_inference=wait_for_the_hash)
    laps = out["timings"]
    assert calls and list(laps) == ["load_s", "decode_s", "int8_s", "verify_s", "infer_s"]
    assert laps["verify_s"] >= 0.3 > laps["infer_s"]
    assert "verify_s" not in score(ckpt, data / "test", cache_dir=tmp_path, precision="fp32")["timings"]


def test_each_batch_predicted_is_told_for_a_shards_progress(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """A shard of a large folder decodes and scores for minutes: `on_progress` is told each chunk
    decoded and each batch predicted, as the trainer tells it, so one progress writer serves both."""
    data, ckpt = trained
    told: list[tuple[str, int | None, int, int]] = []
    score(ckpt, data / "test", batch_size=5, cache_dir=tmp_path, precision="fp32",
          on_progress=lambda *at: told.append(at))
    # 13 images: one decode chunk, then batches of 5
    assert told == [("decoding", None, 13, 13), ("scoring", None, 5, 13), ("scoring", None, 10, 13),
                    ("scoring", None, 13, 13)]
    told.clear()
    score(ckpt, data / "test", batch_size=5, cache_dir=tmp_path, precision="fp32",
          on_progress=lambda *at: told.append(at))
    assert told[0] == ("scoring", None, 5, 13)  # decoded once: the cache is read, nothing to tell


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


def test_load_for_inference_holds_the_checkpoints_weights_and_no_placeholder(
        trained: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The network is built on the meta device and given the checkpoint's tensors; where it has a
    tensor the checkpoint does not hold (a buffer that is not saved), it is built for real instead."""
    import shared.engine.checkpoint as checkpoint

    _, ckpt = trained
    saved = torch.load(ckpt, weights_only=True)["model"]
    model, _, _ = load_for_inference(ckpt)
    loaded = model.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    real = checkpoint.model_for

    def with_a_constant(spec: object, classes: list[str]) -> torch.nn.Module:
        net = real(spec, classes)  # type: ignore[arg-type]
        net.register_buffer("constant", torch.full((3,), 7.0), persistent=False)
        return net

    monkeypatch.setattr(checkpoint, "model_for", with_a_constant)
    model, _, _ = load_for_inference(ckpt)
    assert torch.equal(model.constant, torch.full((3,), 7.0))
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)


def test_precision_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.engine.precision as precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve("fp32", cpu).autocast_dtype is None and resolve("fp32", cpu).channels_last
    assert resolve("bf16", cpu).autocast_dtype == torch.bfloat16 and resolve("bf16", cpu).channels_last
    monkeypatch.setattr(precision, "gpu_has_bf16", lambda: True)
    assert resolve("auto", cuda).name == "bf16" and resolve("fp32", cuda).channels_last
    assert not resolve("auto", cuda).needs_grad_scaler
    monkeypatch.setattr(precision, "gpu_has_bf16", lambda: False)  # a GPU older than Ampere
    assert resolve("auto", cuda).name == "fp16" and resolve("auto", cuda).needs_grad_scaler
    assert resolve("auto", cuda, scoring=True).autocast_dtype == torch.float16
    monkeypatch.setattr(precision, "gpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_probe", lambda cache_dir: Bf16Probe(1.9, measured_now=False))
    assert resolve("auto", cpu).name == "bf16" and resolve("auto", cpu).probe == Bf16Probe(1.9, False)
    assert resolve("auto", cpu, scoring=True).name == ("int8" if int8_supported() else "bf16")
    # native bf16 that trains no faster than fp32 (a Xeon whose AMX is hidden): fp32, and the probe says why
    monkeypatch.setattr(precision, "bf16_probe", lambda cache_dir: Bf16Probe(0.8, measured_now=True))
    assert resolve("auto", cpu).name == "fp32" and resolve("auto", cpu).probe == Bf16Probe(0.8, True)
    assert resolve("bf16", cpu).probe is None and resolve("auto", cuda).probe is None  # asked for, or a GPU: no probe
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve("auto", cpu).name == "fp32"  # training never quantizes
    assert resolve("auto", cpu, scoring=True).name == ("int8" if int8_supported() else "fp32")
    assert resolve("auto", cuda, scoring=True).name == "bf16" and resolve("int8", cuda, scoring=True).name == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve("fp16", cpu)
    with pytest.raises(ValueError, match="precision: 'int8' is not one of auto, fp32, bf16"):
        resolve("int8", cpu)


needs_int8 = pytest.mark.skipif(not int8_supported(), reason="this torch has no x86 int8 backend")


@needs_int8
def test_int8_quantizes_a_network_with_clear_margins() -> None:
    """A network whose logits are far apart: int8 must run, agree fully and stay close to fp32."""
    from shared.engine.quantize import quantize

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(2, 2)).eval()
    conv, fc = net[0], net[4]
    with torch.no_grad():  # channel 0 = relu(x), channel 1 = relu(-x) of input channel 0; logits 5x those
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 1, 1], conv.weight[1, 0, 1, 1] = 1.0, -1.0
        fc.weight.copy_(5 * torch.eye(2))
        fc.bias.zero_()
    signs = torch.tensor([1.0, -1.0] * 8).view(16, 1, 1, 1)
    batch = (signs * (1 + torch.rand(16, 3, 8, 8))).contiguous(memory_format=torch.channels_last)
    result = quantize(net, batch)
    assert result.model is not None and result.reason is None and result.agreement == 1.0
    with torch.inference_mode():
        assert torch.allclose(result.model(batch), net(batch), atol=0.2)


@needs_int8
def test_int8_scoring_matches_fp32_or_says_why_not(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    fp32 = score(ckpt, data / "val", precision="fp32", cache_dir=tmp_path)
    int8 = score(ckpt, data / "val", precision="int8", cache_dir=tmp_path)
    assert fp32["precision"] == "fp32" and "int8_agreement" not in fp32
    # the val folder's 12 images are all calibration images: int8 runs only if it agrees on every
    # one, and a near tie on some CPU may make it fall back instead; either way the labels match
    assert int8["labels"] == fp32["labels"] and int8["accuracy"] == fp32["accuracy"]
    if int8["precision"] == "int8":
        assert int8["int8_fallback"] is None and int8["int8_agreement"] == 1.0
        assert np.abs(np.asarray(int8["probs"]) - np.asarray(fp32["probs"])).max() < 0.1
    else:
        assert int8["precision"] == "fp32" and "agreed with fp32" in int8["int8_fallback"]
    items = list_numbered(data / "test")
    whole = score(ckpt, data / "test", precision="int8", cache_dir=tmp_path)
    part = score(ckpt, data / "test", precision="int8", items=items[5:], cache_dir=tmp_path)
    # calibrated on the whole folder, not the shard: a shard's rows are the unsharded run's rows
    assert part["precision"] == whole["precision"]
    assert np.allclose(np.asarray(part["probs"]), np.asarray(whole["probs"])[5:], atol=1e-5)


@needs_int8
def test_int8_falls_back_to_fp32_with_the_reason(trained: tuple[Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.engine.quantize as quantize

    data, ckpt = trained
    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # no network can pass: the check must refuse it
    out = score(ckpt, data / "val", precision="int8", cache_dir=tmp_path)
    assert out["precision"] == "fp32" and out["int8_agreement"] == 1.0
    assert "int8 agreed with fp32 on 100.0% of the calibration images" in out["int8_fallback"]
    # under auto, the job's own precision: it trained in fp32 (an auto fallback ran bf16 on a bf16 CPU)
    assert score(ckpt, data / "val", precision="auto", cache_dir=tmp_path)["precision"] == "fp32"
    # the conversion took the loaded network without a copy: the fallback's is loaded again, intact
    fp32 = score(ckpt, data / "val", precision="fp32", cache_dir=tmp_path)
    assert np.array_equal(np.asarray(out["probs"]), np.asarray(fp32["probs"]))

    class DataDependent(torch.nn.Module):  # control flow on values: FX cannot trace it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean((2, 3)) if x.sum() > 0 else -x.mean((2, 3))

    refused = quantize.quantize(DataDependent(), torch.randn(4, 3, 8, 8))
    assert refused.model is None and refused.reason.startswith("int8 unavailable for this network")
