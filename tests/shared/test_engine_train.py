"""train(): checkpoints, resume equivalence, seeding, NaN stop, cancel, and bad folders before the model."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import shared.engine.trainer as engine_train
from shared.data import write_synthetic
from shared.engine import load_for_inference, train
from shared.errors import CheckpointError, DataError, JobCancelled, NonFiniteLoss
from shared.spec import ModelSpec
from tests.shared.data_helpers import one_thread, tiny_spec, write_image

TIMING = ("images_per_s", "seconds")
KEYS = {"epoch", "train_loss", "val_loss", "val_acc", "images_per_s", "seconds", "lr"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("engine") / "d"
    write_synthetic(out, classes=["cat", "dog"], counts={"train": 40, "val": 16, "test": 12}, size=32)
    return out


class Interrupt(Exception):
    pass


def metrics_only(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


def test_resume_after_epoch_2_of_4_matches_an_uninterrupted_run(data: Path, tmp_path: Path) -> None:
    spec = tiny_spec(data / "train", data / "val", epochs=4, batch_size=16, schedule="step", label_smoothing=0.1)
    whole: list[dict[str, Any]] = []
    train(spec, tmp_path / "whole", whole.append, cache_dir=tmp_path / "cache")

    def crash_after_2(m: dict[str, Any]) -> None:
        if m["epoch"] == 2:
            raise Interrupt  # the process dies after the epoch-2 checkpoint, before the store saw it
    with pytest.raises(Interrupt):
        train(spec, tmp_path / "cut", crash_after_2, cache_dir=tmp_path / "cache")
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 2

    resumed: list[dict[str, Any]] = []
    result = train(spec, tmp_path / "cut", resumed.append, cache_dir=tmp_path / "cache")
    assert [m["epoch"] for m in resumed] == [1, 2, 1 + 2, 4]  # epochs 1-2 replayed from the checkpoint
    assert metrics_only(resumed) == metrics_only(whole)  # exact: same seed and spec, same numbers
    assert all(set(m) == KEYS for m in whole) and whole[2]["lr"] == pytest.approx(1e-4)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result["epochs"] == 4 and result["classes"] == ["cat", "dog"]
    check_hits(result, resumed)
    assert result["val_hits"] == train(spec, tmp_path / "whole", lambda m: None, cache_dir=tmp_path / "cache")["val_hits"]
    assert (result["val_images"], result["val_majority"]) == (16, 0.5)  # the report's chance level: 8 of each
    assert (result["bn_momentum"], result["steps_per_epoch"]) == (0.1, 3)  # 40 images at 16: how far BN's stats moved
    assert result["precision"] == spec.precision  # asked for by name, it is what ran
    # the epochs resumed from ran in the cut run: the job's wall time counts them (the supervisor adds it)
    assert result["earlier_epochs_s"] == pytest.approx(sum(m["seconds"] for m in resumed[:2]), abs=0.01)
    assert result["earlier_epochs_s"] > 0 and "earlier_epochs_s" not in train(
        spec, tmp_path / "fresh", lambda m: None, cache_dir=tmp_path / "cache")
    again: list[dict[str, Any]] = []
    replayed = train(spec, tmp_path / "cut", again.append, cache_dir=tmp_path / "cache")
    timings = {"startup": None, "earlier_epochs_s": None}  # start-up timings vary by nature
    assert {**replayed, **timings} == {**result, **timings}
    assert replayed["earlier_epochs_s"] == pytest.approx(sum(m["seconds"] for m in again), abs=0.01)  # all 4 ran before
    assert metrics_only(again) == metrics_only(whole)  # a finished job only replays


def check_hits(result: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
    """The result's validation hits: one bit an image, as many right as the epoch's accuracy says, at
    the best epoch (the earliest of the highest val_acc) and the last."""
    from shared.val_hits import unpack

    hits = result["val_hits"]
    best = max(epochs, key=lambda m: (m["val_acc"], -m["epoch"]))
    assert (hits["best_epoch"], hits["last_epoch"]) == (best["epoch"], epochs[-1]["epoch"])
    assert hits["images"] == result["val_images"] and len(hits["set"]) == 16
    for which, epoch in (("best", best), ("last", epochs[-1])):
        bits = unpack(hits[which], hits["images"])
        assert sum(bits) == round(epoch["val_acc"] * hits["images"])


def test_checkpoint_contents_load_weights_only_and_best(data: Path, tmp_path: Path) -> None:
    spec = tiny_spec(data / "train", optimizer="sgd", epochs=2, val_fraction=0.25)  # val split off train
    seen: list[dict[str, Any]] = []
    result = train(spec, tmp_path / "w", seen.append, cache_dir=tmp_path / "cache")
    state = torch.load(result["last_checkpoint"], weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "spec", "classes", "history", "best_val_acc"} <= set(state)
    assert state["spec"] == spec.model_dump(mode="json") and state["classes"] == ["cat", "dog"]
    # the history keeps the validation hits of the best and the last epoch, which on_epoch is not given
    assert [{k: v for k, v in m.items() if k != "val_hits"} for m in state["history"]] == seen and state["epoch"] == 2
    assert all("val_hits" in m for m in state["history"] if m["epoch"] in (result["best_epoch"], 2))
    check_hits(result, seen)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state["model"].values())
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    best = torch.load(result["best_checkpoint"], weights_only=True)
    assert best["epoch"] == result["best_epoch"] and best["best_val_acc"] == result["best_val_acc"]
    assert result["best_val_acc"] == max(m["val_acc"] for m in seen)
    assert not [p for p in (tmp_path / "w").iterdir() if p.name.startswith(".")]
    model, loaded_spec, classes = load_for_inference(Path(result["best_checkpoint"]))
    assert not model.training and loaded_spec == spec and classes == ["cat", "dog"]


def test_bf16_run_keeps_fp32_weights(data: Path, tmp_path: Path) -> None:
    spec = tiny_spec(data / "train", data / "val", epochs=1, precision="bf16")
    result = train(spec, tmp_path / "w", cache_dir=tmp_path / "cache")
    state = torch.load(result["last_checkpoint"], weights_only=True)
    assert state["model"]["fc.weight"].dtype == torch.float32


class NaNAfter(nn.Module):
    """Wraps a model; its output turns NaN from the `after`-th forward pass in training."""

    def __init__(self, inner: nn.Module, after: int):
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        out = self.inner(x)
        return out * float("nan") if self.training and self.calls >= self.after else out


def test_nan_loss_stops_with_epoch_and_step(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine_train.model_for
    monkeypatch.setattr(engine_train, "model_for", lambda spec, classes: NaNAfter(real(spec, classes), after=4))
    spec = tiny_spec(data / "train", data / "val", epochs=3, batch_size=16)  # 3 steps an epoch (40 images)
    seen: list[dict[str, Any]] = []
    with pytest.raises(NonFiniteLoss, match=r"^train loss is nan at epoch 2 step 1$"):
        train(spec, tmp_path / "w", seen.append, cache_dir=tmp_path / "cache")
    assert [m["epoch"] for m in seen] == [1]
    assert torch.load(tmp_path / "w" / "last.pt", weights_only=True)["epoch"] == 1


class NaNInEval(nn.Module):
    """Wraps a model; training is fine, but every validation output is NaN (a diverged head)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out if self.training else out * float("nan")


