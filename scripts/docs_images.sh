#!/usr/bin/env bash
# The README's picture: the demo study's overview chart (final metric beside the validation curves).
# Run scripts/demo.sh first (it calls this with ablation.png); to refresh the README's copy:
#   bash scripts/docs_images.sh            # writes docs/ablation.png
set -euo pipefail
cd "$(dirname "$0")/.."
export ORCH_HOME="${ORCH_HOME:-$PWD/.orch-demo}"
.venv/bin/orch report --study norms --plot "${1:-docs/ablation.png}" --chart overview
