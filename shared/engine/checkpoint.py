"""Checkpoints: written atomically, read with weights_only=True, checked against the spec.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects):
model (fp32 state_dict), optimizer, scheduler, epoch, rng, spec (JSON dict), classes, history,
best_val_acc, best_epoch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from shared.atomic import atomic_write
from shared.errors import CheckpointError
from shared.spec import TrainSpec

FORMAT = 1
REQUIRED = ("model", "optimizer", "scheduler", "epoch", "rng", "spec", "classes", "history", "best_val_acc")


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, rename: a reader sees old or new, never half."""
    with atomic_write(path, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint dict, on the CPU; CheckpointError if missing, unreadable or incomplete."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for bad files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    missing = [k for k in REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not an orch checkpoint (missing {', '.join(missing)})")
    checked: dict[str, Any] = state
    return checked


def checkpoint_spec(state: dict[str, Any], path: Path) -> TrainSpec:
    try:
        return TrainSpec.model_validate(state["spec"])
    except ValidationError as exc:
        raise CheckpointError(f"{path}: its spec no longer validates ({exc.errors()[0]['msg']})") from None


def model_for(spec: TrainSpec, classes: list[str]) -> nn.Module:
    """The network `spec` trains, sized to the classes found in the data."""
    from shared.models import build_model

    return build_model(spec.model_for_classes(len(classes)))


def without_pretrained(spec: TrainSpec) -> TrainSpec:
    """`spec` building random weights: for a model whose weights come from a checkpoint, so the
    pretrained file is neither read again nor needed any more."""
    return spec.model_copy(update={"model": spec.model.model_copy(update={"pretrained": None})})


def load_for_inference(checkpoint: Path) -> tuple[nn.Module, TrainSpec, list[str]]:
    """(model in eval mode on the CPU, its TrainSpec, its class names) from a checkpoint file."""
    state = load_checkpoint(checkpoint)
    spec = checkpoint_spec(state, checkpoint)
    classes = [str(c) for c in state["classes"]]
    model = model_for(without_pretrained(spec), classes)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{checkpoint}: weights do not match its spec ({first})") from None
    return model.eval(), spec, classes


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
