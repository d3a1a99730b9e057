"""The closed-form BatchNorm gradient against autodiff of a plain formulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize.models.batch_norm import BatchNorm


def reference_bn(x, scale, bias, eps):
    """Two-pass BatchNorm written out, differentiated by JAX's autodiff."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.mean(jnp.square(x - mean), axes)
    return (x - mean) / jnp.sqrt(var + eps) * scale + bias, mean, var


def module_loss(bn, x, dy):
    """sum(bn(x) * dy) and the gradients w.r.t. x, scale and bias, plus the new running stats."""
    graphdef, params, rest = nnx.split(bn, nnx.Param, ...)

    def loss(params, x):
        model = nnx.merge(graphdef, params, rest, copy=True)
        y = model(x, use_running_average=False)
        return jnp.sum(y * dy), nnx.state(model, nnx.BatchStat)

    (value, stats), (grad_params, grad_x) = jax.value_and_grad(loss, (0, 1), has_aux=True)(
        params, x
    )
    return value, grad_x, grad_params, stats


@pytest.mark.parametrize("use_scale", [True, False])
def test_gradient_matches_autodiff_of_the_two_pass_formula(use_scale):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(1.0, 3.0, (4, 5, 6, 3)), jnp.float32)
    dy = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    scale = jnp.asarray([0.5, 2.0, -1.0]) if use_scale else jnp.ones(3)
    bias = jnp.asarray([0.1, -0.2, 0.3])
    bn = BatchNorm(3, momentum=0.9, epsilon=1e-3, use_scale=use_scale, rngs=nnx.Rngs(0))
    if use_scale:
        bn.scale[...] = scale
    bn.bias[...] = bias
    value, grad_x, grad_params, stats = module_loss(bn, x, dy)

    def ref_loss(x, scale, bias):
        return jnp.sum(reference_bn(x, scale, bias, 1e-3)[0] * dy)

    ref_value, ref_grads = jax.value_and_grad(ref_loss, (0, 1, 2))(x, scale, bias)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(grad_x, ref_grads[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad_params["bias"], ref_grads[2], rtol=1e-5)
    if use_scale:
        np.testing.assert_allclose(grad_params["scale"], ref_grads[1], rtol=1e-5)
    _, mean, var = reference_bn(x, scale, bias, 1e-3)
    np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-5)  # running stats start 0, 1
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var, rtol=1e-5)


def test_matches_flax_batch_norm_in_both_modes():
    x = jax.random.normal(jax.random.key(1), (2, 7, 7, 4)) * 2 - 1
    dy = jax.random.normal(jax.random.key(2), x.shape)
    ours, theirs = (cls(4, rngs=nnx.Rngs(0)) for cls in (BatchNorm, nnx.BatchNorm))
    for a, b in zip(module_loss(ours, x, dy), module_loss(theirs, x, dy)):
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6), a, b)
    np.testing.assert_array_equal(
        ours(x, use_running_average=True), theirs(x, use_running_average=True)
    )
