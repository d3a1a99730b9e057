"""steps.Steps on a tiny model: one train step against an independent recomputation of the
loss, gradients and SGD update; the eval step's sums; all_finite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize import steps as steps_lib
from learned_resize.config import defaults, validation
from learned_resize.runtime import mesh as mesh_lib

NUM_CLASSES = 10
SMOOTHING = 0.1


def _config(learning_rate=0.1, weight_decay=0.0):
    config = defaults.base_config()
    config.model.name = "small_cnn"
    config.model.dtype = "float32"
    config.data.channels = 1
    config.data.num_classes = NUM_CLASSES
    config.data.mean = (0.3,)
    config.data.std = (0.25,)
    config.input_size = (16, 16)
    config.resizer.kind = "learned"
    config.resizer.num_filters = 4
    config.resizer.output_size = (8, 8)
    config.batch_size = 2 * jax.device_count()
    config.num_eval_images = 2
    config.optim.learning_rate = learning_rate
    config.optim.reference_batch_size = config.batch_size  # the rate is not rescaled
    config.optim.schedule = "constant"
    config.optim.momentum = 0.0  # plain SGD: update = -lr * gradient
    config.optim.weight_decay = weight_decay
    config.optim.label_smoothing = SMOOTHING
    validation.validate_config(config)
    return config


def _batch(batch_size: int) -> dict:
    rng = np.random.default_rng(0)
    skipped = np.zeros(batch_size, np.int32)
    skipped[:2] = 1
    mask = np.ones(batch_size, np.int32)
    mask[-3:] = 0
    return {
        "image": rng.integers(0, 256, (batch_size, 16, 16, 1), np.uint8),
        "label": rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32),
        "skipped": skipped,
        "mask": mask,
    }


def _reference_loss(logits, labels):
    """Label-smoothed softmax cross-entropy, written out: targets (1 - e) one-hot + e / K."""
    targets = jax.nn.one_hot(labels, NUM_CLASSES) * (1 - SMOOTHING) + SMOOTHING / NUM_CLASSES
    log_probs = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    return -jnp.mean(jnp.sum(targets * log_probs, axis=-1))


@pytest.fixture(scope="module")
def one_step():
    """Runs one train step with weight decay; returns everything the tests compare."""
    lr, wd = 0.1, 0.01
    config = _config(learning_rate=lr, weight_decay=wd)
    mesh = mesh_lib.create_mesh()
    trainer = steps_lib.Steps(config, mesh, steps_per_epoch=10, num_steps=100)
    state, rest = trainer.init(jax.random.key(0))
    before = jax.device_get(state)
    local = _batch(config.batch_size)
    batch = mesh_lib.global_batch(local, mesh)
    new_state, metrics = trainer.train_step(state, batch, rest)  # `state` is donated
    return {
        "config": config,
        "trainer": trainer,
        "lr": lr,
        "wd": wd,
        "before": before,
        "rest": rest,
        "local": local,
        "batch": batch,
        "after": jax.device_get(new_state),
        "new_state": new_state,
        "metrics": jax.device_get(metrics),
    }


def _apply(trainer, params, stats, rest, images, train):
    """The model applied outside Steps: logits and the BN statistics after the call."""
    stats = jax.tree.map(jnp.asarray, stats)  # writable: train mode updates them
    model = nnx.merge(trainer.graphdef, params, stats, rest, copy=True)
    logits = model(jnp.asarray(images), train=train)
    return logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def test_step_counter_and_reported_scalars(one_step):
    m = one_step["metrics"]
    assert int(one_step["before"]["step"]) == 0
    assert int(one_step["after"]["step"]) == 1
    np.testing.assert_allclose(m["learning_rate"], one_step["lr"], rtol=1e-7)
    assert int(m["skipped_images"]) == 2


def test_loss_and_gradients_match_a_recomputation(one_step):
    trainer, before, rest, local = (one_step[k] for k in ("trainer", "before", "rest", "local"))

    def loss_fn(params):
        logits, stats = _apply(
            trainer, params, before["batch_stats"], rest, local["image"], train=True
        )
        return _reference_loss(logits, jnp.asarray(local["label"])), (logits, stats)

    (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(before["params"])
    m = one_step["metrics"]
    np.testing.assert_allclose(m["loss"], loss, rtol=1e-5)
    # A loss near log(10) at initialisation, so the comparison is of a real number.
    assert 1.0 < float(loss) < 4.0
    np.testing.assert_allclose(
        m["accuracy"], np.mean(np.argmax(logits, -1) == local["label"]), rtol=1e-6
    )
    global_norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads)))
    np.testing.assert_allclose(m["grad_norm"], global_norm, rtol=1e-4)
    # BN statistics come from the train-mode forward pass.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        one_step["after"]["batch_stats"],
        jax.device_get(stats),
    )

    # SGD without momentum, L2 on kernels (ndim > 1) only:
    # new = old - lr * (grad + wd * old) for kernels, old - lr * grad otherwise.
    lr, wd = one_step["lr"], one_step["wd"]

    def expected(old, g):
        old, g = np.asarray(old, np.float64), np.asarray(g, np.float64)
        decay = wd * old if old.ndim > 1 else 0.0
        return old - lr * (g + decay)

    want = jax.tree.map(expected, before["params"], jax.device_get(grads))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        one_step["after"]["params"],
        want,
    )
    moved = jax.tree.leaves(
        jax.tree.map(
            lambda a, b: np.max(np.abs(a - b)), one_step["after"]["params"], before["params"]
        )
    )
    assert max(moved) > 1e-4  # lr 0.1 moves the parameters


def test_tiny_learning_rate_barely_moves_params():
    config = _config(learning_rate=1e-7)
    mesh = mesh_lib.create_mesh()
    trainer = steps_lib.Steps(config, mesh, steps_per_epoch=10, num_steps=100)
    state, rest = trainer.init(jax.random.key(0))
    before = jax.device_get(state["params"])
    batch = mesh_lib.global_batch(_batch(config.batch_size), mesh)
    new_state, _ = trainer.train_step(state, batch, rest)
    moved = jax.tree.leaves(
        jax.tree.map(
            lambda a, b: np.max(np.abs(a - b)), jax.device_get(new_state["params"]), before
        )
    )
    assert max(moved) < 1e-4


def test_eval_step_sums_over_the_mask(one_step):
    trainer, local = one_step["trainer"], one_step["local"]
    state, after = one_step["new_state"], one_step["after"]
    out = jax.device_get(trainer.eval_step(state, one_step["batch"], one_step["rest"]))
    batch_size = one_step["config"].batch_size
    mask = local["mask"].astype(bool)
    assert int(out["count"]) == mask.sum() == batch_size - 3
    assert int(out["skipped"]) == 2

    logits, _ = _apply(
        trainer, after["params"], after["batch_stats"], one_step["rest"], local["image"], False
    )
    logits = np.asarray(logits, np.float64)
    labels = local["label"]
    top1 = np.argmax(logits, -1) == labels
    top5 = np.array([label in np.argsort(-row)[:5] for row, label in zip(logits, labels)])
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), -1, keepdims=True))
    nll = -log_probs[np.arange(batch_size), labels]
    assert int(out["correct_top1"]) == top1[mask].sum()
    assert int(out["correct_top5"]) == top5[mask].sum()
    np.testing.assert_allclose(out["loss_sum"], nll[mask].sum(), rtol=1e-5)


def test_all_finite_spots_a_planted_nan(one_step):
    trainer, after = one_step["trainer"], one_step["after"]
    assert bool(trainer.all_finite(after))
    bad = jax.tree.map(np.array, after)
    leaf = jax.tree.leaves(bad["params"])[0]
    leaf.flat[0] = np.nan
    assert not bool(trainer.all_finite(bad))
    bad = jax.tree.map(np.array, after)
    jax.tree.leaves(bad["batch_stats"])[0].flat[-1] = np.inf
    assert not bool(trainer.all_finite(bad))
