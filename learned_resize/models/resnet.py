"""ResNet v1.5 classifiers (He et al. 2016) in flax.nnx, laid out like torchvision.

Depths 18 and 34 use basic blocks (two 3x3 convs); 50 and 101 use bottleneck
blocks (1x1 -> 3x3 -> 1x1, four-fold expansion) with the stride on the 3x3 conv
("v1.5", the torchvision and MLPerf variant). Parameter counts with a 1000-way
head equal torchvision's: 11,689,512 / 21,797,672 / 25,557,032 / 44,549,160.

Padding is explicit and symmetric (k // 2 on each side, as in torchvision) rather
than 'SAME', so that a stride-2 layer sees exactly the pixels the torchvision
layer sees and converted weights give the same outputs. The network ends in a
global average pool, so any input size works; 32x32 (total stride 32) is the
smallest that keeps every stage meaningful.

Initialisation follows torchvision: convs He-normal with fan_out, BN scale 1 and
bias 0, the head uniform in +-1/sqrt(fan_in) (bias 0 instead of torchvision's
uniform bias). `zero_init_residual=True` sets the last BN scale of every block to
zero so each block starts as the identity (Goyal et al. 2017); it is off by
default, as in torchvision.

In training every BatchNorm (with the ReLU after it) runs through
`layers.batch_norm_act`: nnx.BatchNorm's values and running averages, with a gradient
written by hand that keeps only the convolution's output and the per-channel
statistics (XLA's temporary memory of the ResNet-50 train step at batch 8: 778 MB
instead of 1137; docs/performance.md).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models import layers

# depth -> (block type, blocks per stage)
_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
_STAGE_WIDTHS = (64, 128, 256, 512)

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), untruncated.
conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
# torchvision's nn.Linear default kernel: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
dense_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def conv(in_ch, out_ch, kernel, stride, *, dtype, rngs):
    """Bias-free conv with torchvision's symmetric padding (every conv here feeds a BN)."""
    return layers.conv(
        in_ch,
        out_ch,
        kernel,
        strides=stride,
        padding="symmetric",
        kernel_init=conv_init,
        dtype=dtype,
        rngs=rngs,
    )


def batch_norm(features, *, dtype, rngs, zero_scale=False):
    """BN with torchvision's defaults (momentum 0.1 there is 0.9 here); stats stay float32."""
    scale_init = nnx.initializers.zeros if zero_scale else nnx.initializers.ones
    return layers.batch_norm(
        features, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs, scale_init=scale_init
    )


class Downsample(nnx.Module):
    """Projection shortcut: strided 1x1 conv + BN."""

    def __init__(self, in_ch, out_ch, stride, *, dtype, rngs):
        self.conv = conv(in_ch, out_ch, 1, stride, dtype=dtype, rngs=rngs)
        self.bn = batch_norm(out_ch, dtype=dtype, rngs=rngs)

    def __call__(self, x, train: bool):
        return layers.batch_norm_act(self.bn, self.conv(x), train, relu=False)