def test_nan_validation_loss_fails_with_one_clear_line(data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the NaN reached the store, where SQLite made it a NOT NULL error, retried forever."""
    real = engine_train.model_for
    monkeypatch.setattr(engine_train, "model_for", lambda spec, classes: NaNInEval(real(spec, classes)))
    seen: list[dict[str, Any]] = []
    with pytest.raises(NonFiniteLoss, match=r"^validation loss is nan at epoch 1: the model diverged; try a lower --lr$"):
        train(tiny_spec(data / "train", data / "val", epochs=2), tmp_path / "w", seen.append,
              cache_dir=tmp_path / "cache")
    assert seen == []


def test_should_stop_cancels_between_steps(data: Path, tmp_path: Path) -> None:
    polls = iter(range(100))  # asked after decoding, after building the model, then before each step
    with pytest.raises(JobCancelled, match="epoch 1 step 3"):
        train(tiny_spec(data / "train", data / "val"), tmp_path / "w", cache_dir=tmp_path / "cache",
              should_stop=lambda: next(polls) >= 4)
    assert not (tmp_path / "w" / "last.pt").exists()


def test_a_stop_during_start_up_ends_it_before_the_next_phase(data: Path, tmp_path: Path) -> None:
    """A worker stopping while its job still decoded or probed bf16 waited out its 10-s grace: the job
    checked for a stop at its first step only, and a newer job started elsewhere first."""
    with pytest.raises(JobCancelled, match="stopped after decoding its images, before its first step"):
        train(tiny_spec(data / "train", data / "val"), tmp_path / "w", cache_dir=tmp_path / "cache",
              should_stop=lambda: True)
    polls = iter(range(100))
    with pytest.raises(JobCancelled, match="stopped after building its model"):
        train(tiny_spec(data / "train", data / "val"), tmp_path / "w", cache_dir=tmp_path / "cache",
              should_stop=lambda: next(polls) >= 1)


def test_each_batch_decoded_trained_and_validated_is_told(data: Path, tmp_path: Path) -> None:
    """A first decode of a big folder, an epoch and its validation each run for minutes: `on_progress`
    is told each of their batches (images done, of), so `orch status` can say where the job is."""
    told: list[tuple[str, int | None, int, int]] = []
    train(tiny_spec(data / "train", data / "val", epochs=2, batch_size=16), tmp_path / "w",
          cache_dir=tmp_path / "cache", on_progress=lambda *at: told.append(at))
    decoded = [at for at in told if at[0] == "decoding"]
    assert decoded == [("decoding", None, 40, 40), ("decoding", None, 16, 16)]  # train, then val: a chunk each
    for epoch in (1, 2):
        trained = [at[2:] for at in told if at[:2] == ("training", epoch)]
        assert trained == [(16, 40), (32, 40), (40, 40)]  # batches of 16, the last of 8
        assert [at[2:] for at in told if at[:2] == ("validation", epoch)] == [(16, 16)]  # at twice the batch
    assert told.index(("validation", 1, 16, 16)) < told.index(("training", 2, 16, 40))
    told.clear()
    train(tiny_spec(data / "train", data / "val", epochs=1, batch_size=16), tmp_path / "w2",
          cache_dir=tmp_path / "cache", on_progress=lambda *at: told.append(at))
    assert told and all(at[0] != "decoding" for at in told)  # the cache is read: nothing decoded


def test_resume_with_another_spec_is_refused(data: Path, tmp_path: Path) -> None:
    train(tiny_spec(data / "train", data / "val", epochs=1), tmp_path / "w", cache_dir=tmp_path / "cache")
    with pytest.raises(CheckpointError, match="different spec"):
        train(tiny_spec(data / "train", data / "val", epochs=1, lr=0.5), tmp_path / "w", cache_dir=tmp_path / "cache")


def bad_folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / kind
    names = {"empty": [], "one_class": ["cat.0.jpg", "cat.1.jpg"], "numbered": ["0.jpg", "1.jpg"],
             "corrupt": ["cat.0.jpg", "dog.0.jpg", "dog.1.jpg"]}.get(kind, [])
    if kind != "missing":
        folder.mkdir()
    for name in names:
        write_image(folder / name)
    if kind == "corrupt":
        (folder / "dog.1.jpg").write_bytes(b"truncated")
    return folder


@pytest.mark.parametrize("kind, role, message", [
    ("missing", "data", "no such folder"), ("empty", "data", "no JPEG or PNG"),
    ("one_class", "data", "only one class"), ("numbered", "val", "carry no labels"),
    ("corrupt", "data", "1 corrupt image: dog.1.jpg"), ("corrupt", "val", "1 corrupt image: dog.1.jpg"),
])
def test_bad_folders_fail_with_one_line_before_the_model_is_built(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, role: str, message: str) -> None:
    monkeypatch.setattr(engine_train, "model_for", lambda *a: pytest.fail("built a model for bad data"))
    folder = bad_folder(tmp_path, kind)
    spec = tiny_spec(folder, data / "val") if role == "data" else tiny_spec(data / "train", folder)
    with pytest.raises(DataError, match=message) as err:
        train(spec, tmp_path / "w", cache_dir=tmp_path / "cache")
    assert str(err.value).startswith(str(folder)) and "\n" not in str(err.value)
    assert not (tmp_path / "w").exists()


def test_val_folder_with_an_unknown_class(data: Path, tmp_path: Path) -> None:
    for name in ("cat.0.jpg", "cow.0.jpg"):
        write_image(tmp_path / "val" / name)
    with pytest.raises(DataError, match="class 'cow' is not one of the model's classes"):
        train(tiny_spec(data / "train", tmp_path / "val"), tmp_path / "w", cache_dir=tmp_path / "cache")


def test_a_last_batch_of_one_joins_the_batch_before(tmp_path: Path) -> None:
    """resnet18 at 32 px with the ImageNet stem ends in 1x1 maps: a batch of one image would give
    BatchNorm one value per channel, so 17 images at batch 16 train as one batch of 17."""
    out = tmp_path / "d"
    write_synthetic(out, classes=["cat", "dog"], counts={"train": 17, "val": 4}, size=32)
    assert [len(b) for b in engine_train._batches(torch.arange(17).numpy(), 16)] == [17]
    assert [len(b) for b in engine_train._batches(torch.arange(18).numpy(), 16)] == [16, 2]
    # its own cache: without one, train() decoded into ~/.orch/cache (the suite made ~/.orch)
    result = train(tiny_spec(out / "train", out / "val", epochs=1, batch_size=16), tmp_path / "run",
                   cache_dir=tmp_path / "cache")
    assert result["epochs"] == 1


def test_a_batch_of_one_at_1x1_maps_is_refused_before_training(data: Path) -> None:
    from shared.errors import SpecError
    from shared.spec import TrainSpec, parse

    spec = {"data": str(data / "train"), "batch_size": 1, "model": {"arch": "resnet18", "image_size": 32}}
    with pytest.raises(SpecError, match="^batch_size: 1 with bn .* one value per channel"):
        parse(TrainSpec, {**spec, "model": {**spec["model"], "stem": "imagenet"}})
    assert parse(TrainSpec, spec).batch_size == 1  # the small stem: 4x4 maps, 16 values per channel


def test_a_checkpoint_folder_deleted_under_a_running_job_is_made_again(data: Path, tmp_path: Path) -> None:
    """`rm -rf` of a running job's folder (a clean-up by hand) failed its next checkpoint write, a
    FileNotFoundError that failed the job for good: the folder is made again before each write."""
    import shutil

    workdir = tmp_path / "w"

    def clean_up_by_hand(metrics: dict[str, Any]) -> None:
        if metrics["epoch"] == 1:
            shutil.rmtree(workdir)

    result = train(tiny_spec(data / "train", data / "val", epochs=2), workdir, clean_up_by_hand,
                   cache_dir=tmp_path / "cache", name_for=lambda epoch: f"ckpt-e{epoch}-t1.pt")
    assert result["epochs"] == 2 and (workdir / "ckpt-e2-t1.pt").is_file()


def test_a_resume_on_changed_images_is_said(tmp_path: Path) -> None:
    """A corrupt image replaced between attempts: the resumed run trained on 41 images where its
    checkpoint's epochs saw 40, without a word. A resume on the same images says nothing."""
    import shutil

    folder = tmp_path / "d"
    write_synthetic(folder, classes=["cat", "dog"], counts={"train": 40, "val": 16}, size=32)
    spec = tiny_spec(folder / "train", folder / "val", epochs=3)

    def crash_after_1(m: dict[str, Any]) -> None:
        if m["epoch"] == 1:
            raise Interrupt
    for workdir in ("same", "changed"):
        with pytest.raises(Interrupt):
            train(spec, tmp_path / workdir, crash_after_1, cache_dir=tmp_path / "cache")
    notes: list[str] = []

    def note(kind: str, message: str) -> None:
        notes.append(f"{kind}: {message}")
    train(spec, tmp_path / "same", cache_dir=tmp_path / "cache", on_note=note)
    assert notes == []
    first = sorted((folder / "train").rglob("*.jpg"))[0]
    shutil.copy(first, first.with_name("cat.999.jpg") if first.name.startswith("cat.") else first.parent / "999.jpg")
    train(spec, tmp_path / "changed", cache_dir=tmp_path / "cache", on_note=note)
    assert notes == ["warning: resumed from epoch 1 on changed data: the training or validation folder's files (names, sizes "
                     "or modification times) differ from those the checkpoint was trained on"]


def test_a_net_keeps_its_own_batchnorm_momentum_in_its_result(data: Path, tmp_path: Path) -> None:
    """What the report judges BatchNorm's running statistics by: torchvision's MobileNetV3 moves them 0.01
    a step (analysis/running_stats.py), and a net without BatchNorm records none."""
    mobile = tiny_spec(data / "train", data / "val", epochs=1,
                       model=ModelSpec(arch="mobilenet_v3_small", image_size=32))
    result = train(mobile, tmp_path / "m", cache_dir=tmp_path / "cache")
    assert (result["bn_momentum"], result["steps_per_epoch"]) == (0.01, 3)
    grouped = tiny_spec(data / "train", data / "val", epochs=1,
                        model=ModelSpec(arch="resnet18", image_size=32, stem="imagenet", norm="gn"))
    assert "bn_momentum" not in train(grouped, tmp_path / "g", cache_dir=tmp_path / "cache")
