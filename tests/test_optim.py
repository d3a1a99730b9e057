"""The optimizer and schedule against hand-computed values, and the recipe's numbers pinned
to the paper (docs/PAPERS.md, part A) or to the README's list of departures."""

import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import imagenet
from learned_resize import optim
from learned_resize.config import defaults
from learned_resize.config import stages as stages_lib
from learned_resize.runtime import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**optim_values):
    c = defaults.base_config()
    c.batch_size = 512
    c.num_train_steps = 1000
    for key, value in optim_values.items():
        c.optim[key] = value
    return c


def test_learning_rate_scales_linearly_with_the_batch():
    c = _config(learning_rate=0.05, reference_batch_size=256)
    assert optim.base_learning_rate(c) == pytest.approx(0.1)


def test_paper_schedule_at_warmup_end_and_after_two_and_four_epochs():
    """lr 0.05 per 256 at batch 512 -> 0.1; warm-up 2 epochs; then x0.94 every 2 epochs."""
    c = _config(
        learning_rate=0.05,
        schedule="exponential",
        decay_rate=0.94,
        decay_epochs=2.0,
        warmup_epochs=2.0,
    )
    spe = 100  # steps per epoch
    schedule = optim.make_schedule(c, spe, num_steps=1000)
    assert float(schedule(0)) == 0.0
    assert float(schedule(100)) == pytest.approx(0.05)  # half-way through warm-up
    assert float(schedule(200)) == pytest.approx(0.1)  # warm-up end: the full rate
    assert float(schedule(200 + 199)) == pytest.approx(0.1)  # staircase: no decay yet
    assert float(schedule(200 + 200)) == pytest.approx(0.1 * 0.94)  # +2 epochs
    assert float(schedule(200 + 400)) == pytest.approx(0.1 * 0.94**2)  # +4 epochs


def test_cosine_reaches_zero_at_the_last_step():
    c = _config(learning_rate=0.1, reference_batch_size=512, schedule="cosine", warmup_epochs=1.0)
    schedule = optim.make_schedule(c, steps_per_epoch=100, num_steps=1000)
    assert float(schedule(100)) == pytest.approx(0.1)
    mid = 100 + 450  # half-way through the 900 decay steps
    assert float(schedule(mid)) == pytest.approx(0.05, rel=1e-5)
    assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-9)


def test_one_sgd_momentum_step_by_hand():
    """Two steps of SGD(momentum 0.9) with L2 weight decay on the kernel only."""
    c = _config(learning_rate=0.5, reference_batch_size=512, schedule="constant", weight_decay=0.1)
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, num_steps=10)
    params = {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([3.0])}
    grads = {"kernel": jnp.array([[0.5, 0.5]]), "bias": jnp.array([1.0])}
    state = tx.init(params)
    p = jax.tree.map(np.asarray, params)
    momentum = {k: np.zeros_like(v) for k, v in p.items()}
    for _ in range(2):
        updates, state = tx.update(grads, state, params)
        params = jax.tree.map(lambda a, u: a + u, params, updates)
        for k in p:  # numpy reference: g + wd * w on kernels, trace = 0.9 trace + g
            g = np.asarray(grads[k]) + (0.1 * p[k] if p[k].ndim > 1 else 0.0)
            momentum[k] = 0.9 * momentum[k] + g
            p[k] = p[k] - 0.5 * momentum[k]
    for k in p:
        np.testing.assert_allclose(params[k], p[k], rtol=1e-6)


def test_weight_decay_applies_to_kernels_only():
    params = {
        "conv": {"kernel": jnp.zeros((3, 3, 1, 4)), "bias": jnp.zeros(4)},
        "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
        "dense": {"kernel": jnp.zeros((4, 2))},
    }
    mask = optim.decay_mask(params)
    assert mask == {
        "conv": {"kernel": True, "bias": False},
        "bn": {"scale": False, "bias": False},
        "dense": {"kernel": True},
    }


def test_total_steps_from_epochs():
    c = defaults.base_config()
    c.batch_size, c.num_epochs, c.num_train_steps = 256, 2.5, -1
    assert optim.total_steps(c, num_train_examples=1000) == math.ceil(2.5 * 1000 / 256)
    c.num_train_steps = 7
    assert optim.total_steps(c, num_train_examples=1000) == 7


def test_recipe_values_are_the_papers_or_listed_departures():
    """docs/PAPERS.md part A; departures are in the README's "Departures from the paper"."""
    c = imagenet.get_config("resnet50")
    stages = dict((n, s) for n, _, s in stages_lib.stage_configs(c, "/w"))
    base, learned = stages["baseline"], stages["learned"]
    # The paper's figures.
    assert base.optim.momentum == 0.9 and base.optim.label_smoothing == 0.1
    assert base.optim.learning_rate == 0.05 and learned.optim.learning_rate == 0.005
    assert base.optim.schedule == "exponential"
    assert (base.optim.decay_rate, base.optim.decay_epochs) == (0.94, 2.0)
    assert (learned.resizer.num_filters, learned.resizer.num_res_blocks) == (16, 1)
    assert base.resizer.kind == "bilinear" and learned.resizer.kind == "learned"
    assert tuple(base.input_size) == (224, 224) and tuple(learned.input_size) == (448, 448)
    assert tuple(learned.resizer.output_size) == (224, 224)
    assert learned.init_from.path == "/w/baseline" and tuple(learned.init_from.parts) == (
        "classifier",
    )
    # Documented departures (README "Departures from the paper").
    assert base.optim.reference_batch_size == 256  # lr given per 256 images
    assert base.optim.weight_decay == 4e-5 and base.optim.warmup_epochs == 2.0
    assert (base.num_epochs, learned.num_epochs) == (90.0, 20.0)
    readme = open(os.path.join(REPO, "README.md")).read()
    assert "## Departures from the paper" in readme


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "imagenet_*.py"))))
def test_imagenet_backbone_files_are_the_recipe_for_their_backbone(path):
    """configs/imagenet_<backbone>.py (the user's --config=PATH) is imagenet.py:<backbone>."""
    backbone = os.path.basename(path)[len("imagenet_") : -len(".py")]
    from_file = cli.load_config(path)  # as main.py's --config=PATH loads it
    assert from_file.model.name == backbone
    assert from_file.to_dict() == imagenet.get_config(backbone).to_dict()
    assert (
        from_file.to_dict() == cli.load_config(f"{REPO}/configs/imagenet.py:{backbone}").to_dict()
    )
