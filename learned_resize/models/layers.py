"""Layers every backbone builds the same way.

Each returns a plain `flax.nnx` module (or `conv_forms.Conv`), so the attribute a
backbone stores it under stays its parameter path and checkpoints are unchanged.
Parameters and BatchNorm statistics are float32 whatever the compute dtype.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models.cpu.conv_forms import Conv


def conv(
    in_features: int,
    out_features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    padding="SAME",
    groups: int = 1,
    kernel_init,
    dtype,
    rngs: nnx.Rngs,
) -> Conv:
    """Bias-free `kernel_size`-square convolution (every one here feeds a BatchNorm).

    padding: anything `nnx.Conv` takes, or "symmetric": kernel_size // 2 on every side
    (torchvision's; SAME pads one less before than after on stride-2 layers).
    """
    if padding == "symmetric":
        pad = kernel_size // 2
        padding = ((pad, pad), (pad, pad))
    return Conv(
        in_features,
        out_features,
        (kernel_size, kernel_size),
        strides=strides,
        padding=padding,
        feature_group_count=groups,
        use_bias=False,
        kernel_init=kernel_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def batch_norm(features: int, *, momentum: float, epsilon: float, dtype, rngs, **kwargs):
    """`nnx.BatchNorm` computing in `dtype` with float32 scale, bias and statistics."""
    return nnx.BatchNorm(
        features,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
        **kwargs,
    )


def classifier(features: int, num_classes: int, *, kernel_init, dtype, rngs):
    """The dense head, or None for num_classes == 0 (a headless backbone returning
    pooled features, e.g. under the IQA score head)."""
    if num_classes == 0:
        return None
    return nnx.Linear(
        features,
        num_classes,
        kernel_init=kernel_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def check_input(x: jax.Array, in_channels: int, network: str) -> None:
    """Raises a one-sentence ValueError unless x is an NHWC batch with in_channels."""
    if x.ndim != 4 or x.shape[-1] != in_channels:
        raise ValueError(
            f"{network} expects NHWC images with {in_channels} channels, got shape "
            f"{x.shape}; transpose the batch or set in_channels to match the data."
        )


def batch_norm_act(
    bn: nnx.BatchNorm, x: jax.Array, train: bool, relu: bool, negative_slope: float = 0.0
) -> jax.Array:
    """`bn(x)` followed by a ReLU when `relu` (a leaky ReLU for a `negative_slope` > 0),
    with the same values and running averages as `nnx.BatchNorm` (its fast variance, its
    operation order), but in training a gradient written by hand that keeps only `x` (the
    convolution's output, which the kernel gradient of that convolution keeps anyway),
    the per-channel statistics, and for `relu` the output (the next layer's input, also
    kept anyway). Autodiff of `nnx.BatchNorm` keeps the centred `x - mean` besides them,
    and the activation its input, one or two more activations per layer; the backward
    pass here recomputes the normalised value from `x`.
    """
    act = float(negative_slope) if relu else None
    if not train:
        return _activate(bn(x, use_running_average=True), act)
    x, running_mean, running_var, scale, bias = bn.promote_dtype(
        (x, bn.mean[...], bn.var[...], bn.scale[...], bn.bias[...]), dtype=bn.dtype
    )
    out, mean, var = _bn_train(x, scale, bias, bn.epsilon, act)
    mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
    bn.mean[...] = bn.momentum * running_mean + (1 - bn.momentum) * mean
    bn.var[...] = bn.momentum * running_var + (1 - bn.momentum) * var
    return out


def _activate(y: jax.Array, act: float | None) -> jax.Array:
    """y, ReLU'd (act 0) or leaky-ReLU'd with slope act (as jax.nn.leaky_relu) or not (None)."""
    if act is None:
        return y
    if act == 0.0:
        return jnp.maximum(y, 0)
    return jnp.where(y >= 0, y, jnp.asarray(act, y.dtype) * y)


def _stats(x):
    """nnx.BatchNorm's training statistics: float32 mean and fast variance over all but
    the last axis."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))
    mean, mean2 = x32.mean(axes), (x32 * x32).mean(axes)
    return mean, jnp.maximum(0.0, mean2 - mean * mean)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _bn_train(x, scale, bias, epsilon, act):
    """(BN(x) [then the activation `act`, see _activate], batch mean, batch variance);
    the statistics' cotangents are ignored (they only feed the running averages, under
    stop_gradient)."""
    mean, var = _stats(x)
    # nnx's _normalize, in its order: (x - mean) * (rsqrt(var + eps) * scale) + bias.
    y = (x - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias
    out = _activate(jnp.asarray(y, jnp.result_type(x, scale, bias)), act)
    return out, mean, var


def _bn_train_fwd(x, scale, bias, epsilon, act):
    out, mean, var = _bn_train(x, scale, bias, epsilon, act)
    inv = jax.lax.rsqrt(var + epsilon)
    return (out, mean, var), (x, None if act is None else out, mean, inv, scale, bias)


def _bn_train_bwd(epsilon, act, residuals, cotangents):
    del epsilon
    x, out, mean, inv, scale, bias = residuals
    g = cotangents[0].astype(mean.dtype)
    if act == 0.0:  # the output's sign is the input's: jax.nn.relu's gradient
        g = jnp.where(out > 0, g, 0.0)
    elif act is not None:  # jax.nn.leaky_relu's gradient
        g = jnp.where(out >= 0, g, act * g)
    axes = tuple(range(x.ndim - 1))
    x32 = x.astype(mean.dtype)
    # The normalised input is recomputed inside each expression that needs it, written
    # differently from the forward pass's (x - mean) * ... and from each other, so that
    # XLA neither merges it with the forward pass's nor computes it once as a buffer in
    # the forward pass, kept until here.
    dbias = jnp.sum(g, axes)
    dscale = jnp.sum(g * (x32 * inv - mean * inv), axes)
    n = x.size // x.shape[-1]
    c = inv * dscale / n
    dx = (scale.astype(mean.dtype) * inv) * (g - dbias / n - (x32 * c - mean * c))
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


@jax.custom_vjp
def relu(x: jax.Array) -> jax.Array:
    """`nnx.relu` whose gradient keeps its output instead of its input (the mask
    output > 0 is input > 0), for a ReLU whose input is kept by nothing else."""
    return jnp.maximum(x, 0)


def _relu_fwd(x):
    out = jnp.maximum(x, 0)
    return out, out


def _relu_bwd(out, g):
    return (jnp.where(out > 0, g, jnp.zeros_like(g)),)


relu.defvjp(_relu_fwd, _relu_bwd)
