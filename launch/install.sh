#!/usr/bin/env bash
# Installs everything learned_resize needs on a fresh Debian/Ubuntu machine (Python 3.11+), as
# root or with sudo: from apt the embedded dataset's package, tcmalloc and (for the system
# Python) python3-venv; a virtual environment .venv in the checkout, unless a venv or conda env
# is active (launch/python_env.sh says which Python is used); the package with its dev tools;
# the offline VGG weights cache and the prepared Fashion-MNIST TFDS dataset. Safe to run again.
#
#   bash launch/install.sh            # CPU (and TPU VMs: add --tpu)
#   bash launch/install.sh --cuda     # NVIDIA GPUs: jax[cuda12], CUDA 12 from pip wheels
#   bash launch/install.sh --cuda=13  # ... CUDA 13 (drivers >= 580)
#   bash launch/install.sh --tpu      # Cloud TPU VMs: jax[tpu] (libtpu)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="dev"
for arg in "$@"; do
  case "$arg" in
    --cuda | --cuda=12) extras="dev,cuda12" ;;
    --cuda=13) extras="dev,cuda13" ;;
    --tpu) extras="dev,tpu" ;;
    *)
      echo "error: unknown option '$arg'; use --cuda, --cuda=13, --tpu or nothing (CPU)" >&2
      exit 1
      ;;
  esac
done
has_nvidia_driver() { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }
if [[ "$extras" == *cuda* ]] && ! has_nvidia_driver; then
  echo "error: --cuda needs an NVIDIA driver and none answers (nvidia-smi -L); install the" \
    "driver (CUDA 12 wheels need >= 525) or drop --cuda" >&2
  exit 1
fi

source launch/python_env.sh
for py in "$BASE_PY" "$PY"; do
  if [ -n "$py" ] && [ -x "$(command -v "$py")" ] && ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $py is Python $("$py" -c 'import platform; print(platform.python_version())'); learned_resize" \
      "needs 3.11+: install one (e.g. apt-get install python3.11-venv) and run PYTHON=python3.11 bash launch/install.sh" >&2
    exit 1
  fi
done
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# Debian packages: the embedded dataset; tcmalloc, which the trainer runs under on CPU when it
# is installed (learned_resize/runtime/allocator.py says why; docs/performance.md has the
# numbers; Debian 13 and Ubuntu 24.04 call it ...4t64); python3-venv when .venv is made from
# a system Python without it (Debian splits venv/ensurepip out of python3).
apt_packages=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || apt_packages+=(dataset-fashion-mnist)
if [ -n "$BASE_PY" ] && [ ! -x "$PY" ] && ! "$BASE_PY" -c "import ensurepip, venv" 2>/dev/null; then
  apt_packages+=(python3-venv)
fi
if ! ldconfig -p 2>/dev/null | grep libtcmalloc_minimal >/dev/null; then
  apt_packages+=(libtcmalloc-minimal4)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "== apt: ${apt_packages[*]}"
  $SUDO apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}"; then
    # tcmalloc under its newer name, or not at all.
    required=()
    for p in "${apt_packages[@]}"; do [ "$p" = libtcmalloc-minimal4 ] || required+=("$p"); done
    if [ ${#required[@]} -gt 0 ]; then
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${required[@]}"
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libtcmalloc-minimal4t64 \
      || echo "warning: no tcmalloc package found; the trainer uses the system malloc (slower on CPU)."
  fi
fi

if [ -n "$BASE_PY" ] && [ ! -x "$PY" ]; then
  echo "== venv: .venv from $("$BASE_PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$BASE_PY" -m venv .venv
fi
echo "== pip: learned_resize[$extras] into $PY"
"$PY" -m pip install -q --disable-pip-version-check -e ".[$extras]"
if [[ "$extras" == *cuda* ]]; then
  "$PY" -c "import jax; d = jax.devices(); assert d[0].platform == 'gpu', d; print('== jax sees', d)" \
    || { echo "error: jax installed with CUDA but sees no GPU; check the driver (nvidia-smi)" >&2; exit 1; }
elif has_nvidia_driver; then
  echo "note: an NVIDIA driver is present; run 'bash launch/install.sh --cuda' for jax on the GPU."
fi

echo "== data: Fashion-MNIST as a TFDS array_record dataset (one time)"
"$PY" -m learned_resize.data.prepare --dataset=fashion_mnist_local

if [ -f learned_resize/retarget/weights.py ]; then
  echo "== weights: offline VGG-19/VGG-16 ImageNet cache (one time)"
  "$PY" -m learned_resize.retarget.weights --fetch
fi

if [ -n "$BASE_PY" ]; then
  echo "== done. Run with .venv/bin/python (e.g. .venv/bin/python -m learned_resize.main ...)," \
    "or activate it first: source .venv/bin/activate"
else
  echo "== done. Installed into $PY"
fi
