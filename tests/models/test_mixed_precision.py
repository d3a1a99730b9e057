"""Mixed precision: config.model.dtype='bfloat16' computes in bf16, keeps f32 params and BN stats.

The learned resizer + ResNet-18 take one train step in float32 and in bfloat16
from the same initial parameters and batch. The bf16 step must really run its
convolutions and matrix products in bf16 (read from the traced program), leave every parameter, BN
statistic and optimiser leaf in float32, and agree with the f32 step to bf16
accuracy.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType

from configs import imagenet
from learned_resize import steps as steps_lib
from learned_resize.config import validation
from learned_resize.models.cpu import narrow_conv
from learned_resize.runtime import checkpoints
from learned_resize.runtime import mesh as mesh_lib

BATCH = 32
# XLA:CPU's backend optimisation level 0: about half the compile time of a program that
# runs once or twice (both dtypes' steps are compiled alike).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _config(dtype):
    config = imagenet.get_config("resnet18")
    config.input_size = (48, 48)
    config.resizer.kind = "learned"
    config.resizer.output_size = (32, 32)
    config.data.num_classes = 10
    config.model.dtype = dtype
    config.batch_size = BATCH
    config.optim.reference_batch_size = BATCH
    config.optim.warmup_epochs = 0.0
    validation.validate_config(config)
    return config


def _batch():
    """Smooth images (a random colour ramp per image) with noise: like photos, not static."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.0, 1.0, 48)
    images = []
    for _ in range(BATCH):
        a, b, c = rng.uniform(0, 255, (3, 3))
        image = a * ramp[:, None, None] + b * ramp[None, :, None] + c * 0.3
        images.append(image / 2 + rng.normal(0, 8, (48, 48, 3)))
    return {
        "image": np.clip(images, 0, 255).astype(np.uint8),
        "label": rng.integers(0, 10, BATCH).astype(np.int32),
        "skipped": np.zeros(BATCH, np.int32),
    }


# The primitives that do a network's multiply-adds: convolutions, and the matrix products
# of dense layers and of 1x1 convolutions (models/conv_forms.py, the resizer's CPU out_conv).
PRODUCTS = ("conv_general_dilated", "dot_general")


def _product_operand_dtypes(trainer, state, batch, rest) -> list:
    """(primitive, lhs dtype, rhs dtype, lhs shape) of every convolution and matrix product
    in the traced train step (forward and backward, inside every nested jaxpr)."""
    dtypes = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in PRODUCTS:
                lhs, rhs = (v.aval for v in eqn.invars[:2])
                dtypes.append((eqn.primitive.name, lhs.dtype, rhs.dtype, lhs.shape))
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub)

    walk(jax.make_jaxpr(trainer._train_step)(state, batch, rest).jaxpr)
    return dtypes


# bf16's unit roundoff: 8 significant bits.
BF16_ROUNDOFF = 2.0**-8


def _perturbed(params):
    """params times (1 + BF16_ROUNDOFF * N(0, 1)), elementwise."""
    rng = np.random.default_rng(1)
    noise = lambda x: x * (1 + BF16_ROUNDOFF * rng.standard_normal(x.shape))
    return jax.tree.map(lambda x: noise(x).astype(x.dtype), params)


@pytest.fixture(scope="module")
def steps():
    """{dtype: (initial state, state after one step, metrics, conv input dtypes)}.

    Also 'perturbed': the float32 step taken from the initial parameters times
    (1 + BF16_ROUNDOFF * N(0, 1)), the yardstick for how far bf16 may drift.
    """
    # One device: this test is about numerics, and a 1-device program compiles faster.
    mesh = jax.make_mesh(
        (1,), (mesh_lib.DATA_AXIS,), devices=jax.devices()[:1], axis_types=(AxisType.Auto,)
    )
    out = {}
    for dtype in ("float32", "bfloat16"):
        trainer = steps_lib.Steps(_config(dtype), mesh, steps_per_epoch=10, num_steps=10)
        key = jax.random.key(0)
        state, rest = trainer.init.lower(key).compile(compiler_options=FAST_COMPILE)(key)
        batch = mesh_lib.global_batch(_batch(), mesh)
        convs = _product_operand_dtypes(trainer, state, batch, rest)
        before = jax.device_get(state)
        step = trainer.train_step.lower(state, batch, rest).compile(compiler_options=FAST_COMPILE)
        new_state, metrics = step(state, batch, rest)
        out[dtype] = (before, jax.device_get(new_state), jax.device_get(metrics), convs)
        if dtype == "float32":  # same compiled step, noisy parameters
            noisy = dict(before, params=_perturbed(before["params"]))
            new_state, metrics = step(noisy, batch, rest)
            out["perturbed"] = (noisy, jax.device_get(new_state), jax.device_get(metrics), None)
    return out


