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
    """torch.save to a temp file in the same folder, fsync, rename: a reader sees old or new, never half
    (a full disk: DiskFull, from atomic_write)."""
    with atomic_write(path, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint dict, on the CPU; CheckpointError if missing, unreadable or incomplete.

    mmap: the tensors are mapped from the file, read only when touched, for a reader that needs part
    of it: inference needs the model's weights, not the optimizer's two moments (twice their size).
    They stay backed by the file, so copy what is kept (`load_for_inference` does).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
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
    state = load_checkpoint(checkpoint, mmap=True)
    spec = checkpoint_spec(state, checkpoint)
    classes = [str(c) for c in state["classes"]]
    # copies out of the mapping: a file rewritten in place while the job runs must not reach its weights
    weights = {name: tensor.clone() for name, tensor in state["model"].items()}
    try:
        model = _with_weights(without_pretrained(spec), classes, weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{checkpoint}: weights do not match its spec ({first})") from None
    return model.eval(), spec, classes


def _with_weights(spec: TrainSpec, classes: list[str], weights: dict[str, torch.Tensor]) -> nn.Module:
    """The network with `weights` as its tensors. Built on the meta device, so its random initialisation,
    which the weights replace, is skipped (0.2 s for resnet18); a network with a tensor the checkpoint
    does not hold (a buffer that is not saved) is built for real instead, and that tensor initialised."""
    with torch.device("meta"):
        model = model_for(spec, classes)
    model.load_state_dict(weights, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = model_for(spec, classes)
        model.load_state_dict(weights)
    return model


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
