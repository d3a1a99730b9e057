"""EfficientNet-B0..B7 (Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", 2019).

B0 is a stack of MBConv blocks (1x1 expansion, depthwise kxk, squeeze-and-excite,
1x1 projection, residual with stochastic depth); B1..B7 scale its width and depth
by the paper's compound coefficients (channels rounded to multiples of 8, repeats
rounded up) and are meant for larger inputs (`RESOLUTION`). The layout and rounding
follow torchvision's `efficientnet_b*`, so the parameter counts match it with 1000
classes: B0 5,288,548, B1 7,794,184, ... B7 66,347,960.

Choices: SAME padding (TF's; output sizes equal torchvision's), BatchNorm with the
original TF implementation's momentum 0.99 and epsilon 1e-3 for every variant.

Randomness: dropout before the classifier and stochastic depth (a whole residual
branch dropped per example with the block's rate, survivors scaled by
1/(1 - rate)) draw from the 'dropout' stream of the `rngs` given to the
constructor (or 'default' when there is none). Each such layer keeps its own key
in the module state, so a jitted train step must carry that state between steps.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models.layers import batch_norm, check_input, classifier, conv

# variant -> (width multiplier, depth multiplier, input resolution, dropout rate).
VARIANTS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4),
    5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5),
    7: (2.0, 3.1, 600, 0.5),
}
RESOLUTION = {variant: spec[2] for variant, spec in VARIANTS.items()}

# B0 stages: (expand ratio, kernel size, first stride, in channels, out channels, repeats).
_B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)

# He-normal over fan-out for convolutions (the TF reference and torchvision).
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
# U(-1/sqrt(num_classes), 1/sqrt(num_classes)) for the classifier, as the reference.
_DENSE_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def round_channels(channels: float, divisor: int = 8) -> int:
    """Rounds to the nearest multiple of `divisor`, never losing more than 10%."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def _check_dropout_stream(rngs: nnx.Rngs) -> None:
    try:
        rngs["dropout"]  # Falls back to 'default'; raises KeyError when neither exists.
    except KeyError:
        raise ValueError(
            "EfficientNet needs a 'dropout' or 'default' stream in rngs; "
            "pass e.g. nnx.Rngs(0) or nnx.Rngs(params=0, dropout=1)."
        ) from None


