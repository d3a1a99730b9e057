"""Resizers placed in front of a classifier: fixed kernels and the learned CNN.

The learned resizer is the network of Talebi & Milanfar, "Learning to Resize Images
for Computer Vision Tasks" (ICCV 2021); see part A of docs/PAPERS.md. Every resizer maps
a float NHWC batch to `[N, h, w, C]` and is differentiable with respect to its input,
so it can be trained jointly with the network behind it. The fixed resampling lives
in `resampling.py`, the CPU formulation of the few-channel output convolution in
`narrow_conv.py`.

`norm` selects the learned resizer's normalisation layers: 'batch' (BatchNorm, the
paper's), 'group' (GroupNorm: per-image statistics, so train and eval mode compute
the same function) or 'none' (the convolutions get biases instead).
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from learned_resize.models import layers, resampling
from learned_resize.models.cpu import narrow_conv
from learned_resize.models.resampling import ANTIALIAS, FIXED_METHODS, resize

NORMS = ("batch", "group", "none")
_LEAKY_SLOPE = 0.2
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5
# GroupNorm: groups of 4 channels where the width allows (4 groups at the paper's n=16).
_GROUP_SIZE = 4


class FixedResizer(nnx.Module):
    """A parameter-free resize with a fixed kernel (bilinear, bicubic, Lanczos, ...)."""

    def __init__(
        self, output_size: Sequence[int], method: str = "bilinear", antialias: bool = ANTIALIAS
    ):
        self.output_size = resampling.check_output_size(output_size)
        self.method = resampling.check_method(method)
        self.antialias = bool(antialias)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # No state; accepted so that every resizer has the same signature.
        return resize(x, self.output_size, self.method, self.antialias)


def _leaky_relu(x: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x, negative_slope=_LEAKY_SLOPE)


def _norm_layer(norm: str, features: int, dtype, *, rngs: nnx.Rngs):
    """The normalisation `norm` names, or None; statistics and parameters stay float32."""
    if norm == "batch":
        return nnx.BatchNorm(
            features, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, dtype=dtype,
            param_dtype=jnp.float32, rngs=rngs,
        )  # fmt: skip
    if norm == "group":
        return nnx.GroupNorm(
            features, num_groups=features // math.gcd(features, _GROUP_SIZE), epsilon=_BN_EPSILON,
            dtype=dtype,
            param_dtype=jnp.float32, rngs=rngs,
        )  # fmt: skip
    return None


def _apply_norm(layer, x: jax.Array, train: bool) -> jax.Array:
    if layer is None:
        return x
    if isinstance(layer, nnx.BatchNorm):
        return layer(x, use_running_average=not train)
    return layer(x)


class _ConvBN(nnx.Module):
    """A conv followed by the normalisation (`bn`); a bias only without one (norm='none')."""

    def __init__(self, features: int, kernel_size: int, dtype, norm: str, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(
            features,
            features,
            (kernel_size, kernel_size),
            padding="SAME",
            use_bias=norm == "none",  # A norm's shift makes a conv bias redundant.
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.bn = _norm_layer(norm, features, dtype, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool, leaky: bool = False) -> jax.Array:
        """norm(conv(x)), then a leaky ReLU when `leaky`; a batch norm and its activation
        run as `layers.batch_norm_act` (a hand-written gradient keeping fewer buffers)."""
        y = self.conv(x)
        if isinstance(self.bn, nnx.BatchNorm):
            return layers.batch_norm_act(self.bn, y, train, leaky, _LEAKY_SLOPE)
        y = _apply_norm(self.bn, y, train)
        return _leaky_relu(y) if leaky else y


class _ResidualBlock(nnx.Module):
    """z + BN(conv3x3(LReLU(BN(conv3x3(z)))))."""

    def __init__(self, features: int, dtype, norm: str, *, rngs: nnx.Rngs):
        self.first = _ConvBN(features, 3, dtype, norm, rngs=rngs)
        self.second = _ConvBN(features, 3, dtype, norm, rngs=rngs)

    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        return z + self.second(self.first(z, train, leaky=True), train)


class LearnedResizer(nnx.Module):
    """The learned resizer of Talebi & Milanfar (2021).

    A fixed resize of the input (the skip) plus a CNN correction: features are
    extracted at the input resolution, resized to the output size, refined by `r`
    chained residual blocks and projected back to `in_channels`. Works for any input
    size and any output size or aspect ratio, down- or up-scaling.
    """

    def __init__(
        self,
        output_size: Sequence[int],
        num_filters: int = 16,
        num_res_blocks: int = 1,
        interpolation: str = "bilinear",
        antialias: bool = ANTIALIAS,
        in_channels: int = 3,
        norm: str = "batch",
        dtype=jnp.float32,
        *,
        rngs: nnx.Rngs,
    ):
        """Builds the resizer.

        Args:
          output_size: (h, w) of the output images.
          num_filters: n, the width of every hidden layer (16 in the paper).
          num_res_blocks: r, the number of chained residual blocks (1 in the paper).
          interpolation: the fixed method (one of FIXED_METHODS) used for the skip
            and for the feature bottleneck.
          antialias: passed to the fixed resize (default False, as the configs).
          in_channels: channels of the input and of the output.
          norm: 'batch' (the paper's), 'group' or 'none'; see the module docstring.
          dtype: compute dtype; parameters and BN statistics stay float32.
          rngs: parameter initialisation keys.
        """
        if num_filters < 1 or num_res_blocks < 0:
            raise ValueError(
                f"num_filters={num_filters}, num_res_blocks={num_res_blocks}; use num_filters "
                ">= 1 and num_res_blocks >= 0."
            )
        if norm not in NORMS:
            raise ValueError(f"norm is {norm!r}; set it to one of {', '.join(NORMS)}.")
        self.output_size = resampling.check_output_size(output_size)
        self.interpolation = resampling.check_method(interpolation, "interpolation")
        self.norm = norm
        self.antialias = bool(antialias)
        self.in_channels = in_channels
        self.dtype = dtype
        n = num_filters

        def conv(c_in, c_out, k):
            return nnx.Conv(
                c_in, c_out, (k, k), padding="SAME", dtype=dtype, param_dtype=jnp.float32,
                rngs=rngs,
            )  # fmt: skip

        self.head_conv7 = conv(in_channels, n, 7)
        self.head_conv1 = conv(n, n, 1)
        self.head_bn = _norm_layer(norm, n, dtype, rngs=rngs)
        self.blocks = nnx.List(
            [_ResidualBlock(n, dtype, norm, rngs=rngs) for _ in range(num_res_blocks)]
        )
        self.tail = _ConvBN(n, 3, dtype, norm, rngs=rngs)
        self.out_conv = conv(n, in_channels, 7)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Resizes `x` [N, H, W, in_channels] (float) to [N, h, w, in_channels], same dtype."""
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"LearnedResizer expects [N, H, W, {self.in_channels}] images but got shape "
                f"{tuple(x.shape)}; pass NHWC images with in_channels={self.in_channels}."
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"LearnedResizer needs float images, got {x.dtype}; convert first.")
        fixed = lambda t: resize(t, self.output_size, self.interpolation, self.antialias)
        # The skip stays in the input dtype: rounding the image itself to a low
        # precision compute dtype would add noise the CNN branch cannot undo.
        skip = fixed(x)

        # Head at the input resolution, where almost all of the cost is; see
        # `_head_features` for how it is computed.
        y = self._head_features(x.astype(self.dtype), train)

        z = y
        for block in self.blocks:  # Chained: each block sees the previous block's output.
            z = block(z, train)
        z = self.tail(z, train) + y
        return _conv_to_few_channels(self.out_conv, z).astype(x.dtype) + skip

    def _head_features(self, x: jax.Array, train: bool) -> jax.Array:
        """resize(BN(LReLU(conv1x1(LReLU(conv7x7(x)))))), computed as the same function.

        Two reformulations, exact in real arithmetic, take work off the full
        resolution, where almost all of the resizer's cost is (bench/resizer.py):
        - the 1x1 conv is a matmul over channels rather than a convolution;
        - BN is a per-channel affine map and every FIXED_METHODS resize is a linear
          map whose weights sum to one per output pixel (tested), so the two
          commute: the batch statistics are taken at full resolution (one fused
          reduction), the normalisation and its backward pass run after the
          resize, on the output's pixels.
        """
        conv7, conv1 = self.head_conv7, self.head_conv1
        x, k7, b7 = conv7.promote_dtype((x, conv7.kernel[...], conv7.bias[...]), dtype=conv7.dtype)
        c = jax.lax.conv_general_dilated(
            x, k7, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=conv7.precision,
        )  # fmt: skip
        _, k1, b1 = conv1.promote_dtype((c, conv1.kernel[...], conv1.bias[...]), dtype=conv1.dtype)
        y = _head_pointwise(c, b7, k1.reshape(k1.shape[-2:]), b1)
        fixed = lambda t: resize(t, self.output_size, self.interpolation, self.antialias)
        if isinstance(self.head_bn, nnx.BatchNorm):
            return _batch_norm_after(self.head_bn, y, fixed, train)
        return fixed(_apply_norm(self.head_bn, y, train))  # GroupNorm: per-image statistics.


