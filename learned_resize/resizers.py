"""Image resizers placed in front of a classifier: fixed kernels and the learned CNN.

The learned resizer is the network of Talebi & Milanfar, "Learning to Resize Images
for Computer Vision Tasks" (ICCV 2021); see part A of PAPERS.md. Every resizer maps
a float NHWC batch to `[N, h, w, C]` and is differentiable with respect to its input,
so it can be trained jointly with the network behind it.
"""

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from learned_resize import host_allocator

FIXED_METHODS = ("bilinear", "bicubic", "lanczos3", "lanczos5", "area", "nearest")

# Our method names -> jax.image names. `area` averages the input pixels that each
# output pixel covers (weighted by overlap), so it is antialiased by construction;
# `nearest` ignores `antialias`.
_JAX_METHODS = {
    "bilinear": "linear",
    "bicubic": "cubic",  # Keys kernel, a = -0.5 (the same kernel as PIL's BICUBIC).
    "lanczos3": "lanczos3",
    "lanczos5": "lanczos5",
    "area": "area",
    "nearest": "nearest",
}

_LEAKY_SLOPE = 0.2
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _check_output_size(output_size: Any, key: str = "output_size") -> tuple[int, int]:
    """Returns `output_size` as a pair of positive Python ints or raises ValueError."""
    try:
        h, w = output_size
        valid = all(int(v) == v and int(v) > 0 and not isinstance(v, bool) for v in (h, w))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            f"{key} is {output_size!r}; set it to a pair (height, width) of positive integers."
        )
    return int(h), int(w)


def _check_method(method: str, key: str = "method") -> str:
    if method not in _JAX_METHODS:
        raise ValueError(f"{key} is {method!r}; set it to one of {', '.join(FIXED_METHODS)}.")
    return method


def resize(
    x: jax.Array, output_size: Sequence[int], method: str = "bilinear", antialias: bool = True
) -> jax.Array:
    """Differentiable resize of the two spatial axes of a `[..., H, W, C]` array.

    The same linear map as `jax.image.resize` (whose weights it uses), applied as
    a few strided slices per axis instead of dense `[out, in]` matrices: see
    `_resize_axis`.

    Args:
      x: floating-point images, spatial axes at positions -3 and -2 (NHWC or HWC).
      output_size: (h, w).
      method: one of FIXED_METHODS.
      antialias: when downscaling, widen the kernel by the scale factor so that it
        low-pass filters (PIL's behaviour). Ignored by `area` and `nearest`.

    Returns:
      `[..., h, w, C]` in the dtype of `x`.
    """
    size = _check_output_size(output_size)
    method = _check_method(method)
    if x.ndim < 3:
        raise ValueError(f"resize needs [..., H, W, C] images, got shape {tuple(x.shape)}.")
    return _resize(x, size, method, bool(antialias))


# Jitted so that calling it outside jit compiles one program rather than dispatching
# its slices one by one; inside a jitted caller it is inlined.
@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _resize(x: jax.Array, size: tuple[int, int], method: str, antialias: bool) -> jax.Array:
    for axis, n_out in ((x.ndim - 3, size[0]), (x.ndim - 2, size[1])):
        x = _resize_axis(x, axis, _axis_plan(x.shape[axis], n_out, method, antialias, x.dtype))
    return x


# A resize along one axis with p input pixels for every q output pixels (p/q in lowest
# terms) repeats every q outputs: output q*m + r reads the `taps` inputs from
# offsets[r] + p*m on, with its own weights (they differ near the edges). Applying
# it as q*taps strided slices costs `taps` multiply-adds per output, where the dense
# [out, in] matrix that jax.image.resize contracts with costs `in` of them (448 for
# 448 -> 224, i.e. more FLOPs than the learned resizer's convolutions), and it is
# elementwise work that XLA fuses into one loop, forward and backward (the
# transpose of a strided slice is a pad). Ratios that would need more slices than
# this (e.g. 447 -> 224) use the dense matrix.
_MAX_SLICES = 48


@dataclasses.dataclass(frozen=True, eq=False)
class _AxisPlan:
    """How to apply one axis' [n_out, n_in] resampling matrix (see `_resize_axis`)."""

    period_in: int  # p
    period_out: int  # q
    count: int  # outputs per residue: n_out // q
    offsets: tuple[int, ...]  # per residue r: first input read, in padded coordinates
    taps: int
    pad: tuple[int, int]
    weights: np.ndarray  # [q, count, taps]
    dense: np.ndarray | None  # [n_out, n_in] when the slice form would need too many slices


