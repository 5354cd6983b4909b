#!/usr/bin/env bash
# Set up and run the whole test suite. Integration tests start real workers against the
# embedded broker and against the local Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# Linters first (seconds): ruff (pyflakes, isort, bugbear, pyupgrade) and mypy, strict on shared/.
.venv/bin/ruff check . || exit 1
.venv/bin/mypy shared worker orchestrator || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $rc
