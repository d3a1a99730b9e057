#!/usr/bin/env bash
# Installs everything (launch/install.sh), then lints and runs the whole test suite with the
# installed Python (.venv/bin/python, or the active venv/conda env: launch/python_env.sh).
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install.sh
source launch/python_env.sh
echo "== ruff"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
echo "== pytest"
# Two pytest-xdist workers: compiling dominates the suite and is mostly single-threaded,
# so 2 workers on this project's 2-core reference machine take ~60% of one worker's time.
# Under tcmalloc, like the trainer (learned_resize/runtime/allocator.py), when it is installed.
preload=$("$PY" -c "from learned_resize.runtime import allocator as h; print(h.environment('tcmalloc')['LD_PRELOAD'])")
LD_PRELOAD="$preload" "$PY" -m pytest -q -n "${PYTEST_WORKERS:-2}" --durations=15 "$@"
