"""layers.batch_norm_act and layers.relu: nnx.BatchNorm's values, running averages and
gradients, with the hand-written backward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import test_util

from learned_resize.models import layers, resnet

EPS = 1e-5
# Gradient tolerance in float32: the backward pass sums over N*H*W values in another
# order than autodiff's and recomputes the normalised input another way, each term
# good to a few float32 ulps (2**-23 ~ 1.2e-7) of values of order 1.
RTOL, ATOL = 1e-4, 1e-5


def _bn(features, seed=0):
    bn = layers.batch_norm(
        features, momentum=0.9, epsilon=EPS, dtype=jnp.float32, rngs=nnx.Rngs(seed)
    )
    rng = np.random.default_rng(seed)
    bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, features), jnp.float32)
    bn.bias[...] = jnp.asarray(rng.normal(0, 0.5, features), jnp.float32)
    bn.mean[...] = jnp.asarray(rng.normal(0, 1, features), jnp.float32)
    bn.var[...] = jnp.asarray(rng.uniform(0.5, 2, features), jnp.float32)
    return bn


def _inputs(shape, seed=1):
    rng = np.random.default_rng(seed)
    # Per-channel offsets and scales, as a convolution's output has.
    c = shape[-1]
    return jnp.asarray(
        rng.normal(0, 1, shape) * rng.uniform(0.5, 3, c) + rng.normal(0, 2, c), jnp.float32
    )


# (relu, negative_slope): no activation, ReLU, and the learned resizer's leaky ReLU.
ACTIVATIONS = [(False, 0.0), (True, 0.0), (True, 0.2)]


def _numpy_bn(x, scale, bias, relu, slope=0.0):
    x = np.asarray(x, np.float64)
    mean = x.mean((0, 1, 2))
    var = (x * x).mean((0, 1, 2)) - mean**2
    y = (x - mean) / np.sqrt(var + EPS) * np.asarray(scale) + np.asarray(bias)
    return (np.where(y >= 0, y, slope * y) if relu else y), mean, var


def _activation(y, relu, slope):
    if not relu:
        return y
    return jax.nn.leaky_relu(y, slope) if slope else nnx.relu(y)


@pytest.mark.parametrize("relu,slope", ACTIVATIONS)
def test_forward_and_running_averages_match_nnx_and_numpy(relu, slope):
    x = _inputs((4, 5, 6, 8))
    ours, ref = _bn(8), _bn(8)
    mean0, var0 = np.asarray(ours.mean[...]), np.asarray(ours.var[...])
    out = layers.batch_norm_act(ours, x, train=True, relu=relu, negative_slope=slope)
    expected = _activation(ref(x, use_running_average=False), relu, slope)
    # The same operations in the same order as nnx.BatchNorm: equal values.
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(ours.mean[...], ref.mean[...])
    np.testing.assert_array_equal(ours.var[...], ref.var[...])
    want, mean, var = _numpy_bn(x, ref.scale[...], ref.bias[...], relu, slope)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.mean[...], 0.9 * mean0 + 0.1 * mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.var[...], 0.9 * var0 + 0.1 * var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_evaluation_uses_running_averages(slope):
    x = _inputs((2, 3, 3, 4))
    bn = _bn(4)
    out = layers.batch_norm_act(bn, x, train=False, relu=True, negative_slope=slope)
    want = (x - bn.mean[...]) / np.sqrt(bn.var[...] + EPS) * bn.scale[...] + bn.bias[...]
    np.testing.assert_allclose(out, np.where(want >= 0, want, slope * want), rtol=1e-5, atol=1e-6)


def _loss(fn, weights):
    return lambda x, scale, bias: jnp.sum(fn(x, scale, bias) * weights)


@pytest.mark.parametrize("relu,slope", ACTIVATIONS)
def test_gradients_match_autodiff_of_nnx(relu, slope):
    x = _inputs((4, 5, 6, 8))
    weights = jnp.asarray(np.random.default_rng(2).normal(size=x.shape), jnp.float32)
    bn = _bn(8)
    scale, bias = bn.scale[...], bn.bias[...]

    def ours(x, scale, bias):
        b = _bn(8)
        b.scale[...], b.bias[...] = scale, bias
        return layers.batch_norm_act(b, x, train=True, relu=relu, negative_slope=slope)

    def reference(x, scale, bias):
        b = _bn(8)
        b.scale[...], b.bias[...] = scale, bias
        return _activation(b(x, use_running_average=False), relu, slope)

    got = jax.grad(_loss(ours, weights), argnums=(0, 1, 2))(x, scale, bias)
    want = jax.grad(_loss(reference, weights), argnums=(0, 1, 2))(x, scale, bias)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_gradients_match_finite_differences():
    x = _inputs((2, 3, 3, 4))
    weights = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)
    bn = _bn(4)

    def f(x, scale, bias):
        return layers._bn_train(x, scale, bias, EPS, None)[0]

    test_util.check_grads(
        _loss(f, weights),
        (x, bn.scale[...], bn.bias[...]),
        order=1,
        modes=["rev"],
        atol=1e-2,
        rtol=1e-2,
        eps=1e-2,
    )


def test_relu_gradient_is_the_input_mask():
    x = jnp.asarray([-2.0, -0.0, 0.0, 1e-30, 3.0])
    got = jax.grad(lambda v: jnp.sum(layers.relu(v) * jnp.arange(1.0, 6.0)))(x)
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0, 4.0, 5.0])
    np.testing.assert_array_equal(layers.relu(x), jax.nn.relu(x))


def test_resnet_gradients_match_plain_batch_norm(monkeypatch):
    """ResNet-18 on 32x32: parameter gradients and new statistics equal, within float32
    tolerance, to those of the same network with autodiff through nnx.BatchNorm."""
    images = _inputs((2, 32, 32, 3))

    def grads_and_stats():
        model = resnet.ResNet(10, depth=18, rngs=nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(params):
            m = nnx.merge(graphdef, params, rest, copy=True)
            logits = m(images, train=True)
            return jnp.sum(logits * jnp.arange(10.0)), nnx.state(m, nnx.BatchStat)

        return jax.grad(loss, has_aux=True)(params)

    got, got_stats = grads_and_stats()

    def plain(bn, x, train, relu):
        y = bn(x, use_running_average=not train)
        return nnx.relu(y) if relu else y

    monkeypatch.setattr(layers, "batch_norm_act", plain)
    monkeypatch.setattr(layers, "relu", jax.nn.relu)
    want, want_stats = grads_and_stats()
    # Eighteen layers of float32 sums in another order: compared leaf by leaf as a whole
    # (relative error of the vector), which single elements near cancellation can exceed.
    errors = [
        float(np.linalg.norm(g - w) / np.linalg.norm(w))
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want))
    ]
    print("max relative error", max(errors))
    assert max(errors) < 1e-4, errors
    for g, w in zip(jax.tree.leaves(got_stats), jax.tree.leaves(want_stats)):
        np.testing.assert_array_equal(g, w)
