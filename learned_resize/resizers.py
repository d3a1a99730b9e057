"""Image resizers placed in front of a classifier: fixed kernels and the learned CNN.

The learned resizer is the network of Talebi & Milanfar, "Learning to Resize Images
for Computer Vision Tasks" (ICCV 2021); see part A of PAPERS.md. Every resizer maps
a float NHWC batch to `[N, h, w, C]` and is differentiable with respect to its input,
so it can be trained jointly with the network behind it.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

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

    Args:
      x: floating-point images, spatial axes at positions -3 and -2 (NHWC or HWC).
      output_size: (h, w).
      method: one of FIXED_METHODS.
      antialias: when downscaling, widen the kernel by the scale factor so that it
        low-pass filters (PIL's behaviour). Ignored by `area` and `nearest`.

    Returns:
      `[..., h, w, C]` in the dtype of `x`.
    """
    h, w = _check_output_size(output_size)
    method = _check_method(method)
    shape = (*x.shape[:-3], h, w, x.shape[-1])
    return jax.image.resize(x, shape, method=_JAX_METHODS[method], antialias=antialias)


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

        y = _leaky_relu(self.head_conv7(x.astype(self.dtype)))
        y = _leaky_relu(self.head_conv1(y))
        y = self.head_bn(y, use_running_average=not train)
        y = fixed(y)

        z = y
        for block in self.blocks:  # Chained: each block sees the previous block's output.
            z = block(z, train)
        z = self.tail(z, train) + y
        return self.out_conv(z).astype(x.dtype) + skip


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
