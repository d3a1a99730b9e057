"""MobileNetV2 (Sandler et al. 2018) in flax.nnx, with torchvision's semantics.

Inverted residual blocks: a 1x1 expansion conv (skipped when the expansion is 1),
a 3x3 depthwise conv carrying the stride, and a linear 1x1 projection, each
followed by BN; ReLU6 after the first two. A block adds its input back when the
stride is 1 and the channel count is unchanged.

torchvision rather than Keras where they differ: BN epsilon 1e-5 and momentum
0.9 (Keras: 1e-3, 0.999), explicit symmetric padding (Keras pads stride-2 layers
asymmetrically) and dropout 0.2 before the head (Keras: none). Parameter counts
do not depend on these; width 1.0 with a 1000-way head has 3,504,872 in both.

Initialisation as torchvision: convs He-normal with fan_out, BN scale 1 and bias
0, head N(0, 0.01) with zero bias.

With `dropout_rate > 0` the module owns a dropout RNG stream (nnx.RngKey and
nnx.RngCount variables in its state): a jitted train step must return the
updated state (as `nnx.jit` or split/merge of the whole state do), or every step
reuses the same dropout mask. `dropout_rate=0` removes it.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models.layers import batch_norm, check_input, classifier, conv

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds a scaled channel count to a multiple of `divisor`, losing at most 10%.

    This is the rounding the reference implementations use for width multipliers;
    channel counts (and so parameter counts) depend on it exactly.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBN(nnx.Module):
    """Bias-free conv (symmetric k // 2 padding) + BN, then ReLU6 unless `activation=False`."""

    def __init__(self, in_ch, out_ch, kernel, stride=1, *, groups=1, activation=True, dtype, rngs):
        self.conv = conv(
            in_ch,
            out_ch,
            kernel,
            strides=stride,
            padding="symmetric",
            groups=groups,
            kernel_init=conv_init,
            dtype=dtype,
            rngs=rngs,
        )
        self.bn = batch_norm(out_ch, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.activation = activation

    def __call__(self, x, train: bool):
        x = self.bn(self.conv(x), use_running_average=not train)
        return nnx.relu6(x) if self.activation else x


class InvertedResidual(nnx.Module):
    """[1x1 expand + ReLU6] -> 3x3 depthwise (stride) + ReLU6 -> 1x1 linear projection."""

    def __init__(self, in_ch, out_ch, stride, expand_ratio, *, dtype, rngs):
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}.")
        hidden = int(round(in_ch * expand_ratio))
        self.use_residual = stride == 1 and in_ch == out_ch
        self.expand = (
            ConvBN(in_ch, hidden, 1, dtype=dtype, rngs=rngs) if expand_ratio != 1 else None
        )
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden, dtype=dtype, rngs=rngs)
        self.project = ConvBN(hidden, out_ch, 1, activation=False, dtype=dtype, rngs=rngs)

    def __call__(self, x, train: bool):
        y = x if self.expand is None else self.expand(x, train)
        y = self.project(self.depthwise(y, train), train)
        return x + y if self.use_residual else y


class MobileNetV2(nnx.Module):
    """MobileNetV2 classifier with a width multiplier.

    Shapes for an [N, H, W, C] input and width 1: 3x3/2 stem conv to 32 channels;
    17 inverted residual blocks ending at H/32 with 320 channels; 1x1 conv to 1280;
    global average pool; dropout; dense head -> [N, num_classes] float32 logits.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        in_channels: int = 3,
        width: float = 1.0,
        dropout_rate: float = 0.2,
    ):
        """Builds the network.

        Args:
          num_classes: size of the output layer.
          rngs: parameter initialisation keys; when `dropout_rate > 0` a fork of
            them also drives dropout (the stream lives in the module's state).
          dtype: compute dtype; parameters and BN statistics stay float32.
          in_channels: channels of the input images.
          width: width multiplier applied to every layer (the head keeps at least 1280).
          dropout_rate: dropout before the head in training (torchvision: 0.2).
        """
        if width <= 0:
            raise ValueError(f"MobileNetV2 width must be positive, got {width}.")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}.")
        if num_classes < 0 or in_channels < 1:
            raise ValueError(
                f"num_classes ({num_classes}) must be >= 0 (0: no head) and in_channels "
                f"({in_channels}) positive."
            )
        self.in_channels = in_channels
        self.dtype = dtype

        ch = make_divisible(32 * width)
        last_ch = make_divisible(1280 * max(1.0, width))
        self.stem = ConvBN(in_channels, ch, 3, 2, dtype=dtype, rngs=rngs)
        blocks = []
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            out_ch = make_divisible(c * width)
            for i in range(n):
                blocks.append(
                    InvertedResidual(ch, out_ch, s if i == 0 else 1, t, dtype=dtype, rngs=rngs)
                )
                ch = out_ch
        self.blocks = nnx.List(blocks)
        self.last_conv = ConvBN(ch, last_ch, 1, dtype=dtype, rngs=rngs)
        # A forked stream, so dropout draws do not advance the caller's `rngs`.
        self.num_features = last_ch
        headless = num_classes == 0  # a backbone returning pooled features (IQA score heads)
        use_dropout = dropout_rate > 0 and not headless
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs.fork()) if use_dropout else None
        self.classifier = classifier(
            last_ch, num_classes, kernel_init=nnx.initializers.normal(0.01), dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        check_input(x, self.in_channels, "MobileNetV2")
        x = self.stem(x.astype(self.dtype), train)
        for block in self.blocks:
            x = block(x, train)
        x = self.last_conv(x, train)
        # Pool in float32: a bf16 mean over a large map loses precision.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        if self.classifier is None:
            return x
        x = x.astype(self.dtype)
        if self.dropout is not None:
            x = self.dropout(x, deterministic=not train)
        return self.classifier(x).astype(jnp.float32)
