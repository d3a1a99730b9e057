"""Inception-v2 (BN-Inception) as defined by TF-slim's `nets/inception_v2.py`.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift" (2015), in the variant slim ships as
`inception_v2`: a depthwise-separable 7x7 stride-2 stem (depth multiplier 8,
3 -> 24 -> 64 channels), max pool, 1x1 (64) and 3x3 (192) convolutions, max pool,
then the inception blocks Mixed_3b .. Mixed_5c (Mixed_4a and Mixed_5a reduce the
resolution), global average pooling, dropout (slim keeps 0.8) and a 1x1
convolution to the classes, written here as a dense layer on the pooled vector.

Faithful to slim's `inception_v2` with `inception_arg_scope()`:
  * every `slim.conv2d` is conv (no bias) -> BatchNorm without gamma
    (`batch_norm_scale=False`, so only beta is trained) -> ReLU, with BN decay
    0.9997 and epsilon 1e-3;
  * the stem `slim.separable_conv2d` is *not* covered by that arg scope (it only
    lists `slim.conv2d`), so it keeps slim's separable-conv defaults: a bias and a
    ReLU and no BatchNorm;
  * all convolutions and pools use SAME padding; the 3x3 average pools of the
    blocks divide by the number of real (unpadded) pixels, as TF's SAME pooling does;
  * Mixed_5c's pool branch is a max pool, the other blocks' an average pool.
He (fan-in, truncated normal) initialisation, slim's default, is used for every
convolution; slim's per-layer truncated-normal overrides are not reproduced.

Parameter count (reference): 11,178,336 with 1000 classes (11,179,361 with slim's
1001 classes). No published figure gives this number exactly, so it was derived by
hand from the layer shapes in slim's `inception_v2_base` and `inception_v2`:
k*k*c_in*c_out weights + c_out BN betas for every `slim.conv2d`; 7*7*3*8 depthwise +
24*64 pointwise weights + 64 biases for the stem; 1024*classes + classes for the
logits convolution. The base network contributes 10,153,336 of them.
`tests/test_models_b.py` recomputes the sum from its own per-layer table and
checks it against the module.

For inputs with other than 3 channels the stem's depthwise multiplier is
min(8, 64 // in_channels), keeping slim's rule in_channels * multiplier <= 64.

Dropout uses the 'dropout' stream of the `rngs` given to the constructor (or
'default' when there is none); its key lives in the module state.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models.cpu.conv_forms import Conv
from learned_resize.models.layers import batch_norm, check_input, classifier, conv

# Trainable parameters of slim's inception_v2 with a 1000-way head (see above).
REFERENCE_PARAMS_1000_CLASSES = 11_178_336

# He initialisation as slim's variance_scaling_initializer() (factor 2, fan in,
# truncated normal).
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
# nnx.Linear's default (LeCun normal) for the logits layer.
_DENSE_INIT = nnx.initializers.lecun_normal()


class ConvBN(nnx.Module):
    """slim.conv2d under inception_arg_scope: conv (no bias) -> BN (beta only) -> ReLU."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        strides: int = 1,
        *,
        dtype,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        self.conv = conv(
            in_features,
            out_features,
            kernel_size,
            strides=strides,
            kernel_init=_CONV_INIT,
            dtype=dtype,
            rngs=rngs,
        )
        self.norm = batch_norm(
            out_features,
            use_scale=False,
            momentum=bn_momentum,
            epsilon=bn_epsilon,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return nnx.relu(self.norm(self.conv(x), use_running_average=not train))


def avg_pool_same(x: jax.Array) -> jax.Array:
    """3x3 stride-1 SAME average pool that, like TF, ignores padded pixels."""
    return nnx.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)


def max_pool_same(x: jax.Array, stride: int) -> jax.Array:
    return nnx.max_pool(x, (3, 3), strides=(stride, stride), padding="SAME")


