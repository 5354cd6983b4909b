#!/usr/bin/env bash
# The GPU check (issue 11): resnet18 and resnet50 at 224 px in bf16, orch end to end against the
# compute-only ceiling, with the GPU's busy share sampled every 100 ms (bench/gpu_check.py). Under 8
# minutes on one H100/H200-class GPU.
#
# Two ways to set up, chosen by what is here:
# - .whl/ present: the device tool's machine, which reaches no network. Its python3 holds PyTorch and
#   NVML's bindings; the rest of orch's dependencies come as wheels made beforehand, with PyPI
#   reachable, by bench/gpu_wheels.py, and orch runs from this checkout:
#       .venv/bin/python bench/gpu_wheels.py      # here: .whl/, which .gitignore keeps out of git
#       run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=560)
# - otherwise: .venv as the README makes it, with the [gpu] extra (NVML's bindings).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi -L || { echo "no NVIDIA GPU here (nvidia-smi failed)" >&2; exit 1; }
if [ -d .whl ]; then
  site=$(mktemp -d)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
  export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"  # the checkout first: orch is not installed
  python=python3
else
  bash scripts/setup.sh
  .venv/bin/python -m pip install --quiet -e '.[gpu]'
  python=.venv/bin/python
fi
"$python" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")'
PYTHONUNBUFFERED=1 timeout 480 "$python" bench/gpu_check.py "$@"
