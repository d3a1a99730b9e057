"""Test setup: 8 simulated CPU devices, set before JAX initialises its backend."""

import os

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import gzip  # noqa: E402
import struct  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def write_idx_dataset(directory, n_train=96, n_test=40, seed=0):
    """Writes a Fashion-MNIST-format idx.gz set whose classes are learnable.

    Class k is a bright 6x6 block at one of 10 positions plus noise, so a model
    that sees the full 28x28 image can tell the classes apart.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    out = {}
    for split, n, stems in (
        ("train", n_train, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
        ("test", n_test, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    ):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            r, c = 2 + 12 * (k // 5), 2 + 5 * (k % 5)
            images[i, r : r + 6, c : c + 4] = 250
        with gzip.open(os.path.join(directory, stems[0] + ".gz"), "wb") as f:
            f.write(struct.pack(">iiii", 0x803, n, 28, 28) + images.tobytes())
        with gzip.open(os.path.join(directory, stems[1] + ".gz"), "wb") as f:
            f.write(struct.pack(">ii", 0x801, n) + labels.tobytes())
        out[split] = (images, labels)
    return out


@pytest.fixture(scope="session")
def small_fmnist(tmp_path_factory):
    """(source dir, TFDS data dir, arrays) of a small Fashion-MNIST-format dataset."""
    root = tmp_path_factory.mktemp("small_fmnist")
    arrays = write_idx_dataset(str(root / "source"))
    return str(root / "source"), str(root / "tfds"), arrays
