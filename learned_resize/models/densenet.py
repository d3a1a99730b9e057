"""DenseNet classifiers (Huang et al., "Densely Connected Convolutional Networks", 2017).

The layout follows torchvision's `densenet121/161/169/201`: a 7x7 stride-2 stem,
a 3x3 stride-2 max pool, four dense blocks of BN-ReLU-1x1-BN-ReLU-3x3 layers
whose outputs are concatenated onto their inputs, transitions (BN-ReLU-1x1 conv
halving the channels, 2x2 average pool) between blocks, a final BN-ReLU, global
average pooling and a linear head. With 1000 classes DenseNet-121 has 7,978,856
parameters, the number torchvision reports.

Differences from torchvision, on purpose: convolutions and the stem max pool use
SAME padding (output sizes are identical; only the pad split differs for even
inputs), and the network runs in NHWC.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models.layers import batch_norm, check_input, classifier, conv

# depth -> (growth rate, layers per dense block, stem width), as in the paper.
_CONFIGS = {
    121: (32, (6, 12, 24, 16), 64),
    161: (48, (6, 12, 36, 24), 96),
    169: (32, (6, 12, 32, 32), 64),
    201: (32, (6, 12, 48, 32), 64),
}

# He-normal (fan-in) for convolutions, as torchvision's kaiming_normal_.
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torchvision's default Linear init.
_DENSE_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

# The smallest input whose feature map survives the total stride of 32.
MIN_INPUT_SIZE = 32


def _conv(in_features, out_features, kernel_size, strides=1, *, dtype, rngs):
    return conv(
        in_features,
        out_features,
        kernel_size,
        strides=strides,
        kernel_init=_CONV_INIT,
        dtype=dtype,
        rngs=rngs,
    )


class DenseLayer(nnx.Module):
    """One bottleneck layer: BN-ReLU-1x1 conv-BN-ReLU-3x3 conv, concatenated to its input.

    Args:
      in_features: channels of the input (all earlier feature maps of the block).
      growth_rate: channels this layer adds.
      bn_size: the 1x1 bottleneck has `bn_size * growth_rate` channels.
    """

    def __init__(
        self,
        in_features: int,
        growth_rate: int,
        bn_size: int,
        *,
        dtype,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        width = bn_size * growth_rate
        bn = dict(dtype=dtype, momentum=bn_momentum, epsilon=bn_epsilon, rngs=rngs)
        self.norm1 = batch_norm(in_features, **bn)
        self.conv1 = _conv(in_features, width, 1, dtype=dtype, rngs=rngs)
        self.norm2 = batch_norm(width, **bn)
        self.conv2 = _conv(width, growth_rate, 3, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = self.conv1(nnx.relu(self.norm1(x, use_running_average=not train)))
        y = self.conv2(nnx.relu(self.norm2(y, use_running_average=not train)))
        return jnp.concatenate([x, y], axis=-1)


class Transition(nnx.Module):
    """BN-ReLU-1x1 conv to `out_features`, then a 2x2 stride-2 average pool."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        dtype,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        self.norm = batch_norm(
            in_features, dtype=dtype, momentum=bn_momentum, epsilon=bn_epsilon, rngs=rngs
        )
        self.conv = _conv(in_features, out_features, 1, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = self.conv(nnx.relu(self.norm(x, use_running_average=not train)))
        # VALID like torchvision's AvgPool2d(2, 2): odd sizes drop the last row/column.
        return nnx.avg_pool(y, (2, 2), strides=(2, 2), padding="VALID")


class DenseNet(nnx.Module):
    """DenseNet-121/161/169/201 classifier on NHWC images.

    Args:
      num_classes: size of the output layer; 0 builds a headless backbone whose
        call returns the pooled float32 features [N, num_features] (e.g. for the IQA
        score head).
      rngs: initialisation keys (the 'params' stream, or 'default').
      dtype: compute dtype; parameters and BN statistics stay float32.
      in_channels: channels of the input images.
      depth: 121, 161, 169 or 201.
      bn_size: bottleneck width factor of the dense layers (4 in the paper).
      compression: fraction of channels kept by each transition (0.5 in the paper).
      bn_momentum: BN running-average momentum (torchvision's 0.1 update, i.e. 0.9).
      bn_epsilon: BN epsilon (torchvision's 1e-5).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        in_channels: int = 3,
        depth: int = 121,
        bn_size: int = 4,
        compression: float = 0.5,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
    ):
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: headless), got {num_classes}.")
        if depth not in _CONFIGS:
            raise ValueError(
                f"DenseNet depth {depth} is not supported; use one of {sorted(_CONFIGS)}."
            )
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"DenseNet compression must be in (0, 1], got {compression}.")
        growth_rate, block_sizes, stem_width = _CONFIGS[depth]
        self.in_channels = in_channels
        self.dtype = dtype
        bn = dict(dtype=dtype, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)

        self.stem_conv = _conv(in_channels, stem_width, 7, strides=2, dtype=dtype, rngs=rngs)
        self.stem_norm = batch_norm(
            stem_width, dtype=dtype, momentum=bn_momentum, epsilon=bn_epsilon, rngs=rngs
        )
        features = stem_width
        blocks = []
        transitions = []
        for i, num_layers in enumerate(block_sizes):
            layers = []
            for _ in range(num_layers):
                layers.append(DenseLayer(features, growth_rate, bn_size, **bn))
                features += growth_rate
            blocks.append(nnx.List(layers))
            if i < len(block_sizes) - 1:
                out_features = int(features * compression)
                transitions.append(Transition(features, out_features, **bn))
                features = out_features
        self.blocks = nnx.List(blocks)
        self.transitions = nnx.List(transitions)
        self.final_norm = batch_norm(
            features, dtype=dtype, momentum=bn_momentum, epsilon=bn_epsilon, rngs=rngs
        )
        # The head runs in float32: it is tiny and keeps the logits precise under bf16.
        self.classifier = classifier(
            features, num_classes, kernel_init=_DENSE_INIT, dtype=jnp.float32, rngs=rngs
        )
        self.num_features = features

    def features(self, x: jax.Array, train: bool) -> jax.Array:
        """Final BN-ReLU activations [N, ~H/32, ~W/32, num_features] in the compute dtype."""
        check_input(x, self.in_channels, "DenseNet")
        if min(x.shape[1:3]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"DenseNet needs images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, "
                f"got {x.shape[1]}x{x.shape[2]}; resize them to a larger size first."
            )
        x = x.astype(self.dtype)
        x = nnx.relu(self.stem_norm(self.stem_conv(x), use_running_average=not train))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, block in enumerate(self.blocks):
            for layer in block:
                x = layer(x, train)
            if i < len(self.transitions):
                x = self.transitions[i](x, train)
        return nnx.relu(self.final_norm(x, use_running_average=not train))

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Maps float images [N, H, W, in_channels] (H, W >= 32) to float32 logits.

        Headless (num_classes=0): returns the pooled features [N, num_features].
        """
        x = jnp.mean(self.features(x, train).astype(jnp.float32), axis=(1, 2))
        return x if self.classifier is None else self.classifier(x)
