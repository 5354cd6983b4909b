"""The training engine: train, score, load_for_inference. Imports torch (the worker side only)."""
from __future__ import annotations

from shared.engine.checkpoint import load_for_inference
from shared.engine.predict import score
from shared.engine.trainer import train

__all__ = ["train", "score", "load_for_inference"]
