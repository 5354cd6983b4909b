#!/usr/bin/env bash
# The GPU check (issue 11): on a machine with an NVIDIA GPU, set up .venv as the README says (with
# the [gpu] extra, which adds NVML's Python bindings), then run bench/gpu_check.py: resnet18 and
# resnet50 at 224 px in bf16, orch end to end against the compute-only ceiling, with the GPU's busy
# share sampled every 100 ms. Under 8 minutes on one H100/H200-class GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi -L || { echo "no NVIDIA GPU here (nvidia-smi failed)" >&2; exit 1; }
bash scripts/setup.sh
.venv/bin/python -m pip install --quiet -e '.[gpu]'
PYTHONUNBUFFERED=1 timeout 480 .venv/bin/python bench/gpu_check.py "$@"