class InceptionBlock(nnx.Module):
    """A resolution-keeping block: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool-1x1, concatenated.

    Args:
      in_features: input channels.
      b0: width of the 1x1 branch.
      b1: (reduce, out) widths of the 3x3 branch.
      b2: (reduce, mid, out) widths of the double-3x3 branch.
      b3: width of the 1x1 after the pool.
      pool: 'avg' or 'max', the pool of the last branch.
    """

    def __init__(self, in_features, b0, b1, b2, b3, pool, **kw):
        self.pool = pool
        self.branch0 = ConvBN(in_features, b0, 1, **kw)
        self.branch1 = nnx.List([ConvBN(in_features, b1[0], 1, **kw), ConvBN(*b1, 3, **kw)])
        self.branch2 = nnx.List(
            [
                ConvBN(in_features, b2[0], 1, **kw),
                ConvBN(b2[0], b2[1], 3, **kw),
                ConvBN(b2[1], b2[2], 3, **kw),
            ]
        )
        self.branch3 = ConvBN(in_features, b3, 1, **kw)
        self.out_features = b0 + b1[-1] + b2[-1] + b3

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y0 = self.branch0(x, train)
        y1 = x
        for layer in self.branch1:
            y1 = layer(y1, train)
        y2 = x
        for layer in self.branch2:
            y2 = layer(y2, train)
        pooled = avg_pool_same(x) if self.pool == "avg" else max_pool_same(x, 1)
        y3 = self.branch3(pooled, train)
        return jnp.concatenate([y0, y1, y2, y3], axis=-1)


class ReductionBlock(nnx.Module):
    """A stride-2 block: 1x1-3x3/2 | 1x1-3x3-3x3/2 | max pool/2, concatenated.

    Args:
      in_features: input channels.
      b0: (reduce, out) widths of the 3x3 branch.
      b1: (reduce, mid, out) widths of the double-3x3 branch.
    """

    def __init__(self, in_features, b0, b1, **kw):
        self.branch0 = nnx.List(
            [ConvBN(in_features, b0[0], 1, **kw), ConvBN(*b0, 3, strides=2, **kw)]
        )
        self.branch1 = nnx.List(
            [
                ConvBN(in_features, b1[0], 1, **kw),
                ConvBN(b1[0], b1[1], 3, **kw),
                ConvBN(b1[1], b1[2], 3, strides=2, **kw),
            ]
        )
        self.out_features = b0[-1] + b1[-1] + in_features

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y0 = x
        for layer in self.branch0:
            y0 = layer(y0, train)
        y1 = x
        for layer in self.branch1:
            y1 = layer(y1, train)
        return jnp.concatenate([y0, y1, max_pool_same(x, 2)], axis=-1)


# Block widths from slim's inception_v2_base (depth_multiplier 1).
_BLOCKS = (
    ("Mixed_3b", "inception", (64, (64, 64), (64, 96, 96), 32, "avg")),
    ("Mixed_3c", "inception", (64, (64, 96), (64, 96, 96), 64, "avg")),
    ("Mixed_4a", "reduction", ((128, 160), (64, 96, 96))),
    ("Mixed_4b", "inception", (224, (64, 96), (96, 128, 128), 128, "avg")),
    ("Mixed_4c", "inception", (192, (96, 128), (96, 128, 128), 128, "avg")),
    ("Mixed_4d", "inception", (160, (128, 160), (128, 160, 160), 96, "avg")),
    ("Mixed_4e", "inception", (96, (128, 192), (160, 192, 192), 96, "avg")),
    ("Mixed_5a", "reduction", ((128, 192), (192, 256, 256))),
    ("Mixed_5b", "inception", (352, (192, 320), (160, 224, 224), 128, "avg")),
    ("Mixed_5c", "inception", (352, (192, 320), (192, 224, 224), 128, "max")),
)


