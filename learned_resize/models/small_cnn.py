"""SmallCNN: the default classifier for small grayscale experiments (Fashion-MNIST).

Three conv3x3 + BN + ReLU layers, a global average pool and a dense head:

    [N, H, W, C]
    -> conv3x3 stride 1 -> BN -> ReLU   [N, H,   W,   16]
    -> conv3x3 stride 2 -> BN -> ReLU   [N, H/2, W/2, 32]
    -> conv3x3 stride 2 -> BN -> ReLU   [N, H/4, W/4, 64]
    -> global average pool              [N, 64]
    -> dense                            [N, num_classes] float32 logits

Sizes round up (SAME padding); channel counts are the default `widths`. The total
stride is 4, so a 4x4 input ends on a 1x1 map (any size from 1x1 up runs). With
one input channel and 10 classes it has 24,058 parameters.

Why this small: an SGD step on 128 8x8 images is about 0.1 GFLOP (forward and
backward): 8-12 ms of CPU time under XLA:CPU (measured on a busy machine), so a
few milliseconds of wall time on two idle cores; at 28x28 it is about 12x that. Widths
(32, 64, 128) cost about 4x more per step; pass `widths=` through the model
config for more capacity. Downsampling uses strided convs rather than a stride-1
conv and a pool: a quarter of the FLOPs, and on XLA:CPU the gradient measured
4-8x cheaper.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models import layers

conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


class SmallCNN(nnx.Module):
    """Three conv-BN-ReLU layers (strides 1, 2, 2), global average pool, dense head."""

    def __init__(
        self,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
    ):
        """Builds the network.

        Args:
          num_classes: size of the output layer.
          rngs: parameter initialisation keys.
          dtype: compute dtype; parameters and BN statistics stay float32.
          in_channels: channels of the input images (1 for Fashion-MNIST).
          widths: channels of the three conv layers.
        """
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"SmallCNN widths must be three positive ints, got {widths}.")
        if num_classes < 0 or in_channels < 1:
            raise ValueError(
                f"num_classes ({num_classes}) must be >= 0 (0: no head) and in_channels "
                f"({in_channels}) positive."
            )
        self.in_channels = in_channels
        self.dtype = dtype
        convs, norms = [], []
        ch = in_channels
        for width, stride in zip(widths, (1, 2, 2)):
            # Bias-free: the BN bias takes its place.
            convs.append(
                layers.conv(
                    ch, width, 3, strides=stride, kernel_init=conv_init, dtype=dtype, rngs=rngs
                )
            )
            norms.append(
                layers.batch_norm(width, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)
            )
            ch = width
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.num_features = ch
        # num_classes=0: a headless backbone returning pooled features (IQA score heads).
        self.head = layers.classifier(
            ch,
            num_classes,
            kernel_init=nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        layers.check_input(x, self.in_channels, "SmallCNN")
        x = x.astype(self.dtype)
        for conv, norm in zip(self.convs, self.norms):
            x = nnx.relu(norm(conv(x), use_running_average=not train))
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        if self.head is None:
            return x
        return self.head(x.astype(self.dtype)).astype(jnp.float32)
