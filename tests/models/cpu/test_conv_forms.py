"""conv_forms.Conv: 1x1 convolutions as matrix products and depthwise ones as summed taps,
equal to nnx.Conv and to numpy, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize.models.cpu import conv_forms
from learned_resize.models.cpu.conv_forms import Conv


def _same_values_and_gradients(ours, theirs, x, expected, atol):
    """Both modules give `expected` (numpy) at x, and the same gradients of a loss."""
    np.testing.assert_allclose(ours(jnp.asarray(x)), expected, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(theirs(jnp.asarray(x)), expected, rtol=1e-5, atol=atol)

    def grads(module):
        graphdef, params = nnx.split(module, nnx.Param)
        loss = lambda p, x: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(x)))
        return jax.grad(loss, (0, 1))(params, jnp.asarray(x))

    for a, b in zip(jax.tree.leaves(grads(ours)), jax.tree.leaves(grads(theirs))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)


@pytest.mark.parametrize(
    "stride, padding, use_bias, size",
    [
        (1, "SAME", False, 6),
        (2, "SAME", True, 7),
        (2, ((0, 0), (0, 0)), False, 6),
        (2, "VALID", True, 5),
    ],
)
def test_pointwise_conv_matches_numpy_and_flax(stride, padding, use_bias, size):
    kw = dict(strides=stride, padding=padding, use_bias=use_bias)
    ours = Conv(3, 4, (1, 1), **kw, rngs=nnx.Rngs(0))
    theirs = nnx.Conv(3, 4, (1, 1), **kw, rngs=nnx.Rngs(0))
    if use_bias:
        ours.bias[...] = theirs.bias[...] = jnp.arange(4.0)
    assert ours._is_pointwise(jnp.zeros((1, size, size, 3)))
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    kernel = np.asarray(ours.kernel[...])[0, 0]
    bias = np.arange(4.0) if use_bias else 0.0
    expected = x[:, ::stride, ::stride] @ kernel + bias  # numpy: subsample, then mix channels
    _same_values_and_gradients(ours, theirs, x, expected, atol=1e-6)


def _numpy_depthwise(x, kernel, stride, pads):
    """Grouped convolution by loops: output channel o reads input channel o // m."""
    n, h, w, c = x.shape
    kh, kw, _, out = kernel.shape
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    oh, ow = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    y = np.zeros((n, oh, ow, out))
    for o in range(out):
        for i in range(oh):
            for j in range(ow):
                patch = xp[
                    :, i * stride : i * stride + kh, j * stride : j * stride + kw, o // (out // c)
                ]
                y[:, i, j, o] = np.sum(patch * kernel[:, :, 0, o], axis=(1, 2))
    return y


@pytest.mark.parametrize(
    "kernel, stride, padding, multiplier, size, pads",
    [
        (3, 1, "SAME", 1, 6, ((1, 1), (1, 1))),
        (3, 2, "SAME", 1, 7, ((1, 1), (1, 1))),
        (3, 2, "SAME", 1, 8, ((0, 1), (0, 1))),  # SAME pads one less before on stride 2
        (5, 2, ((2, 2), (2, 2)), 1, 9, ((2, 2), (2, 2))),
        (7, 2, "SAME", 2, 10, ((2, 3), (2, 3))),  # Inception-v2's stem: multiplier > 1
        (3, 1, "VALID", 1, 6, ((0, 0), (0, 0))),
    ],
)
def test_depthwise_taps_match_numpy_and_flax(kernel, stride, padding, multiplier, size, pads):
    kw = dict(strides=stride, padding=padding, feature_group_count=3, use_bias=True)
    ours = Conv(3, 3 * multiplier, (kernel, kernel), **kw, rngs=nnx.Rngs(0))
    theirs = nnx.Conv(3, 3 * multiplier, (kernel, kernel), **kw, rngs=nnx.Rngs(0))
    ours.bias[...] = theirs.bias[...] = jnp.arange(3.0 * multiplier)
    x = np.random.default_rng(1).normal(size=(2, size, size, 3)).astype(np.float32)
    assert ours._depthwise_pads(jnp.asarray(x)) == pads
    expected = _numpy_depthwise(x, np.asarray(ours.kernel[...]), stride, pads)
    expected += np.arange(3.0 * multiplier)
    _same_values_and_gradients(ours, theirs, x, expected, atol=1e-5)


def _bf16_products_bound(x, kernel, exact):
    """|error| bound of a depthwise 3x3 output computed from bf16 `x` and `kernel` with the
    products summed in float32 and the sum rounded to bfloat16, against `exact` (float64).

    A product of two bf16 values (8 significant bits each) is exact in float32 (24); K = 9
    float32 additions in any order err by at most (K - 1) * u32 * sum|terms| (u32 = 2^-24,
    bounded here by K * eps32); rounding the sum to bf16 adds at most u_bf16 * |y| with
    u_bf16 = eps_bf16 / 2 = 2^-8 (a little more than |y| allows for the sum's own error).
    """
    eps32 = float(jnp.finfo(jnp.float32).eps)
    u_bf16 = float(jnp.finfo(jnp.bfloat16).eps) / 2
    k = 9
    abs_terms = _numpy_depthwise(np.abs(x), np.abs(kernel), 1, ((1, 1), (1, 1)))
    summation = k * eps32 * abs_terms
    return u_bf16 * (np.abs(exact) + summation) + summation