def test_bf16_step_computes_in_bf16(steps):
    f32_products, bf16_products = steps["float32"][3], steps["bfloat16"][3]
    kinds = lambda products: sorted({p for p, *_ in products})
    # Both kinds are there: 7x7/3x3 convolutions and matrix products (the 1x1 convolutions
    # of the resizer and of ResNet-18's shortcuts, the classifier's dense layer).
    assert kinds(f32_products) == kinds(bf16_products) == sorted(PRODUCTS)
    f32 = {(p, lhs, rhs) for p, lhs, rhs, _ in f32_products}
    assert {(lhs, rhs) for _, lhs, rhs in f32} == {(jnp.dtype(jnp.float32),) * 2}
    # Forward and backward: every convolution and every matrix product of the resizer and
    # of ResNet-18 in bf16, both operands, and none left out or added.
    assert [(p, s) for p, _, _, s in bf16_products] == [(p, s) for p, _, _, s in f32_products]
    bf16 = jnp.dtype(jnp.bfloat16)
    not_bf16 = [(p, lhs, rhs, s) for p, lhs, rhs, s in bf16_products if (lhs, rhs) != (bf16, bf16)]
    assert not not_bf16


def test_bf16_keeps_f32_params_stats_and_optimizer_state(steps):
    before, after, _, _ = steps["bfloat16"]
    # The same initial parameters as the f32 run: the comparison below is like for like.
    jax.tree.map(np.testing.assert_array_equal, before["params"], steps["float32"][0]["params"])
    for key in ("params", "batch_stats", "opt_state"):
        leaves = [x for x in jax.tree.leaves(after[key]) if np.issubdtype(x.dtype, np.floating)]
        assert leaves and {x.dtype for x in leaves} == {np.dtype(np.float32)}, key
    # BN statistics moved in bf16 training too (they are accumulated in f32).
    moved = jax.tree.map(
        lambda a, b: float(np.max(np.abs(a - b))), before["batch_stats"], after["batch_stats"]
    )
    assert min(jax.tree.leaves(moved)) > 0


def _update(before, after, part=None):
    """The parameter update of one step, flattened (optionally of one leaf path)."""
    b, a = (
        checkpoints._leaves_by_path(before["params"]),
        checkpoints._leaves_by_path(after["params"]),
    )
    keys = [k for k in b if part is None or k == part]
    return np.concatenate([(np.asarray(a[k], np.float64) - b[k]).ravel() for k in keys])


def _cosine(u, v):
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_bf16_loss_and_update_match_f32(steps):
    before, f32_after, f32_metrics, _ = steps["float32"]
    _, bf16_after, bf16_metrics, _ = steps["bfloat16"]
    loss32, loss16 = float(f32_metrics["loss"]), float(bf16_metrics["loss"])
    assert np.isfinite(loss16)
    assert abs(loss16 - loss32) <= 0.02 * loss32
    g32, g16 = float(f32_metrics["grad_norm"]), float(bf16_metrics["grad_norm"])
    # Every activation rounded to 8 mantissa bits through ~40 layers forward and backward:
    # the gradient norm moved 2.5% on the dev machine and 5.7% on CI's CPU (XLA's bf16
    # code differs by CPU); a wrong cast or a bf16 accumulation moves it far more.
    assert abs(g16 - g32) <= 0.10 * g32

    d32, d16 = _update(before, f32_after), _update(before, bf16_after)
    # The last layer's update is well conditioned: bf16 must match it closely.
    fc = "classifier/fc/kernel"
    assert _cosine(_update(before, f32_after, fc), _update(before, bf16_after, fc)) > 0.99
    # The whole update of a freshly initialised deep net is not: BatchNorm over a
    # small batch amplifies tiny input changes (parameters perturbed by bf16's
    # roundoff already turn the float32 update noticeably: the yardstick below). bf16 compute,
    # which rounds every activation as well, may turn it at most twice as far.
    noisy, noisy_after, _, _ = steps["perturbed"]
    yardstick = 1.0 - _cosine(d32, _update(noisy, noisy_after))
    assert 0.0 < yardstick < 0.5
    assert 1.0 - _cosine(d32, d16) <= 2.0 * yardstick, (_cosine(d32, d16), yardstick)


