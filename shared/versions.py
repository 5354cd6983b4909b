"""Installed package versions, for the record a job and a report keep of what ran them."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version(name: str) -> str:
    """`name`'s installed version, or "?" where it runs from a checkout without being installed (the GPU
    check runs orch from the repository on a machine that cannot install it: bench/gpu_wheels.py)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"
