#!/usr/bin/env bash
# Installs everything learned_resize needs on a fresh Debian/Ubuntu machine (Python 3.11+):
# the embedded dataset's Debian package, the package with its dev tools, the offline VGG
# weights cache, and the prepared Fashion-MNIST TFDS dataset. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "== apt: dataset-fashion-mnist"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
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
