#!/usr/bin/env bash
# Make .venv and install orch with its test extras. PyTorch comes from pip (a range that admits
# the CPU/CUDA build on this machine's disk); uv and poetry would download gigabytes instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
