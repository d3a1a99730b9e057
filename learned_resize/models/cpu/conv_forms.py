"""`nnx.Conv` with the two convolutions XLA:CPU runs slowly written another way.

Pointwise. A 1x1 convolution over NHWC activations is the matrix product
[N*H*W, C_in] @ [C_in, C_out] (after subsampling for a stride). Written as a
convolution, XLA:CPU computes its kernel gradient as another convolution that
wants both the input and the output gradient transposed to channel-major layout
first: two full-size copies per layer per step. As a `dot_general` the same
gradient is x^T @ dy on the arrays as they are. The module keeps `nnx.Conv`'s
parameters, names and initialisers (a [1, 1, C_in, C_out] kernel), so parameter
counts and checkpoints are unchanged.

Depthwise. A grouped convolution with one input channel per group (MobileNet-v2's and
EfficientNet-B0's 3x3 and 5x5 layers, Inception-v2's separable stem) runs on XLA:CPU,
gradients above all, far below its dense rate: eight of those layers' shapes at
batch 8, forward and both gradients, took 2.18 s as XLA convolutions and 0.17 s as the
k*k shifted, strided slices of the padded input times the kernel's taps, summed, with
no more temporary memory (`bench/depthwise.py`). The gradient is written by hand (a
custom VJP keeping only the input and kernel) and is again a sum of taps. Products
are summed in float32 whatever the compute dtype, as a convolution accumulates. Other
platforms keep XLA's convolution (`jax.lax.platform_dependent`).

Every other convolution (larger kernels with mixed channels, dilation, masks, 1-D or
3-D inputs, explicit `out_sharding`) is `nnx.Conv` itself; so is every convolution
traced inside `plain()`, for benches and tests.
"""

import contextlib
import functools
import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models import cpu

# With the CPU forms switched off (models/cpu/__init__.py) every convolution is nnx.Conv's.
_plain = not cpu.enabled()


@contextlib.contextmanager
def plain():
    """Convolutions traced inside this context are all `nnx.Conv`'s own."""
    global _plain
    previous, _plain = _plain, True
    try:
        yield
    finally:
        _plain = previous


def _pairs(value, default):
    if value is None:
        return (default, default)
    return (value, value) if isinstance(value, int) else tuple(value)


def _explicit_pads(padding, size, kernel, strides):
    """((top, bottom), (left, right)) for nnx.Conv's padding, or None for other kinds."""
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            return None
        return tuple(jax.lax.padtype_to_pads(size, kernel, strides, padding))
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
    return pads if len(pads) == 2 else None


def _windows(xp, kernel_size, strides, out_size):
    """(a, b, the [N, oh, ow, C] slice of padded xp under tap (a, b)) for every tap."""
    (sh, sw), (oh, ow) = strides, out_size
    for a in range(kernel_size[0]):
        for b in range(kernel_size[1]):
            yield a, b, xp[:, a : a + sh * (oh - 1) + 1 : sh, b : b + sw * (ow - 1) + 1 : sw]