@functools.lru_cache(maxsize=256)
def _resize_matrix(n_in: int, n_out: int, method: str, antialias: bool, dtype) -> np.ndarray:
    """The [n_out, n_in] matrix of jax.image.resize along one axis (the resize of I)."""
    impulses = np.eye(n_in, dtype=dtype)[:, :, None]  # n_in images of one row each
    with jax.ensure_compile_time_eval():  # concrete even while tracing
        out = np.asarray(_resize_impulses(impulses, n_out, _JAX_METHODS[method], antialias))
    return out[:, :, 0].T


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _resize_impulses(impulses, n_out, method, antialias):
    n_in = impulses.shape[0]
    return jax.image.resize(impulses, (n_in, n_out, 1), method=method, antialias=antialias)


@functools.lru_cache(maxsize=256)
def _axis_plan(n_in: int, n_out: int, method: str, antialias: bool, dtype) -> _AxisPlan | None:
    """Plan for resizing one axis from n_in to n_out; None for the identity."""
    if n_in == n_out:
        return None  # Every method reproduces its input at the same size.
    dtype = np.dtype(dtype)
    if dtype.itemsize < 4:  # bf16/f16 activations: weights as jax casts them.
        matrix = _resize_matrix(n_in, n_out, method, antialias, np.float32).astype(dtype)
    else:
        matrix = _resize_matrix(n_in, n_out, method, antialias, dtype)
    g = math.gcd(n_in, n_out)
    p, q = n_in // g, n_out // g
    nonzero = matrix != 0
    first = np.where(nonzero.any(1), nonzero.argmax(1), 0)
    last = np.where(nonzero.any(1), n_in - 1 - nonzero[:, ::-1].argmax(1), 0)
    shift = p * (np.arange(n_out) // q)  # band start of output q*m + r, minus offsets[r]
    offsets = [int((first[r::q] - shift[r::q]).min()) for r in range(q)]
    taps = max(int((last[r::q] - shift[r::q]).max()) - offsets[r] + 1 for r in range(q))
    if q * taps > _MAX_SLICES:
        return _AxisPlan(p, q, g, (), 0, (0, 0), np.zeros(0), matrix)
    pad_lo = max(0, -min(offsets))
    pad_hi = max(0, max(offsets) + taps + p * (g - 1) - n_in)
    weights = np.zeros((q, g, taps), matrix.dtype)
    for r in range(q):
        for m in range(g):
            cols = offsets[r] + p * m + np.arange(taps)
            inside = (cols >= 0) & (cols < n_in)
            weights[r, m, inside] = matrix[q * m + r, cols[inside]]
    return _AxisPlan(
        p, q, g, tuple(o + pad_lo for o in offsets), taps, (pad_lo, pad_hi), weights, None
    )


def _resize_axis(x: jax.Array, axis: int, plan: _AxisPlan | None) -> jax.Array:
    """Applies `plan` (a resampling matrix) along `axis` of x."""
    if plan is None:
        return x
    if plan.dense is not None:
        y = jnp.tensordot(
            x, jnp.asarray(plan.dense, x.dtype), axes=[[axis], [1]], precision="highest"
        )
        return jnp.moveaxis(y, -1, axis)
    p, q, g = plan.period_in, plan.period_out, plan.count
    pads = [(0, 0)] * x.ndim
    pads[axis] = plan.pad
    x = jnp.pad(x, pads)
    shape = [1] * x.ndim
    shape[axis] = g
    residues = []
    for r in range(q):
        out = None
        for t in range(plan.taps):
            w = plan.weights[r, :, t]
            if not w.any():
                continue
            start = plan.offsets[r] + t
            rows = jax.lax.slice_in_dim(x, start, start + p * (g - 1) + 1, stride=p, axis=axis)
            # A constant weight (every row but the edge ones, typically) stays a scalar.
            w = w[0].item() if (w == w[0]).all() else jnp.asarray(w, x.dtype).reshape(shape)
            out = rows * w if out is None else out + rows * w
        if out is None:
            out = jnp.zeros_like(jax.lax.slice_in_dim(x, 0, g, axis=axis))
        residues.append(out)
    if q == 1:
        return residues[0]
    y = jnp.stack(residues, axis=axis + 1)  # [..., g, q, ...]: output q*m + r
    return y.reshape(*x.shape[:axis], g * q, *x.shape[axis + 1 :])


class FixedResizer(nnx.Module):
    """A parameter-free resize with a fixed kernel (bilinear, bicubic, Lanczos, ...)."""

    def __init__(self, output_size: Sequence[int], method: str = "bilinear", antialias=True):
        self.output_size = _check_output_size(output_size)
        self.method = _check_method(method)
        self.antialias = bool(antialias)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # No state; accepted so that every resizer has the same signature.
        return resize(x, self.output_size, self.method, self.antialias)


def _leaky_relu(x: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x, negative_slope=_LEAKY_SLOPE)


class _ConvBN(nnx.Module):
    """A bias-free conv followed by BatchNorm (the BN's shift makes a conv bias redundant)."""

    def __init__(self, features: int, kernel_size: int, dtype, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(
            features,
            features,
            (kernel_size, kernel_size),
            padding="SAME",
            use_bias=False,
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.bn = _batch_norm(features, dtype, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return self.bn(self.conv(x), use_running_average=not train)


def _batch_norm(features: int, dtype, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
    # Statistics and running averages stay float32 whatever the compute dtype.
    return nnx.BatchNorm(
        features,
        momentum=_BN_MOMENTUM,
        epsilon=_BN_EPSILON,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


class _ResidualBlock(nnx.Module):
    """z + BN(conv3x3(LReLU(BN(conv3x3(z)))))."""

    def __init__(self, features: int, dtype, *, rngs: nnx.Rngs):
        self.first = _ConvBN(features, 3, dtype, rngs=rngs)
        self.second = _ConvBN(features, 3, dtype, rngs=rngs)

    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        return z + self.second(_leaky_relu(self.first(z, train)), train)


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
        antialias: bool = True,
        in_channels: int = 3,
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
          antialias: passed to the fixed resize.
          in_channels: channels of the input and of the output.
          dtype: compute dtype; parameters and BN statistics stay float32.
          rngs: parameter initialisation keys.
        """
        if num_filters < 1 or num_res_blocks < 0:
            raise ValueError(
                f"num_filters={num_filters}, num_res_blocks={num_res_blocks}; use num_filters "
                ">= 1 and num_res_blocks >= 0."
            )
        self.output_size = _check_output_size(output_size)
        self.interpolation = _check_method(interpolation, "interpolation")
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
        self.head_bn = _batch_norm(n, dtype, rngs=rngs)
        self.blocks = nnx.List([_ResidualBlock(n, dtype, rngs=rngs) for _ in range(num_res_blocks)])
        self.tail = _ConvBN(n, 3, dtype, rngs=rngs)
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
        y = _leaky_relu(self.head_conv7(x))
        y = _leaky_relu(_pointwise_conv(self.head_conv1, y))
        fixed = lambda t: resize(t, self.output_size, self.interpolation, self.antialias)
        return _batch_norm_after(self.head_bn, y, fixed, train)


def _pointwise_conv(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """`conv(x)` for a 1x1, stride-1 nnx.Conv, as a matmul over the channel axis."""
    kernel = conv.kernel[...]
    bias = conv.bias[...] if conv.bias is not None else None
    x, kernel, bias = conv.promote_dtype((x, kernel, bias), dtype=conv.dtype)
    kernel = kernel.reshape(kernel.shape[-2:])
    # A 2-D matmul: XLA:CPU runs it and its gradients faster than the same einsum
    # over [N, H, W, C] (bench/resizer.py).
    y = jnp.matmul(x.reshape(-1, x.shape[-1]), kernel, precision=conv.precision)
    y = y.reshape(*x.shape[:-1], kernel.shape[-1])
    return y if bias is None else y + bias


def _conv_to_few_channels(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """`conv(x)` for a stride-1 'SAME' nnx.Conv with few output channels (out_conv).

    The same function as the convolution, computed as `_same_conv` does.
    """
    kernel = conv.kernel[...]
    bias = conv.bias[...] if conv.bias is not None else None
    x, kernel, bias = conv.promote_dtype((x, kernel, bias), dtype=conv.dtype)
    y = _same_conv(x, kernel)
    return y if bias is None else y + bias


@jax.custom_vjp
def _same_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'SAME' convolution of NHWC `x` with an odd HWIO `kernel`.

    On CPU under tcmalloc, forward and backward are `_same_conv_by_taps` and
    `_same_conv_grads_by_taps`; elsewhere XLA's convolution and its own gradients.
    """
    return _same_conv_forward(x, kernel)


def _same_conv_forward(x, kernel):
    cpu = _same_conv_by_taps if _cpu_takes_taps() else _conv_nhwc
    return jax.lax.platform_dependent(x, kernel, cpu=cpu, default=_conv_nhwc)


def _conv_nhwc(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _same_conv_fwd(x, kernel):
    return _same_conv_forward(x, kernel), (x, kernel)


def _same_conv_bwd(residuals, g):
    x, kernel = residuals
    cpu = _same_conv_grads_by_taps if _cpu_takes_taps() else _same_conv_grads_xla
    return jax.lax.platform_dependent(x, kernel, g, cpu=cpu, default=_same_conv_grads_xla)


def _same_conv_grads_xla(x, kernel, g):
    return jax.vjp(_conv_nhwc, x, kernel)[1](g)


# XLA:CPU's convolution costs about the same time per input pixel and kernel tap
# whatever the number of output channels, so with 3 of them (out_conv: 16 -> 3
# channels, 7x7) it runs at under half the FLOP rate of the resizer's other convs.
# Written as matmuls with one operand of k*k*c_out columns, the same sums run at
# matmul speed; the price is a tensor of k*k*c_out/c_in times the memory of `x`
# (~9x for out_conv), alive only inside the forward or backward pass. That pays
# under tcmalloc and loses under glibc's malloc, which faults such a tensor's pages
# in again at every step (bench/resizer.py, README "Performance"; host_allocator.py).


@functools.cache
def _cpu_takes_taps() -> bool:
    return host_allocator.loaded_allocator() == "tcmalloc"


def _tap_matrix(kernel):
    """HWIO `kernel` as [c_in, (i, j, o)]: one column per kernel tap and output channel."""
    kh, kw, c_in, c_out = kernel.shape
    return jnp.transpose(kernel, (2, 0, 1, 3)).reshape(c_in, kh * kw * c_out)


def _same_conv_by_taps(x, kernel):
    """`_conv_nhwc(x, kernel)` as one matmul and a sum of k*k shifted slices.

    u[p, (i, j, o)] = sum_c x[p, c] kernel[i, j, c, o] gives every pixel's
    contribution to each tap; output pixel (y, x) adds up u[(y + i - kh//2,
    x + j - kw//2), (i, j, :)] over the taps, one fused elementwise loop.
    """
    kh, kw, c_in, c_out = kernel.shape
    n, h, w, _ = x.shape
    ph, pw = kh // 2, kw // 2
    taps = _tap_matrix(kernel)
    # Sums in float32 or wider whatever the input dtype: a bfloat16 running sum of the 49
    # taps put the bf16 step outside tests/test_mixed_precision.py's bounds.
    acc = jnp.promote_types(x.dtype, jnp.float32)
    u = jnp.matmul(x.reshape(-1, c_in), taps, preferred_element_type=acc)
    u = jnp.pad(
        u.reshape(n, h, w, kh, kw, c_out), ((0, 0), (ph, ph), (pw, pw), (0, 0), (0, 0), (0, 0))
    )
    out = None
    for i in range(kh):
        for j in range(kw):
            term = u[:, i : i + h, j : j + w, i, j]
            out = term if out is None else out + term
    return out.astype(x.dtype)


def _same_conv_grads_by_taps(x, kernel, g):
    """Both gradients of `_conv_nhwc` as two matmuls with one im2col of `g`.

    shifted[p, (i, j, o)] = g[p - (i - kh//2, j - kw//2), o] (zero outside) holds,
    for every input pixel, the output gradients that its k*k taps fed; then
    dx = shifted @ taps^T and dkernel = x^T @ shifted.
    """
    kh, kw, c_in, c_out = kernel.shape
    n, h, w, _ = g.shape
    ph, pw = kh // 2, kw // 2
    g = jnp.pad(g, ((0, 0), (ph, ph), (pw, pw), (0, 0)))  # g[t] is now at t + (ph, pw)
    shifted = jnp.concatenate(
        [g[:, 2 * ph - i : 2 * ph - i + h, 2 * pw - j : 2 * pw - j + w]
         for i in range(kh) for j in range(kw)],
        axis=-1,
    ).reshape(n * h * w, kh * kw * c_out)  # fmt: skip
    taps = _tap_matrix(kernel)
    acc = dict(preferred_element_type=jnp.promote_types(g.dtype, jnp.float32))
    dx = jnp.matmul(shifted, taps.astype(g.dtype).T, **acc).reshape(x.shape)
    dk = jnp.matmul(x.reshape(n * h * w, c_in).astype(g.dtype).T, shifted, **acc)
    dk = jnp.transpose(dk.reshape(c_in, kh, kw, c_out), (1, 2, 0, 3))
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_same_conv.defvjp(_same_conv_fwd, _same_conv_bwd)


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


def make_resizer(
    resizer_config, *, in_channels: int, rngs: nnx.Rngs, dtype=jnp.float32
) -> nnx.Module:
    """Builds the resizer described by `resizer_config` (config.resizer).

    Args:
      resizer_config: ConfigDict with `kind` ('learned' or one of FIXED_METHODS),
        `output_size` (h, w), `num_filters`, `num_res_blocks`, `interpolation` and
        `antialias`. The last four have the paper's defaults if missing.
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
    output_size = _check_output_size(
        resizer_config.get("output_size"), "config.resizer.output_size"
    )
    antialias = resizer_config.get("antialias", True)
    if kind != "learned":
        return FixedResizer(output_size, kind, antialias)
    interpolation = _check_method(
        resizer_config.get("interpolation", "bilinear"), "config.resizer.interpolation"
    )
    return LearnedResizer(
        output_size,
        num_filters=resizer_config.get("num_filters", 16),
        num_res_blocks=resizer_config.get("num_res_blocks", 1),
        interpolation=interpolation,
        antialias=antialias,
        in_channels=in_channels,
        dtype=dtype,
        rngs=rngs,
    )
