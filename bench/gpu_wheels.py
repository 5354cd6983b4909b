"""The wheels orch needs on the lent GPU machine that its image lacks, downloaded here into .whl/.

The device tool's H200 machine (../.library/device/README.md, KINDS.md) reaches no network: `bash
scripts/setup.sh` cannot make .venv there. Its `python3` (3.12) already holds PyTorch, torchvision,
NVML's bindings, numpy, pillow, click, rich and matplotlib; orch's other dependencies (Celery, kombu,
SQLAlchemy, alembic, pydantic, simplejpeg...) travel as wheels, which `bench/gpu_check.sh` installs
there with `pip --no-index` when it finds .whl/:

    .venv/bin/python bench/gpu_wheels.py         # here, with PyPI reachable: .whl/ (16 MB; .gitignore'd)
    # then the device tool: run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=560)

The list is orch's runtime dependencies, walked from this .venv's installed metadata (so each wheel is
the version the tests pass with), without PyTorch and without what the image holds (DEVICE_HAS, from
KINDS.md's package list of 2026-11-17). `--python-version 3.11` makes a set for this machine, to try
the same install in a venv that holds only torch (what the GPU check does, on the CPU).
"""
from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
# on the image already (KINDS.md): carrying another build of these could break torch's own imports
DEVICE_HAS = {"click", "contourpy", "cycler", "fonttools", "humanize", "kiwisolver", "markdown-it-py", "markupsafe",
              "matplotlib", "mdurl", "numpy", "packaging", "pillow", "prometheus-client", "pygments", "pyparsing",
              "python-dateutil", "rich", "six", "typing-extensions", "nvidia-ml-py"}
NOT_CARRIED = {"orch", "torch", "torchvision"}  # orch runs from the checkout; torch is the image's
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]


def key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(python_version: str) -> list[str]:
    """orch's runtime dependencies, with the extras it asks for (celery[redis], psycopg[binary]), on Linux."""
    this_python = platform.python_version()
    full = this_python if this_python.startswith(f"{python_version}.") else f"{python_version}.0"
    env = {"python_version": python_version, "python_full_version": full, "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix"}
    seen: dict[str, set[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = [("orch", frozenset())]
    while todo:
        name, extras = todo.pop()
        if key(name) in seen and extras <= seen[key(name)]:
            continue
        seen.setdefault(key(name), set()).update(extras)
        if key(name) in NOT_CARRIED - {"orch"}:
            continue
        for line in requires(name) or []:
            req = Requirement(line)
            wanted = req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in {"", *extras})
            if wanted:
                todo.append((req.name, frozenset(req.extras)))
    return sorted(n for n in seen if n not in NOT_CARRIED and n not in DEVICE_HAS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.12", help="the device's python3 [3.12]")
    parser.add_argument("--dest", type=Path, default=REPO / ".whl")
    args = parser.parse_args()
    names = runtime_closure(args.python_version)
    try:
        pins = [f"{name}=={version(name)}" for name in names]
    except PackageNotFoundError as exc:
        raise SystemExit(f"{exc.args[0]} is not installed here: run `bash scripts/setup.sh` first") from None
    args.dest.mkdir(parents=True, exist_ok=True)
    for stale in args.dest.glob("*.whl"):  # two versions of one package there stop the whole --no-index install
        stale.unlink()
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", args.python_version, "--implementation", "cp", *platforms,
                    "-d", str(args.dest), *pins], check=True)
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(pins)} packages for Python {args.python_version}: {', '.join(pins)}")
    print(f"{args.dest}: {len(wheels)} wheels, {size:.1f} MiB (the device tool carries at most 64 MiB in all)")


if __name__ == "__main__":
    main()
