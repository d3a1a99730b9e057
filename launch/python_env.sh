# Sourced by launch/install.sh, launch/test.sh and launch/test_lowest.sh (from the checkout's
# root): sets PY, the Python that learned_resize is (or will be) installed into, and BASE_PY,
# the interpreter that creates the checkout's .venv when one is needed ("" if none is).
#   1. PYTHON=<interpreter>: if it runs in a venv or conda env, that env; else the checkout's
#      .venv, created from it (how CI runs it: PYTHON=/usr/bin/python3).
#   2. An active venv ($VIRTUAL_ENV) or conda env ($CONDA_PREFIX): that env.
#   3. Otherwise the checkout's .venv, created from python3. Debian's and Ubuntu's own Python
#      refuses `pip install` outside a venv (PEP 668), hence the venv.

_in_env() {
  "$1" -c 'import os, sys
sys.exit(not (sys.prefix != sys.base_prefix or os.path.isdir(os.path.join(sys.prefix, "conda-meta"))))'
}

if [ -n "${PYTHON:-}" ]; then
  if ! command -v "$PYTHON" >/dev/null; then
    echo "error: PYTHON=$PYTHON is not an executable; point it at a Python 3.11+ interpreter" >&2
    exit 1
  fi
  if _in_env "$PYTHON"; then PY="$PYTHON"; BASE_PY=""; else PY="$PWD/.venv/bin/python"; BASE_PY="$PYTHON"; fi
elif [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"; BASE_PY=""
elif [ -n "${CONDA_PREFIX:-}" ]; then
  PY="$CONDA_PREFIX/bin/python"; BASE_PY=""
else
  PY="$PWD/.venv/bin/python"; BASE_PY="python3"
fi
