#!/usr/bin/env bash
# Installs everything learned_resize needs on a fresh Debian/Ubuntu machine (Python 3.11+):
# the embedded dataset's Debian package, tcmalloc, the package with its dev tools, the offline VGG
# weights cache, and the prepared Fashion-MNIST TFDS dataset. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# Debian packages: the embedded dataset, and tcmalloc, which the trainer runs under on
# CPU when it is installed (learned_resize/host_allocator.py says why; README
# "Performance" has the numbers). Debian 13 and Ubuntu 24.04 call it ...4t64.
apt_packages=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || apt_packages+=(dataset-fashion-mnist)
if ! ldconfig -p 2>/dev/null | grep libtcmalloc_minimal >/dev/null; then
  apt_packages+=(libtcmalloc-minimal4)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "== apt: ${apt_packages[*]}"
  $SUDO apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}"; then
    # Only the dataset is required; tcmalloc under its newer name, or not at all.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libtcmalloc-minimal4t64 \
      || echo "warning: no tcmalloc package found; the trainer uses the system malloc (slower on CPU)."
  fi
fi

PYTHON="${PYTHON:-python3}"
echo "== pip: learned_resize[dev]"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[dev]"

echo "== data: Fashion-MNIST as a TFDS array_record dataset (one time)"
"$PYTHON" -m learned_resize.datasets.prepare --dataset=fashion_mnist_local

if [ -f learned_resize/retarget/weights.py ]; then
  echo "== weights: offline VGG-19/VGG-16 ImageNet cache (one time)"
  "$PYTHON" -m learned_resize.retarget.weights --fetch
fi