class ConvBN(nnx.Module):
    """Conv (no bias, SAME) -> BatchNorm -> optional SiLU."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        strides: int = 1,
        *,
        groups: int = 1,
        activation: bool = True,
        dtype,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        self.activation = activation
        self.conv = conv(
            in_features,
            out_features,
            kernel_size,
            strides=strides,
            groups=groups,
            kernel_init=_CONV_INIT,
            dtype=dtype,
            rngs=rngs,
        )
        self.norm = batch_norm(
            out_features, momentum=bn_momentum, epsilon=bn_epsilon, dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = self.norm(self.conv(x), use_running_average=not train)
        return nnx.silu(x) if self.activation else x


class SqueezeExcite(nnx.Module):
    """Channel gating: x * sigmoid(W2 silu(W1 mean_hw(x) + b1) + b2)."""

    def __init__(self, features: int, squeeze_features: int, *, dtype, rngs: nnx.Rngs):
        dense = dict(kernel_init=_CONV_INIT, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.reduce = nnx.Linear(features, squeeze_features, **dense)
        self.expand = nnx.Linear(squeeze_features, features, **dense)

    def __call__(self, x: jax.Array) -> jax.Array:
        scale = jnp.mean(x, axis=(1, 2))
        scale = nnx.sigmoid(self.expand(nnx.silu(self.reduce(scale))))
        return x * scale[:, None, None, :].astype(x.dtype)


class MBConv(nnx.Module):
    """Inverted-residual block with squeeze-and-excite and stochastic depth.

    Args:
      in_features, out_features: block input / output channels.
      expand_ratio: width of the depthwise stage relative to the input.
      kernel_size: depthwise kernel size.
      strides: depthwise stride (the residual exists only for stride 1, same width).
      stochastic_depth_rate: probability of dropping the residual branch in training.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        expand_ratio: int,
        kernel_size: int,
        strides: int,
        stochastic_depth_rate: float,
        *,
        dtype,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        expanded = round_channels(in_features * expand_ratio)
        self.expand = ConvBN(in_features, expanded, 1, **kw) if expanded != in_features else None
        self.depthwise = ConvBN(expanded, expanded, kernel_size, strides, groups=expanded, **kw)
        # The squeeze width follows the block *input* width, as in the reference.
        self.se = SqueezeExcite(expanded, max(1, in_features // 4), dtype=dtype, rngs=rngs)
        self.project = ConvBN(expanded, out_features, 1, activation=False, **kw)
        self.use_residual = strides == 1 and in_features == out_features
        self.stochastic_depth = (
            # One mask value per example: the whole branch is kept or dropped.
            nnx.Dropout(stochastic_depth_rate, broadcast_dims=(1, 2, 3), rngs=rngs)
            if self.use_residual and stochastic_depth_rate > 0
            else None
        )

    def branch(self, x: jax.Array, train: bool) -> jax.Array:
        """The residual branch (expand, depthwise, squeeze-excite, project)."""
        y = self.expand(x, train) if self.expand is not None else x
        y = self.se(self.depthwise(y, train))
        return self.project(y, train)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = self.branch(x, train)
        if not self.use_residual:
            return y
        if self.stochastic_depth is not None:
            y = self.stochastic_depth(y, deterministic=not train)
        return x + y


class EfficientNet(nnx.Module):
    """EfficientNet-B{variant} classifier on NHWC images (any size >= 32x32).

    Args:
      num_classes: size of the output layer; 0 builds a headless backbone whose
        call returns the pooled float32 features [N, num_features] (e.g. for the IQA
        score head).
      rngs: keys for initialisation ('params' or 'default') and for dropout and
        stochastic depth ('dropout' or 'default').
      dtype: compute dtype; parameters and BN statistics stay float32.
      in_channels: channels of the input images.
      variant: 0..7 selects the compound-scaled B0..B7.
      dropout_rate: dropout before the classifier; None means the variant's
        (0.2 for B0/B1 up to 0.5 for B6/B7).
      stochastic_depth_rate: drop rate of the last block; block i of n uses
        rate * i / n (0.2 in the reference).
      bn_momentum: BN running-average momentum (0.99 in the TF reference).
      bn_epsilon: BN epsilon (1e-3 in the TF reference).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        in_channels: int = 3,
        variant: int = 0,
        dropout_rate: float | None = None,
        stochastic_depth_rate: float = 0.2,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"EfficientNet variant must be one of 0..7, got {variant!r}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: headless), got {num_classes}.")
        if num_classes or stochastic_depth_rate > 0:
            _check_dropout_stream(rngs)
        width, depth, resolution, default_dropout = VARIANTS[variant]
        self.variant = variant
        self.resolution = resolution
        self.in_channels = in_channels
        self.dtype = dtype
        kw = dict(dtype=dtype, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)

        # Compound scaling: widths times `width` (rounded to 8), repeats times `depth` (ceil).
        stages = []
        for expand, kernel, stride, cin, cout, repeats in _B0_STAGES:
            cin, cout = round_channels(cin * width), round_channels(cout * width)
            stages.append((expand, kernel, stride, cin, cout, int(math.ceil(repeats * depth))))
        num_blocks = sum(stage[-1] for stage in stages)
        self.stem = ConvBN(in_channels, stages[0][3], 3, 2, **kw)
        blocks = []
        for expand, kernel, stride, cin, cout, repeats in stages:
            for i in range(repeats):
                rate = stochastic_depth_rate * len(blocks) / num_blocks
                block_in, block_stride = (cin, stride) if i == 0 else (cout, 1)
                blocks.append(MBConv(block_in, cout, expand, kernel, block_stride, rate, **kw))
        self.blocks = nnx.List(blocks)
        last = stages[-1][4]
        self.num_features = 4 * last
        self.head = ConvBN(last, self.num_features, 1, **kw)
        if not num_classes:  # Headless backbones leave dropout to the head that follows.
            self.dropout, self.classifier = None, None
        else:
            self.dropout = nnx.Dropout(
                default_dropout if dropout_rate is None else dropout_rate, rngs=rngs
            )
            # The classifier runs in float32: it is tiny and keeps the logits precise.
            self.classifier = classifier(
                self.num_features,
                num_classes,
                kernel_init=_DENSE_INIT,
                dtype=jnp.float32,
                rngs=rngs,
            )

    def features(self, x: jax.Array, train: bool) -> jax.Array:
        """Head activations [N, ceil(H/32), ceil(W/32), num_features] in the compute dtype."""
        check_input(x, self.in_channels, "EfficientNet")
        x = self.stem(x.astype(self.dtype), train)
        for block in self.blocks:
            x = block(x, train)
        return self.head(x, train)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Maps float images [N, H, W, in_channels] to float32 logits [N, num_classes].

        Headless (num_classes=0): returns the pooled features [N, num_features].
        """
        x = jnp.mean(self.features(x, train).astype(jnp.float32), axis=(1, 2))
        if self.classifier is None:
            return x
        return self.classifier(self.dropout(x, deterministic=not train))