# `stablehlo.convolution` / `stablehlo.dot_general` with their operand and result types, as
# `jax.jit(f).lower(...).as_text()` prints them: `... : (tensor<AxBxbf16>, ...) -> tensor<...>`.
_PRODUCT_LINE = re.compile(
    r"stablehlo\.(convolution|dot_general).*:\s*\((tensor<[^>]*>),\s*(tensor<[^>]*>)\)"
    r"\s*->\s*(tensor<[^>]*>)"
)


def _tensor(text):
    """'tensor<32768x16xbf16>' -> ((32768, 16), 'bf16')."""
    *dims, element = text[len("tensor<") : -1].split("x")
    return tuple(int(d) for d in dims), element


def _lowered_products(formulation) -> list:
    """(op, lhs type, rhs type, result shape, result type) of every convolution and matrix
    product of the lowered bf16 train step, with the resizer's out_conv in `formulation`."""
    mesh = jax.make_mesh(
        (1,), (mesh_lib.DATA_AXIS,), devices=jax.devices()[:1], axis_types=(AxisType.Auto,)
    )
    with narrow_conv.use_formulation(formulation):
        trainer = steps_lib.Steps(_config("bfloat16"), mesh, steps_per_epoch=10, num_steps=10)
        state, rest = jax.eval_shape(trainer.init, jax.random.key(0))
        batch = mesh_lib.global_batch(_batch(), mesh)
        text = trainer.train_step.lower(state, batch, rest).as_text()
    products = []
    for match in _PRODUCT_LINE.finditer(text):
        op, lhs, rhs, out = match.groups()
        (_, lhs), (_, rhs), (shape, out) = _tensor(lhs), _tensor(rhs), _tensor(out)
        products.append((op, lhs, rhs, shape, out))
    return products


def test_bf16_out_conv_products_accumulate_in_float32():
    """The resizer's out_conv as CPU tap matmuls (narrow_conv.same_conv_by_taps and its
    gradients) asks for float32 results of its bf16 products (`preferred_element_type`): a
    bf16 running sum of its 7*7*16 products per output put the step outside the bounds
    above. Read from the lowered program: exactly those three matmuls (forward, input
    gradient, kernel gradient) take bf16 operands and return float32; every other product
    takes and returns bf16 (XLA's own convolutions, whose internal accumulation the program
    does not show)."""
    config = _config("bfloat16")
    (h, w), n = config.resizer.output_size, config.resizer.num_filters
    pixels, taps = BATCH * h * w, 7 * 7 * 3  # out_conv: 7x7, n -> 3 channels
    for formulation in ("taps", "xla"):
        products = _lowered_products(formulation)
        assert {op for op, *_ in products} == {"convolution", "dot_general"}
        assert {(lhs, rhs) for _, lhs, rhs, _, _ in products} == {("bf16", "bf16")}
        f32 = sorted((op, shape) for op, _, _, shape, out in products if out == "f32")
        assert {out for *_, out in products} <= {"bf16", "f32"}
        if formulation == "taps":
            expected = [(pixels, n), (pixels, taps), (n, taps)]  # dx, forward, dkernel
            assert f32 == sorted(("dot_general", shape) for shape in expected), f32
        else:
            assert f32 == []
