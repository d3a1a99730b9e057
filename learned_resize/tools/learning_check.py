"""device_check's learning row: a config trained from scratch on in-memory Fashion-MNIST
(the idx files of Debian's `dataset-fashion-mnist`; separable synthetic images when
they are absent) through `learned_resize.steps.Steps`, then evaluated on held-out
images. No input pipeline, so grain and TFDS are not needed.
"""

import gzip
import math
import os

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def _read_idx(path: str) -> np.ndarray:
    """An idx file of unsigned bytes (gzip or plain) as an array of its header's shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data[4 : 4 + 4 * ndim], ">u4"))
    if data[2] != 0x08 or len(data) != 4 + 4 * ndim + math.prod(shape):
        raise ValueError(f"{path} is not an idx file of unsigned bytes of shape {shape}.")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(directory: str = FASHION_MNIST_DIR):
    """((train images, labels), (test images, labels)) as uint8 [N, 28, 28, 1], int32 [N]."""
    splits = []
    for stem in ("train", "t10k"):
        images = _read_idx(os.path.join(directory, f"{stem}-images-idx3-ubyte.gz"))
        labels = _read_idx(os.path.join(directory, f"{stem}-labels-idx1-ubyte.gz"))
        splits.append((images[..., None], labels.astype(np.int32)))
    return tuple(splits)


def synthetic_images(num: int, classes: int = 10, seed: int = 0):
    """Separable stand-in for Fashion-MNIST: a fixed 28x28 template per class plus noise."""
    templates = np.random.default_rng(1234).uniform(0, 255, (classes, 28, 28, 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, num).astype(np.int32)
    noise = rng.normal(0, 40, (num, 28, 28, 1))
    return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels


def run(config, num_steps: int, eval_images: int, margin: float) -> tuple[bool, dict, str]:
    """(learned, values, one-line summary) of training config from scratch for num_steps
    steps on Fashion-MNIST (synthetic images without it), then evaluating on up to
    eval_images held-out images; learned: the loss fell and top-1 >= chance + margin."""
    import jax

    from learned_resize import steps as steps_lib
    from learned_resize.runtime import mesh as mesh_lib

    source = "Fashion-MNIST"
    try:
        (train_x, train_y), (test_x, test_y) = fashion_mnist()
    except (OSError, ValueError):
        source = f"synthetic ({FASHION_MNIST_DIR} missing)"
        (train_x, train_y), (test_x, test_y) = synthetic_images(6000), synthetic_images(2000, 10, 1)
    batch_size, classes = config.batch_size, config.data.num_classes
    mesh = mesh_lib.create_mesh()
    trainer = steps_lib.Steps(config, mesh, len(train_x) // batch_size, num_steps)
    state, rest = trainer.init(jax.random.key(config.seed))
    order = np.random.default_rng(0).permutation(len(train_x))
    losses = []
    for step in range(num_steps):
        index = order[(np.arange(batch_size) + step * batch_size) % len(order)]
        batch = {
            "image": train_x[index],
            "label": train_y[index],
            "skipped": np.zeros(batch_size, np.int32),
        }
        state, metrics = trainer.train_step(state, mesh_lib.global_batch(batch, mesh), rest)
        losses.append(metrics["loss"])
    losses = np.asarray(jax.device_get(losses), np.float64)
    correct = count = 0
    eval_images = min(eval_images, len(test_x)) // batch_size * batch_size
    for start in range(0, eval_images, batch_size):
        batch = {
            "image": test_x[start : start + batch_size],
            "label": test_y[start : start + batch_size],
            "mask": np.ones(batch_size, np.float32),
            "skipped": np.zeros(batch_size, np.int32),
        }
        out = trainer.eval_step(state, mesh_lib.global_batch(batch, mesh), rest)
        correct += float(out["correct_top1"])
        count += float(out["count"])
    top1 = correct / count
    window = max(1, num_steps // 10)
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    chance = 1 / classes
    learned = last < first and top1 >= chance + margin
    summary = (
        f"{source}, {num_steps} steps of {batch_size}: loss {first:.3f} -> {last:.3f}, "
        f"held-out top-1 {top1:.3f} on {int(count)} images (chance {chance:.2f}, "
        f"needs >= {chance + margin:.2f})"
    )
    values = {
        "data": source,
        "steps": num_steps,
        "batch": batch_size,
        "loss_first": first,
        "loss_last": last,
        "top1": top1,
        "eval_images": int(count),
        "chance": chance,
    }
    return learned, values, summary
