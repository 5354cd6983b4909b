"""Pretrained weights from a local torchvision state_dict file; nothing is downloaded."""
from __future__ import annotations

from collections.abc import Set as AbstractSet
from pathlib import Path

import torch
from torch import nn

from shared.errors import CheckpointError
from shared.torch_files import not_a_torch_file


def load_pretrained(model: nn.Module, path: str, replaceable: AbstractSet[str] = frozenset()) -> None:
    """Load a local torchvision state_dict into `model`; keys in `replaceable` may differ in shape
    (they keep their fresh initialisation, e.g. an fc for another class count)."""
    state = _read_state_dict(path)
    own = model.state_dict()
    mismatched = sorted(k for k, v in state.items() if k in own and v.shape != own[k].shape)
    bad_shapes = [k for k in mismatched if k not in replaceable]
    state = {k: v for k, v in state.items() if k not in mismatched}
    missing = sorted(k for k in set(own) - set(state)
                     if k not in replaceable and not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    problems = [f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for what, keys in (("shape mismatch in", bad_shapes), ("missing", missing),
                                   ("unexpected", unexpected)) if keys]
    if problems:
        raise CheckpointError(f"pretrained: {path} does not fit this model: {'; '.join(problems)} "
                              f"(is it a torchvision state_dict of the same arch and norm?)")
    model.load_state_dict(state, strict=False)


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"pretrained: no such file {path} (weights are never downloaded)")
    problem = not_a_torch_file(file)
    if problem is not None:
        raise CheckpointError(f"pretrained: {problem}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt, truncated or pickled-object file: one line, no traceback
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"pretrained: cannot read {path} as a state_dict: {reason[:200]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"pretrained: {path} is not a state_dict (a mapping of names to tensors)")
    return state
