"""Every ImageNet backbone trains: one Trainer step on mocked imagenet2012, 64 -> learned -> 32.

The data come from `tfds.testing.mock_data` (JPEG bytes, as the catalog's
imagenet2012 stores them) through the real input pipeline with the ImageNet
recipe's Inception crop, so each test covers config -> pipeline -> resizer ->
backbone -> loss -> SGD update. One test per backbone: compiling is the cost here
(20-60 s of CPU per network). Measured savings that leave the tested code alone:
a 1-device mesh (a replicated state on 8 simulated devices does every update 8
times; test_train.py covers the sharded step), an `unsafe_rbg` PRNG key for the
initial state (its init program compiles about a third faster than threefry's;
the weaker split/fold_in guarantees do not matter here), and the Trainer's own
jitted init and step compiled at XLA:CPU's backend optimisation level 0 (about half
the compile time of a program that runs once).
"""

import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from jax.sharding import AxisType

from configs import imagenet
from learned_resize import steps as steps_lib
from learned_resize.config import validation as validation_lib
from learned_resize.data import pipeline as pipeline_lib
from learned_resize.runtime import checkpoints
from learned_resize.runtime import mesh as mesh_lib

BATCH = 8
INPUT, OUTPUT = 64, 32
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _jpeg(pixels):
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mock_imagenet():
    """imagenet2012 mocked with 16 train / 8 validation JPEGs of assorted shapes."""
    rng = np.random.default_rng(0)
    records = {
        split: [
            {
                "image": _jpeg(rng.integers(0, 256, (70 + 3 * i, 90 - 2 * i, 3), dtype=np.uint8)),
                "label": int(rng.integers(0, 1000)),
            }
            for i in range(size)
        ]
        for split, size in (("train", 16), ("validation", 8))
    }

    def as_data_source(self, split, decoders=None, **kwargs):
        del self, decoders, kwargs
        return records[split]

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        yield records


def _config(model_name):
    config = imagenet.get_config(model_name)
    config.input_size = (INPUT, INPUT)
    config.resizer.kind = "learned"
    config.resizer.output_size = (OUTPUT, OUTPUT)
    config.model.dtype = "float32"  # bf16 has its own test; XLA:CPU emulates bf16 convs slowly
    config.batch_size = BATCH
    config.optim.reference_batch_size = BATCH  # lr 0.05: updates well above f32 rounding
    config.optim.warmup_epochs = 0.0  # a warm-up would start at lr 0
    config.data.num_workers = 0
    config.data.prefetch = 0
    validation_lib.validate_config(config)
    return config


def _one_step(model_name, records):
    config = _config(model_name)
    batch = next(pipeline_lib.create_train_iterator(config, image_size=INPUT, seed=0))
    assert batch["image"].shape == (BATCH, INPUT, INPUT, 3) and batch["image"].dtype == np.uint8
    labels = {r["label"] for r in records["train"]}
    assert set(batch["label"].tolist()) <= labels

    mesh = jax.make_mesh(
        (1,), (mesh_lib.DATA_AXIS,), devices=jax.devices()[:1], axis_types=(AxisType.Auto,)
    )
    trainer = steps_lib.Steps(config, mesh, steps_per_epoch=2, num_steps=2)
    key = jax.random.key(0, impl="unsafe_rbg")
    state, rest = trainer.init.lower(key).compile(compiler_options=FAST_COMPILE)(key)
    before = jax.device_get(state)  # the step donates `state`

    def logits_shape(state, images):
        model = trainer._model(state["params"], state["batch_stats"], rest)
        return model(images, train=False)

    out = jax.eval_shape(logits_shape, state, jnp.asarray(batch["image"]))
    assert out.shape == (BATCH, 1000) and out.dtype == jnp.float32

    batch = mesh_lib.global_batch(batch, mesh)
    step = trainer.train_step.lower(state, batch, rest).compile(compiler_options=FAST_COMPILE)
    new_state, metrics = step(state, batch, rest)
    return before, jax.device_get(new_state), jax.device_get(metrics)


def _moved(a, b):
    """Per-leaf max |a - b| of two nested dicts of arrays, keyed by path."""
    flat_a = checkpoints._leaves_by_path(a)
    flat_b = checkpoints._leaves_by_path(b)
    assert flat_a.keys() == flat_b.keys()
    return {k: float(np.max(np.abs(np.asarray(flat_a[k]) - flat_b[k]))) for k in flat_a}


@pytest.mark.parametrize(
    "model_name",
    [
        "resnet18",
        "mobilenet_v2",
        "efficientnet_b0",
        pytest.param("resnet50", marks=pytest.mark.slow),
        pytest.param("inception_v2", marks=pytest.mark.slow),
        pytest.param("densenet121", marks=pytest.mark.slow),
    ],
)
def test_one_train_step_on_mock_imagenet(mock_imagenet, model_name):
    before, after, metrics = _one_step(model_name, mock_imagenet)
    loss = float(metrics["loss"])
    assert math.isfinite(loss)
    # An untrained 1000-way classifier predicts near-uniformly: the label-smoothed
    # cross-entropy starts near ln(1000) = 6.91 (a little above, from random logits).
    assert math.log(1000) - 0.5 < loss < math.log(1000) + 3.0, loss
    assert float(metrics["learning_rate"]) == pytest.approx(0.05)
    assert int(after["step"]) == 1

    # Every parameter of the resizer and of the backbone was updated, and nothing else
    # changed type: parameters and BN statistics stay float32.
    for part in ("resizer", "classifier"):
        moved = _moved(before["params"][part], after["params"][part])
        assert moved and all(v > 0 for v in moved.values()), [k for k, v in moved.items() if not v]
    stats = _moved(before["batch_stats"], after["batch_stats"])
    assert stats and all(v > 0 for v in stats.values())  # train mode updates running stats
    for tree in (after["params"], after["batch_stats"]):
        assert {x.dtype for x in jax.tree.leaves(tree)} == {np.dtype(np.float32)}