class BasicBlock(nnx.Module):
    """relu(x' + BN(conv3x3(relu(BN(conv3x3_stride(x)))))), x' = x or its projection."""

    expansion = 1

    def __init__(self, in_ch, width, stride=1, *, zero_init_residual=False, dtype, rngs):
        out_ch = width * self.expansion
        self.conv1 = conv(in_ch, width, 3, stride, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(width, dtype=dtype, rngs=rngs)
        self.conv2 = conv(width, out_ch, 3, 1, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(out_ch, dtype=dtype, rngs=rngs, zero_scale=zero_init_residual)
        self.downsample = (
            Downsample(in_ch, out_ch, stride, dtype=dtype, rngs=rngs)
            if stride != 1 or in_ch != out_ch
            else None
        )

    def __call__(self, x, train: bool):
        y = layers.batch_norm_act(self.bn1, self.conv1(x), train, relu=True)
        y = layers.batch_norm_act(self.bn2, self.conv2(y), train, relu=False)
        shortcut = x if self.downsample is None else self.downsample(x, train)
        return layers.relu(y + shortcut)


class Bottleneck(nnx.Module):
    """relu(x' + BN(conv1x1(relu(BN(conv3x3_stride(relu(BN(conv1x1(x))))))))).

    The stride sits on the 3x3 conv (v1.5); the original v1 strided the first 1x1.
    """

    expansion = 4

    def __init__(self, in_ch, width, stride=1, *, zero_init_residual=False, dtype, rngs):
        out_ch = width * self.expansion
        self.conv1 = conv(in_ch, width, 1, 1, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(width, dtype=dtype, rngs=rngs)
        self.conv2 = conv(width, width, 3, stride, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(width, dtype=dtype, rngs=rngs)
        self.conv3 = conv(width, out_ch, 1, 1, dtype=dtype, rngs=rngs)
        self.bn3 = batch_norm(out_ch, dtype=dtype, rngs=rngs, zero_scale=zero_init_residual)
        self.downsample = (
            Downsample(in_ch, out_ch, stride, dtype=dtype, rngs=rngs)
            if stride != 1 or in_ch != out_ch
            else None
        )

    def __call__(self, x, train: bool):
        y = layers.batch_norm_act(self.bn1, self.conv1(x), train, relu=True)
        y = layers.batch_norm_act(self.bn2, self.conv2(y), train, relu=True)
        y = layers.batch_norm_act(self.bn3, self.conv3(y), train, relu=False)
        shortcut = x if self.downsample is None else self.downsample(x, train)
        return layers.relu(y + shortcut)


def _build_stages(block_cls, blocks_per_stage, zero_init_residual, dtype, rngs):
    """ResNet's four stages of blocks (the first block of stages 2-4 strides by 2);
    returns them and the channels of the last one."""
    ch = 64
    stages = []
    for stage, (width, num_blocks) in enumerate(zip(_STAGE_WIDTHS, blocks_per_stage)):
        blocks = []
        for b in range(num_blocks):
            stride = 2 if (stage > 0 and b == 0) else 1
            blocks.append(
                block_cls(
                    ch, width, stride, zero_init_residual=zero_init_residual, dtype=dtype, rngs=rngs
                )
            )
            ch = width * block_cls.expansion
        stages.append(nnx.List(blocks))
    return stages, ch


class ResNet(nnx.Module):
    """ResNet-{18,34,50,101} v1.5 classifier.

    Shapes for an [N, H, W, C] input: stem 7x7/2 conv and 3x3/2 max pool -> H/4;
    stages 1-4 at H/4, H/8, H/16, H/32 with 64, 128, 256, 512 (x4 for bottleneck)
    channels; global average pool; dense head -> [N, num_classes] float32 logits.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        in_channels: int = 3,
        depth: int = 50,
        zero_init_residual: bool = False,
    ):
        """Builds the network.

        Args:
          num_classes: size of the output layer.
          rngs: parameter initialisation keys.
          dtype: compute dtype; parameters and BN statistics stay float32.
          in_channels: channels of the input images.
          depth: 18, 34, 50 or 101.
          zero_init_residual: start every block's last BN scale at 0.
        """
        if depth not in _STAGES:
            raise ValueError(
                f"ResNet depth {depth} is not supported; use one of {sorted(_STAGES)}."
            )
        if num_classes < 0 or in_channels < 1:
            raise ValueError(
                f"num_classes ({num_classes}) must be >= 0 (0: no head) and in_channels "
                f"({in_channels}) positive."
            )
        self.in_channels = in_channels
        self.dtype = dtype
        kind, blocks_per_stage = _STAGES[depth]
        block_cls = BasicBlock if kind == "basic" else Bottleneck

        self.conv1 = conv(in_channels, 64, 7, 2, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(64, dtype=dtype, rngs=rngs)

        stages, ch = _build_stages(block_cls, blocks_per_stage, zero_init_residual, dtype, rngs)
        # torchvision's names, so converted checkpoints map one to one.
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self.num_features = ch
        # num_classes=0: a headless backbone returning pooled features (IQA score heads).
        self.fc = layers.classifier(ch, num_classes, kernel_init=dense_init, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        layers.check_input(x, self.in_channels, "ResNet")
        x = x.astype(self.dtype)
        x = layers.batch_norm_act(self.bn1, self.conv1(x), train, relu=True)
        # Padding with -inf (nnx.max_pool's default) matches torch's max-pool padding.
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x, train)
        # Pool in float32: a bf16 mean over a large map loses precision.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        if self.fc is None:
            return x
        return self.fc(x.astype(self.dtype)).astype(jnp.float32)
