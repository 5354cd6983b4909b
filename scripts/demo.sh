#!/usr/bin/env bash
# The demo, end to end on the embedded default (SQLite + filesystem broker under ORCH_HOME):
# make a data set, start a worker, run a small ablation to the end, print the leaderboard and write
# report.html (one offline page: statistics and charts) and ablation.png (its overview chart).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ORCH_HOME="$PWD/.orch-demo"   # a fresh home each run, so the report shows this run only
rm -rf "$ORCH_HOME" demo-data report.html ablation.png
orch() { .venv/bin/orch "$@"; }

orch data synth demo-data --train 1000 --val 200 --test 200 --size 64 --seed 0
# Not through the function: $! must be the worker itself. SIGTERM is Celery's warm shutdown
# (a background job of a script ignores SIGINT).
.venv/bin/orch worker > "$PWD/demo-worker.log" 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT

# The ImageNet stem (7x7 stride 2 + max-pool) takes 64 px images to 16 px at once: 0.15 instead
# of the small stem's 2.2 G multiply-adds an image, so six 4-epoch runs take a few minutes on a
# laptop CPU.
orch submit ablation --data demo-data/train --val demo-data/val --model resnet18 --stem imagenet \
    --norm bn,ln,in --seeds 0,1 --epochs 4 --image-size 64 --batch-size 64 --lr 0.001 --study norms --wait
orch report --study norms
orch submit score --best-of 1 --data demo-data/test --labels demo-data/test_labels.csv \
    --out demo-data/predictions.csv --shards 2 --wait
orch report --metric test_acc
head -3 demo-data/predictions.csv
orch report --study norms --html report.html   # after scoring: test accuracy beside val accuracy
bash scripts/docs_images.sh ablation.png         # the chart the README shows (docs/ablation.png)
