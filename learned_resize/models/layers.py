"""Layers every backbone builds the same way.

Each returns a plain `flax.nnx` module (or `conv_forms.Conv`), so the attribute a
backbone stores it under stays its parameter path and checkpoints are unchanged.
Parameters and BatchNorm statistics are float32 whatever the compute dtype.
"""

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