class InceptionV2(nnx.Module):
    """TF-slim Inception-v2 classifier on NHWC images (any size >= 32x32).

    Args:
      num_classes: size of the output layer; 0 builds a headless backbone whose
        call returns the pooled float32 features [N, num_features] (e.g. for the IQA
        score head).
      rngs: keys for initialisation ('params' or 'default') and for dropout
        ('dropout' or 'default').
      dtype: compute dtype; parameters and BN statistics stay float32.
      in_channels: channels of the input images.
      dropout_rate: dropout before the logits (slim's keep_prob 0.8).
      bn_momentum: BN running-average momentum (slim's batch_norm_decay 0.9997;
        short runs may prefer 0.9 so the running statistics catch up).
      bn_epsilon: BN epsilon (slim's 1e-3).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        in_channels: int = 3,
        dropout_rate: float = 0.2,
        bn_momentum: float = 0.9997,
        bn_epsilon: float = 1e-3,
    ):
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: headless), got {num_classes}.")
        try:
            if num_classes:
                rngs["dropout"]  # Falls back to 'default'; KeyError when neither exists.
        except KeyError:
            raise ValueError(
                "InceptionV2 needs a 'dropout' or 'default' stream in rngs; "
                "pass e.g. nnx.Rngs(0) or nnx.Rngs(params=0, dropout=1)."
            ) from None
        self.in_channels = in_channels
        self.dtype = dtype
        kw = dict(dtype=dtype, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        # slim: depthwise_multiplier = min(int(64 / 3), 8) = 8 for RGB. Capping it at
        # 64 // in_channels keeps the separable conv from being over-parameterised
        # (in_channels * multiplier <= 64), which is what slim's formula intends.
        multiplier = max(1, min(8, 64 // in_channels))
        self.stem_depthwise = conv(
            in_channels,
            in_channels * multiplier,
            7,
            strides=2,
            groups=in_channels,
            kernel_init=_CONV_INIT,
            dtype=dtype,
            rngs=rngs,
        )
        self.stem_pointwise = Conv(
            in_channels * multiplier,
            64,
            (1, 1),
            use_bias=True,
            kernel_init=_CONV_INIT,
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.conv2b = ConvBN(64, 64, 1, **kw)
        self.conv2c = ConvBN(64, 192, 3, **kw)
        features = 192
        blocks = []
        for _, kind, spec in _BLOCKS:
            block = (
                InceptionBlock(features, *spec, **kw)
                if kind == "inception"
                else ReductionBlock(features, *spec, **kw)
            )
            blocks.append(block)
            features = block.out_features
        self.blocks = nnx.List(blocks)
        self.num_features = features
        if not num_classes:  # Headless backbones leave dropout to the head that follows.
            self.dropout, self.classifier = None, None
        else:
            self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
            # The logits layer runs in float32: it is tiny and keeps the logits precise.
            self.classifier = classifier(
                features, num_classes, kernel_init=_DENSE_INIT, dtype=jnp.float32, rngs=rngs
            )

    def stem(self, x: jax.Array) -> jax.Array:
        """Conv2d_1a_7x7: separable 7x7 stride-2 conv with bias and ReLU (no BN, as slim)."""
        return nnx.relu(self.stem_pointwise(self.stem_depthwise(x)))

    def features(self, x: jax.Array, train: bool) -> jax.Array:
        """Mixed_5c activations [N, ceil(H/32), ceil(W/32), 1024] in the compute dtype."""
        check_input(x, self.in_channels, "InceptionV2")
        x = max_pool_same(self.stem(x.astype(self.dtype)), 2)
        x = self.conv2c(self.conv2b(x, train), train)
        x = max_pool_same(x, 2)
        for block in self.blocks:
            x = block(x, train)
        return x

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Maps float images [N, H, W, in_channels] to float32 logits [N, num_classes].

        Headless (num_classes=0): returns the pooled features [N, num_features].
        """
        x = jnp.mean(self.features(x, train).astype(jnp.float32), axis=(1, 2))
        if self.classifier is None:
            return x
        return self.classifier(self.dropout(x, deterministic=not train))