def _bf16_running_sum(x, kernel):
    """The same outputs with every partial sum rounded to bf16: what a bf16 accumulator gives."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    total = np.zeros(x.shape, jnp.bfloat16)
    for a in range(3):
        for b in range(3):
            term = (xp[:, a : a + h, b : b + w] * kernel[a, b, 0]).astype(jnp.bfloat16)
            total = (total + term).astype(jnp.bfloat16)
    return total.astype(np.float64)


def test_depthwise_taps_accumulate_bf16_products_in_float32():
    conv = Conv(8, 8, (3, 3), feature_group_count=8, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 8)).astype(jnp.bfloat16)
    y = np.asarray(conv(x), np.float64)
    assert conv(x).dtype == jnp.bfloat16
    x64 = np.asarray(x, np.float64)
    kernel = np.asarray(conv.kernel[...].astype(jnp.bfloat16), np.float64)
    exact = _numpy_depthwise(x64, kernel, 1, ((1, 1), (1, 1)))
    bound = _bf16_products_bound(x64, kernel, exact)
    # The bound has teeth: summing in bf16 (each partial sum rounded to 8 bits, error
    # ~ sqrt(K) * u_bf16 * |terms| rather than u_bf16 * |y|) breaks it at many outputs.
    bf16_sum = _bf16_running_sum(x64, kernel)
    assert np.mean(np.abs(bf16_sum - exact) > bound) > 0.05
    excess = np.abs(y - exact) - bound
    assert np.all(excess <= 0), (np.max(excess), np.mean(excess > 0))


def test_other_convolutions_are_flax_own():
    x = jnp.zeros((1, 8, 8, 4))
    assert not Conv(4, 4, (3, 3), rngs=nnx.Rngs(0))._is_pointwise(x)
    assert not Conv(4, 4, (1, 1), feature_group_count=4, rngs=nnx.Rngs(0))._is_pointwise(x)
    assert not Conv(4, 4, (1, 1), padding=((1, 1), (1, 1)), rngs=nnx.Rngs(0))._is_pointwise(x)
    assert not Conv(4, 4, (1,), rngs=nnx.Rngs(0))._is_pointwise(jnp.zeros((1, 8, 4)))
    assert Conv(4, 4, (3, 3), rngs=nnx.Rngs(0))._depthwise_pads(x) is None
    assert Conv(4, 8, (3, 3), feature_group_count=2, rngs=nnx.Rngs(0))._depthwise_pads(x) is None
    dilated = Conv(4, 4, (3, 3), feature_group_count=4, kernel_dilation=2, rngs=nnx.Rngs(0))
    assert dilated._depthwise_pads(x) is None
    circular = Conv(4, 4, (3, 3), feature_group_count=4, padding="CIRCULAR", rngs=nnx.Rngs(0))
    assert circular._depthwise_pads(x) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone", ["resnet18", "mobilenet_v2", "efficientnet_b0", "inception_v2"]
)
def test_sgd_step_matches_flax_convolutions(backbone):
    """One SGD step ends at the same weights with nnx.Conv for every convolution
    (`conv_forms.plain()`): ResNet-18 has 1x1 convs, MobileNet-v2 1x1 and depthwise 3x3
    ones (stride 1 and 2), EfficientNet-B0 depthwise 5x5 ones too, Inception-v2 a
    depthwise 7x7 stem with channel multiplier 8.

    One step: later steps of a randomly labelled net amplify float rounding chaotically
    (flax against itself with the input scaled by 1 + 1e-6 differs by ~5% of the update
    after three steps), so they would test the dynamics, not the layer. Even one step
    of MobileNet-v2 or Inception-v2 (BatchNorm over 8 images of 2x2 maps in the last
    blocks) moves by 0.5% / 1.3% of the update when the input is scaled by 1 + 1e-6, so
    the bound is the larger of 1e-4 of the update and twice that rounding-level change
    (one nudge samples the chaos; a wrong tap, pad or stride moves weights by the order
    of the update itself).
    """
    from learned_resize import models

    x = jax.random.normal(jax.random.key(3), (8, 64, 64, 3))
    onehot = jax.nn.one_hot(jnp.arange(8) % 10, 10)

    def sgd_step(x=x):
        model = models.get_classifier(backbone, 10, rngs=nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(params):
            logits = nnx.merge(graphdef, params, rest, copy=True)(x, train=True)
            return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * onehot, -1))

        grads = jax.jit(jax.grad(loss))(params)
        new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(new)

    init, ours = sgd_step()
    with conv_forms.plain():
        _, theirs = sgd_step()
        _, nudged = sgd_step(x * (1 + 1e-6))
    flat = lambda tree: jnp.concatenate([v.ravel() for v in jax.tree.leaves(tree)])
    distance = lambda a, b: float(jnp.linalg.norm(flat(a) - flat(b)))
    bound = max(1e-4 * distance(theirs, init), 2 * distance(nudged, theirs))
    assert distance(ours, theirs) <= bound
    if backbone == "resnet18":  # no amplification: every weight agrees on its own
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), ours, theirs
        )
