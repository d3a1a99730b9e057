"""Test setup: 8 simulated CPU devices, set before JAX initialises its backend.

Compiling is most of the suite's time, and many tests (and the subprocesses they
start: resumed runs, multi-process runs, CLIs) compile the same programs, so the
whole session shares one persistent XLA compilation cache in a temporary directory
(inherited by subprocesses through the environment). It never outlives the session.
"""

import atexit
import os
import shutil
import sys
import tempfile

# The repository root, so that tests import the config files: `from configs import tiny`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="learned_resize_test_xla_cache_")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

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
    (root / "tfds").mkdir()  # A data_dir must exist (a typo is an error, not a new copy).
    return str(root / "source"), str(root / "tfds"), arrays
