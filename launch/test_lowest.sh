#!/usr/bin/env bash
# Checks the lowest versions pyproject.toml claims: installs learned_resize[dev] into a second
# venv, .venv-lowest, with every direct dependency at its floor (uv's
# --resolution=lowest-direct; their own dependencies resolve as usual), prints them, and runs a
# fast subset of the suite there. .ci/run calls it after launch/test.sh.
#   PYTHON=/usr/bin/python3 bash launch/test_lowest.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
base="${PYTHON:-python3}"
venv=.venv-lowest
if [ ! -x "$venv/bin/uv" ]; then
  "$base" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check uv
fi
echo "== uv: learned_resize[dev] at the lowest direct versions into $venv"
"$venv/bin/uv" pip install -q --python "$venv/bin/python" --resolution=lowest-direct \
  --constraint launch/lowest_constraints.txt -e ".[dev]"
"$venv/bin/uv" pip list --python "$venv/bin/python" 2>/dev/null | grep -iE \
  "^(jax|jaxlib|flax|optax|orbax-checkpoint|tensorflow-datasets|grain|array-record|ml-collections|absl-py|etils|numpy|pillow|tensorboardx|safetensors|h5py|scikit-image|scipy|pytest) " \
  | tr -s ' ' | paste -sd ',' | sed 's/,/, /g'
echo "== pytest (fast subset) at the lowest versions"
# Data (tfds, grain, PIL), training with Orbax checkpoints (flax, optax, orbax), IQA (scipy),
# retargeting operators, seams and mask, and TensorBoard files; not the subprocess runs (kill/resume,
# SIGTERM), which the full suite covers.
"$venv/bin/python" -m pytest -q -n "${PYTEST_WORKERS:-2}" -m "not slow" -p no:cacheprovider \
  -k "not kill_and_resume and not sigterm" tests/data/test_pipeline.py tests/test_iqa.py \
  tests/integration/test_train.py tests/retarget/test_operators.py tests/retarget/test_seams.py \
  tests/retarget/test_mask.py tests/runtime/test_metric_writers.py \
  tests/data/test_preprocessing.py "$@"
