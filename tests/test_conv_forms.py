"""1x1 convolutions as matrix products: equal to nnx.Conv and to numpy, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize.models.pointwise import Conv


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
    np.testing.assert_allclose(ours(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(theirs(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-6)

    def grads(module):
        graphdef, params = nnx.split(module, nnx.Param)
        loss = lambda p, x: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(x)))
        return jax.grad(loss, (0, 1))(params, jnp.asarray(x))

    for a, b in zip(jax.tree.leaves(grads(ours)), jax.tree.leaves(grads(theirs))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_other_convolutions_are_flax_own():
    x = jnp.zeros((1, 8, 8, 4))
    assert not Conv(4, 4, (3, 3), rngs=nnx.Rngs(0))._is_pointwise(x)
    assert not Conv(4, 4, (1, 1), feature_group_count=4, rngs=nnx.Rngs(0))._is_pointwise(x)
    assert not Conv(4, 4, (1, 1), padding=((1, 1), (1, 1)), rngs=nnx.Rngs(0))._is_pointwise(x)
    assert not Conv(4, 4, (1,), rngs=nnx.Rngs(0))._is_pointwise(jnp.zeros((1, 8, 4)))


@pytest.mark.slow
def test_resnet18_sgd_step_matches_flax_convolutions(monkeypatch):
    """One SGD step of ResNet-18 ends at the same weights with nnx.Conv for the 1x1 convs.

    One step: later steps of a randomly labelled net amplify float rounding chaotically
    (flax against itself with the input scaled by 1 + 1e-6 differs by ~5% of the update
    after three steps), so they would test the dynamics, not the layer.
    """
    from learned_resize.models import layers, resnet

    x = jax.random.normal(jax.random.key(3), (8, 64, 64, 3))
    onehot = jax.nn.one_hot(jnp.arange(8) % 10, 10)

    def sgd_step():
        model = resnet.ResNet(10, depth=18, rngs=nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(params):
            logits = nnx.merge(graphdef, params, rest, copy=True)(x, train=True)
            return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * onehot, -1))

        grads = jax.jit(jax.grad(loss))(params)
        new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(new)

    init, ours = sgd_step()
    monkeypatch.setattr(layers, "Conv", nnx.Conv)  # every backbone builds its convs there
    _, theirs = sgd_step()
    flat = lambda tree: jnp.concatenate([v.ravel() for v in jax.tree.leaves(tree)])
    update = flat(theirs) - flat(init)
    assert float(jnp.linalg.norm(flat(ours) - flat(theirs))) < 1e-4 * float(jnp.linalg.norm(update))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), ours, theirs)
