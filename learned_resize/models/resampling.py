"""Fixed resampling of images: bilinear, bicubic, Lanczos, area, nearest.

`resize` applies the same linear map as `jax.image.resize` (whose weights it uses)
as a few strided slices per axis instead of dense `[out, in]` matrices; see
`_resize_axis`. It is differentiable with respect to its input, and every method's
weights sum to one per output pixel (tested), which `resizers.LearnedResizer` relies
on to normalise after its bottleneck resize instead of before it.

`antialias` defaults to False everywhere: the experiments (defaults_lib.base_config)
use TF's default bilinear resize, which the paper's baselines use and which does not
antialias, so the library's defaults build the same skip path as the configs.
"""

import contextlib
import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FIXED_METHODS = ("bilinear", "bicubic", "lanczos3", "lanczos5", "area", "nearest")

# Our method names -> jax.image names. `area` averages the input pixels that each
# output pixel covers (weighted by overlap), so it is antialiased by construction;
# `nearest` ignores `antialias`.
JAX_METHODS = {
    "bilinear": "linear",
    "bicubic": "cubic",  # Keys kernel, a = -0.5 (the same kernel as PIL's BICUBIC).
    "lanczos3": "lanczos3",
    "lanczos5": "lanczos5",
    "area": "area",
    "nearest": "nearest",
}


# The experiments' setting, and so every default here and in resizers.py.
ANTIALIAS = False


def check_output_size(output_size: Any, key: str = "output_size") -> tuple[int, int]:
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


def check_method(method: str, key: str = "method") -> str:
    if method not in JAX_METHODS:
        raise ValueError(f"{key} is {method!r}; set it to one of {', '.join(FIXED_METHODS)}.")
    return method


def resize(
    x: jax.Array, output_size: Sequence[int], method: str = "bilinear", antialias: bool = ANTIALIAS
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
    size = check_output_size(output_size)
    method = check_method(method)
    if x.ndim < 3:
        raise ValueError(f"resize needs [..., H, W, C] images, got shape {tuple(x.shape)}.")
    if _polymorphic:  # only inside `shape_polymorphic()`: exported programs, never training
        return _resize_polymorphic(x, size, method, bool(antialias))
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
        out = np.asarray(_resize_impulses(impulses, n_out, JAX_METHODS[method], antialias))
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


# ------------------------------------------------------------------ any input size
#
# The slice plan above is built from the concrete input size. An exported resizer
# (`tools/export.py`) takes images of any size, so inside `shape_polymorphic()` the
# resize is two matmuls with `[n_out, n_in]` weight matrices computed inside the
# program from the (possibly symbolic) input size with jnp ops: `resize_matrix`.
# Training never enters that context, so what it traces is unchanged.

_polymorphic = False


@contextlib.contextmanager
def shape_polymorphic():
    """Traces inside this context resize with `resize_matrix` weights (any input size)."""
    global _polymorphic
    previous, _polymorphic = _polymorphic, True
    try:
        yield
    finally:
        _polymorphic = previous


def polymorphic() -> bool:
    """Whether `resize` traces the any-size formulation now (see `shape_polymorphic`)."""
    return _polymorphic


def resize_matrix(n_in, n_out: int, method: str, antialias: bool = ANTIALIAS) -> jax.Array:
    """The float32 `[n_out, n_in]` weights of `resize` along one axis, as jnp ops of n_in.

    `n_in` may be a symbolic dimension (`jax.export.symbolic_shape`): the matrix is
    built from iotas, so one program serves every input size. The definition is
    jax.image.resize's (half-pixel centres, the kernel widened by n_in / n_out when
    antialiasing a downscale, each row normalised to sum to one), with the distances
    between output and input centres taken from integers,

        |(i + 1/2) n_in / n_out - 1/2 - j| = |(2i + 1) n_in - (2j + 1) n_out| / (2 n_out),

    so that a weight is rounded once, not after an inexact scale. `area` is the exact
    overlap, `nearest` the one-hot of input floor((2i + 1) n_in / (2 n_out)). At
    n_in == n_out the matrix is the identity, as `resize` returns its input.
    `tools/export.py` writes the same arithmetic as ONNX operators.
    """
    method = check_method(method)
    i = jax.lax.broadcasted_iota(jnp.int32, (n_out, n_in), 0)
    j = jax.lax.broadcasted_iota(jnp.int32, (n_out, n_in), 1)
    n_in_value = _dimension_value(n_in)
    if method == "nearest":
        weights = (j == (2 * i + 1) * n_in_value // (2 * n_out)).astype(jnp.float32)
    elif method == "area":
        low = jnp.maximum(i * n_in_value, j * n_out)
        high = jnp.minimum((i + 1) * n_in_value, (j + 1) * n_out)
        weights = jnp.maximum(high - low, 0).astype(jnp.float32) / n_in_value.astype(jnp.float32)
    else:
        widen = jnp.maximum(n_in_value, n_out) if antialias else jnp.int32(n_out)
        distance = jnp.abs((2 * i + 1) * n_in_value - (2 * j + 1) * n_out).astype(jnp.float32)
        weights = _KERNELS[method](distance / (2 * widen).astype(jnp.float32))
        weights = weights / jnp.sum(weights, axis=1, keepdims=True)
    return jnp.where(n_in_value == n_out, (i == j).astype(jnp.float32), weights)


def _dimension_value(n) -> jax.Array:
    """A dimension, concrete or symbolic, as an int32 scalar of the traced program."""
    return jnp.asarray(n, jnp.int32)


def _triangle(d):
    return jnp.maximum(0.0, 1.0 - d)


def _keys_cubic(d):  # a = -0.5, as jax.image's "cubic" (and PIL's BICUBIC)
    near = ((1.5 * d - 2.5) * d) * d + 1.0
    far = ((-0.5 * d + 2.5) * d - 4.0) * d + 2.0
    return jnp.where(d >= 2.0, 0.0, jnp.where(d >= 1.0, far, near))


def _lanczos(radius: float):
    def kernel(d):  # as jax.image: 1 near 0, r sin(pi d) sin(pi d / r) / (pi d)^2, 0 beyond r
        y = radius * jnp.sin(np.pi * d) * jnp.sin(np.pi * d / radius)
        out = jnp.where(d > 1e-3, y / jnp.where(d != 0, np.pi**2 * d**2, 1.0), 1.0)
        return jnp.where(d > radius, 0.0, out)

    return kernel


_KERNELS = {
    "bilinear": _triangle,
    "bicubic": _keys_cubic,
    "lanczos3": _lanczos(3.0),
    "lanczos5": _lanczos(5.0),
}


def _resize_polymorphic(x: jax.Array, size: tuple[int, int], method: str, antialias: bool):
    """`resize` for any (symbolic) input size: one matmul per spatial axis."""
    for axis, n_out in ((x.ndim - 3, size[0]), (x.ndim - 2, size[1])):
        matrix = resize_matrix(x.shape[axis], n_out, method, antialias).astype(x.dtype)
        y = jnp.tensordot(x, matrix, axes=[[axis], [1]], precision="highest")
        x = jnp.moveaxis(y, -1, axis)
    return x