def _padded(x, pads):
    return jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _out_size(padded_size, kernel_size, strides):
    return tuple((n - k) // s + 1 for n, k, s in zip(padded_size, kernel_size, strides))


def depthwise_by_taps(x, kernel, strides, pads):
    """Grouped convolution of NHWC x with one input channel per group, as summed taps.

    kernel: [kh, kw, 1, C * m]; output channel o reads input channel o // m. With a
    channel multiplier m > 1 each of the m filters per channel runs on x as it is and
    the outputs are interleaved (no m-times repeated copy of x).
    """
    multiplier = kernel.shape[-1] // x.shape[-1]
    if multiplier == 1:
        return _taps(x, kernel, strides, pads)
    outs = [_taps(x, kernel[..., j::multiplier], strides, pads) for j in range(multiplier)]
    return jnp.stack(outs, axis=-1).reshape(*outs[0].shape[:3], -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _taps(x, kernel, strides, pads):
    """depthwise_by_taps for multiplier 1. The gradient keeps only x and the kernel
    (autodiff would keep every tap's slice, k*k times the input's memory) and is again
    a sum of taps."""
    xp = _padded(x, pads)
    out_size = _out_size(xp.shape[1:3], kernel.shape[:2], strides)
    total = 0.0
    for a, b, window in _windows(xp, kernel.shape[:2], strides, out_size):
        total += window.astype(jnp.float32) * kernel[a, b, 0].astype(jnp.float32)
    return total.astype(x.dtype)


def _taps_fwd(x, kernel, strides, pads):
    return _taps(x, kernel, strides, pads), (x, kernel)


def _kernel_gradient(xp, g32, kernel_size, strides):
    """[kh * kw, C] sums of window * g, one tap per loop step: written as nine sums,
    XLA:CPU materialised every tap's window at once (k*k times the input's memory)."""
    (sh, sw), (n, oh, ow, c) = strides, g32.shape
    span = (n, sh * (oh - 1) + 1, sw * (ow - 1) + 1, c)

    def tap(t):
        corner = (0, t // kernel_size[1], t % kernel_size[1], 0)
        window = jax.lax.dynamic_slice(xp, corner, span)[:, ::sh, ::sw]
        return jnp.sum(window.astype(jnp.float32) * g32, axis=(0, 1, 2))

    return jax.lax.map(tap, jnp.arange(kernel_size[0] * kernel_size[1]))


def _taps_bwd(strides, pads, residuals, g):
    x, kernel = residuals
    xp = _padded(x, pads)
    (sh, sw), (hp, wp) = strides, xp.shape[1:3]
    oh, ow = g.shape[1:3]
    g32 = g.astype(jnp.float32)
    dxp = 0.0
    for a, b in itertools.product(range(kernel.shape[0]), range(kernel.shape[1])):
        # This tap's contribution placed back on the padded grid: g * k at rows
        # a, a + sh, ... (interior padding sh - 1), zero elsewhere.
        rows = (a, hp - a - sh * (oh - 1) - 1, sh - 1)
        cols = (b, wp - b - sw * (ow - 1) - 1, sw - 1)
        contribution = g32 * kernel[a, b, 0].astype(jnp.float32)
        dxp += jax.lax.pad(contribution, 0.0, ((0, 0, 0), rows, cols, (0, 0, 0)))
    dk = _kernel_gradient(xp, g32, kernel.shape[:2], strides)
    (top, _), (left, _) = pads
    dx = dxp[:, top : top + x.shape[1], left : left + x.shape[2]]
    dk = dk.reshape(kernel.shape)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_taps.defvjp(_taps_fwd, _taps_bwd)


def _depthwise_xla(x, kernel, strides, pads):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        strides,
        pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


def _unpadded(padding) -> bool:
    if isinstance(padding, str):
        return padding in ("SAME", "VALID")  # Both pad nothing for a 1x1 kernel.
    if isinstance(padding, int):
        return padding == 0
    return all((p == 0) if isinstance(p, int) else tuple(p) == (0, 0) for p in padding)


class Conv(nnx.Conv):
    """`nnx.Conv`, with 2-D 1x1 convolutions computed as a matrix product."""

    def _is_pointwise(self, inputs) -> bool:
        return (
            inputs.ndim == 4
            and tuple(self.kernel_size) == (1, 1)
            and self.feature_group_count == 1
            and self.mask is None
            and _pairs(self.input_dilation, 1) == (1, 1)
            and _unpadded(self.padding)
        )

    def _depthwise_pads(self, inputs):
        """Explicit pads if this is a depthwise convolution the taps form computes."""
        if not (
            inputs.ndim == 4
            and len(self.kernel_size) == 2
            and self.feature_group_count == self.in_features > 1
            and self.out_features % self.in_features == 0
            and self.mask is None
            and _pairs(self.input_dilation, 1) == (1, 1)
            and _pairs(self.kernel_dilation, 1) == (1, 1)
        ):
            return None
        size, strides = inputs.shape[1:3], _pairs(self.strides, 1)
        return _explicit_pads(self.padding, size, tuple(self.kernel_size), strides)

    def __call__(self, inputs, out_sharding=None):
        if out_sharding is not None or _plain:  # (flax < 0.12.3: no out_sharding)
            kwargs = {} if out_sharding is None else {"out_sharding": out_sharding}
            return super().__call__(inputs, **kwargs)
        pads = self._depthwise_pads(inputs)
        if pads is not None:
            return self._depthwise(inputs, pads)
        if not self._is_pointwise(inputs):
            return super().__call__(inputs)
        sh, sw = _pairs(self.strides, 1)
        if (sh, sw) != (1, 1):
            inputs = inputs[:, ::sh, ::sw, :]  # ceil(H / s) rows, as SAME / VALID give for k=1.
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = self.promote_dtype(
            (inputs, self.kernel[...][0, 0], bias), dtype=self.dtype
        )
        y = jax.lax.dot_general(
            x,
            kernel,
            (((3,), (0,)), ((), ())),
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        return y if bias is None else y + bias

    def _depthwise(self, inputs, pads):
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = self.promote_dtype((inputs, self.kernel[...], bias), dtype=self.dtype)
        strides = _pairs(self.strides, 1)
        y = jax.lax.platform_dependent(
            x,
            kernel,
            cpu=lambda x, k: depthwise_by_taps(x, k, strides, pads),
            default=lambda x, k: _depthwise_xla(x, k, strides, pads),
        )
        return y if bias is None else y + bias