@jax.custom_vjp
def _head_pointwise(c: jax.Array, b7: jax.Array, k1: jax.Array, b1: jax.Array) -> jax.Array:
    """LReLU(LReLU(c + b7) @ k1 + b1): the head after its 7x7 conv (c, without its bias
    b7), the 1x1 conv as a matmul over channels (k1 [n, n]).

    The gradient is written by hand so that the backward pass keeps only c and the
    output (the BN's input, kept anyway): it recomputes LReLU(c + b7), which autodiff
    would keep alongside c, one activation at the input resolution less alive while
    the classifier runs.
    """
    return _leaky_relu(_channel_matmul(_leaky_relu(c + b7), k1) + b1)


def _channel_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    # A 2-D matmul: XLA:CPU runs it and its gradients faster than the same einsum
    # over [N, H, W, C] (bench/resizer.py).
    y = jnp.matmul(x.reshape(-1, x.shape[-1]), kernel)
    return y.reshape(*x.shape[:-1], kernel.shape[-1])


def _head_pointwise_fwd(c, b7, k1, b1):
    out = _head_pointwise(c, b7, k1, b1)
    return out, (c, b7, k1, out)


def _head_pointwise_bwd(residuals, g):
    c, b7, k1, out = residuals
    slope = jnp.asarray(_LEAKY_SLOPE, g.dtype)
    dm = jnp.where(out >= 0, g, slope * g)  # the output's sign is its input's
    # A zero computed from dm (min(|v|, 0) is 0 unless v is NaN): the recomputation
    # depends on the backward pass, so XLA cannot run it in the forward pass as soon as
    # c exists and keep its result until here.
    zero = jnp.minimum(jnp.abs(dm[(0,) * (dm.ndim - 1)]), 0)
    t = c + (b7 + zero.astype(b7.dtype))
    # LReLU(t) again, written unlike the forward pass's so that XLA does not merge the
    # two and keep the forward's result until here after all.
    y1 = jnp.maximum(t, slope * t)
    axes = tuple(range(g.ndim - 1))
    dk1 = jnp.matmul(y1.reshape(-1, y1.shape[-1]).T, dm.reshape(-1, dm.shape[-1]))
    dy1 = _channel_matmul(dm, k1.T)
    dt = jnp.where(t >= 0, dy1, slope * dy1)
    return (
        dt.astype(c.dtype),
        jnp.sum(dt, axes).astype(b7.dtype),
        dk1.astype(k1.dtype),
        jnp.sum(dm, axes).astype(g.dtype),
    )


