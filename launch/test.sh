#!/usr/bin/env bash
# Installs everything (launch/install.sh), then lints and runs the whole test suite.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install.sh
PYTHON="${PYTHON:-python3}"
echo "== ruff"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
echo "== pytest"
"$PYTHON" -m pytest -q --durations=15 "$@"