_head_pointwise.defvjp(_head_pointwise_fwd, _head_pointwise_bwd)


def _conv_to_few_channels(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """`conv(x)` for a stride-1 'SAME' nnx.Conv with few output channels (out_conv).

    The same function as the convolution, computed as `narrow_conv.same_conv` does.
    """
    kernel = conv.kernel[...]
    bias = conv.bias[...] if conv.bias is not None else None
    x, kernel, bias = conv.promote_dtype((x, kernel, bias), dtype=conv.dtype)
    y = narrow_conv.same_conv(x, kernel)
    return y if bias is None else y + bias


def _batch_norm_after(bn: nnx.BatchNorm, x: jax.Array, linear_map, train: bool) -> jax.Array:
    """`linear_map(bn(x))` for a channel-wise `linear_map` that preserves constants.

    The statistics (and, in training, the running-average update) are those of
    `x`, as nnx.BatchNorm computes them; the normalisation is applied to
    `linear_map(x)` instead, which is the same function when the map commutes with
    per-channel affine maps (a resize whose weights sum to one per output pixel).
    """
    scale, bias = bn.scale[...], bn.bias[...]
    x, mean, var, scale, bias = bn.promote_dtype(
        (x, bn.mean[...], bn.var[...], scale, bias), dtype=bn.dtype
    )
    if train:
        # As nnx.BatchNorm (use_fast_variance): float32 or wider, E[x^2] - E[x]^2.
        stats = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        axes = tuple(range(x.ndim - 1))
        mean = stats.mean(axes)
        var = jnp.maximum(0.0, jnp.mean(stats * stats, axes) - mean * mean)
        momentum = bn.momentum
        bn.mean[...] = jax.lax.stop_gradient(momentum * bn.mean[...] + (1 - momentum) * mean)
        bn.var[...] = jax.lax.stop_gradient(momentum * bn.var[...] + (1 - momentum) * var)
    y = linear_map(x)
    mul = jax.lax.rsqrt(var + bn.epsilon) * scale
    y = (y - mean) * mul + bias
    dtype = jax.dtypes.canonicalize_dtype(bn.dtype) if bn.dtype is not None else y.dtype
    return y.astype(dtype)


def fold_batch_norm(resizer: LearnedResizer) -> LearnedResizer:
    """A copy of `resizer` whose eval-mode BatchNorms after a convolution are folded in.

    For bn(conv(x)) = conv(x) * mul + add (eval mode: mul = scale / sqrt(var + eps),
    add = bias - mean * mul), the copy's kernel is kernel * mul (per output channel) and
    its BatchNorm is the identity plus `add` (mean 0, var + eps = 1, scale 1, bias add):
    the same function in eval mode, with no statistics left to apply. The head's
    BatchNorm follows a LeakyReLU, not a convolution, and stays as it is; GroupNorm
    (per-image statistics) and norm='none' have nothing to fold. Folding is done in
    float64, stored as float32. Used by `tools/export.py`.
    """
    folded = nnx.clone(resizer)
    if folded.norm != "batch":
        return folded
    for layer in [*(m for b in folded.blocks for m in (b.first, b.second)), folded.tail]:
        bn = layer.bn
        mean, var, scale, bias = (
            np.asarray(v[...], np.float64) for v in (bn.mean, bn.var, bn.scale, bn.bias)
        )
        mul = scale / np.sqrt(var + bn.epsilon)
        kernel = np.asarray(layer.conv.kernel[...], np.float64) * mul
        layer.conv.kernel[...] = jnp.asarray(kernel, jnp.float32)
        eps = np.float32(bn.epsilon)
        bn.mean[...] = jnp.zeros_like(bn.mean[...])
        bn.var[...] = jnp.full_like(bn.var[...], np.float32(1.0) - eps)
        bn.scale[...] = jnp.ones_like(bn.scale[...])
        bn.bias[...] = jnp.asarray(bias - mean * mul, jnp.float32)
    return folded


def make_resizer(
    resizer_config, *, in_channels: int, rngs: nnx.Rngs, dtype=jnp.float32
) -> nnx.Module:
    """Builds the resizer described by `resizer_config` (config.resizer).

    Args:
      resizer_config: ConfigDict with `kind` ('learned' or one of FIXED_METHODS),
        `output_size` (h, w), `num_filters`, `num_res_blocks`, `interpolation`,
        `antialias` and `norm`. The last five have the defaults of
        `LearnedResizer` if missing.
      in_channels: image channels.
      rngs: parameter initialisation keys (unused by fixed resizers).
      dtype: compute dtype of the learned resizer.

    Returns:
      A `LearnedResizer` or `FixedResizer`; call it as `resizer(x, train=...)`.
    """
    kind = resizer_config.get("kind")
    if kind != "learned" and kind not in FIXED_METHODS:
        raise ValueError(
            f"config.resizer.kind is {kind!r}; set it to 'learned' or one of "
            f"{', '.join(FIXED_METHODS)}."
        )
    output_size = resampling.check_output_size(
        resizer_config.get("output_size"), "config.resizer.output_size"
    )
    antialias = resizer_config.get("antialias", ANTIALIAS)
    if kind != "learned":
        return FixedResizer(output_size, kind, antialias)
    interpolation = resampling.check_method(
        resizer_config.get("interpolation", "bilinear"), "config.resizer.interpolation"
    )
    norm = resizer_config.get("norm", "batch")
    if norm not in NORMS:
        raise ValueError(f"config.resizer.norm is {norm!r}; set it to one of {', '.join(NORMS)}.")
    return LearnedResizer(
        output_size,
        norm=norm,
        num_filters=resizer_config.get("num_filters", 16),
        num_res_blocks=resizer_config.get("num_res_blocks", 1),
        interpolation=interpolation,
        antialias=antialias,
        in_channels=in_channels,
        dtype=dtype,
        rngs=rngs,
    )
