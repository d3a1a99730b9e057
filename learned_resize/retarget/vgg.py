"""VGG-16 and VGG-19 convolutional stacks that return named intermediate features.

The networks follow Simonyan & Zisserman (2015) as released in Caffe and ported
to Keras: 3x3 convolutions with one pixel of zero padding, each followed by a
ReLU, and 2x2 max pooling with stride 2 after every block. The fully connected
head is omitted; retargeting only needs the feature maps.

The released ImageNet weights expect Caffe preprocessing (BGR channel order,
values in [0, 255], per-channel mean subtracted, no scaling by a standard
deviation). `VGG.__call__` takes RGB images in [0, 1] and does that conversion
itself, so callers never handle the weights' input convention.

Pooling uses floor division ("VALID", as Keras and torchvision do; Caffe itself
rounded up): an odd-sized map loses its last row or column. Sizes divisible by
the deepest stride used (`LAYER_STRIDE`) avoid that.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

# Per-channel mean in BGR order that the Caffe VGG models subtract from inputs in [0, 255].
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# Convolutions per block.
_BLOCK_DEPTHS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_BLOCK_WIDTHS = (64, 128, 256, 512, 512)


def _check_depth(depth: int) -> None:
    if depth not in _BLOCK_DEPTHS:
        raise ValueError(f"VGG depth must be 16 or 19, got {depth!r}.")


def layer_names(depth: int) -> tuple[str, ...]:
    """All feature names of VGG-`depth` in forward order (conv1_1, ..., pool5)."""
    _check_depth(depth)
    names = []
    for block, num_convs in enumerate(_BLOCK_DEPTHS[depth], start=1):
        names += [f"conv{block}_{i}" for i in range(1, num_convs + 1)]
        names.append(f"pool{block}")
    return tuple(names)


def conv_names(depth: int) -> tuple[str, ...]:
    """Names of the convolution layers of VGG-`depth` in forward order."""
    return tuple(n for n in layer_names(depth) if n.startswith("conv"))


def conv_shapes(depth: int) -> dict[str, tuple[int, int]]:
    """Maps each convolution name to its (input channels, output channels)."""
    shapes = {}
    in_channels = 3
    for name in conv_names(depth):
        out_channels = _BLOCK_WIDTHS[int(name[4]) - 1]
        shapes[name] = (in_channels, out_channels)
        in_channels = out_channels
    return shapes


# Spatial stride of every feature map relative to the input (the same for both depths):
# a map computed from an HxW image is (H // stride) x (W // stride).
LAYER_STRIDE = {
    name: 2 ** (int(name[4]) - 1) * (2 if name.startswith("pool") else 1)
    for name in layer_names(19)
}


def caffe_preprocess(image_rgb01: jax.Array) -> jax.Array:
    """RGB in [0, 1] -> BGR in [0, 255] minus the Caffe ImageNet mean (what the weights expect)."""
    bgr = image_rgb01[..., ::-1].astype(jnp.float32) * 255.0
    return bgr - jnp.asarray(CAFFE_MEAN_BGR, jnp.float32)


def _windows(x: jax.Array) -> jax.Array:
    """[N, H, W, C] -> [N, H/2, W/2, C, 4]: each 2x2 window's values in row-major order."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 (VALID: an odd last row or column is dropped), [N, H, W, C].

    The gradient goes to the first maximum of each window in row-major order, as
    `reduce_window`'s select-and-scatter (and PyTorch) send it; written by hand with
    elementwise masks, because select-and-scatter is slow on XLA:CPU (the three pools
    of VGG-19 to conv4_1 at 384x512, forward and backward: 0.32 s as `reduce_window`,
    0.10 s this way: `bench/max_pool.py`). Autodiff of a max would split it among
    equal maxima, which flat image regions have in plenty (the retargeting loss's
    gradient at a plan-warped start moved by 5% relative L2 that way).
    """
    n, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_fwd(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _max_pool_bwd(residuals, g):
    x, y = residuals
    n, h, w, c = x.shape
    hit = _windows(x) == y[..., None]
    first = hit & (jnp.cumsum(hit, axis=-1) == 1)
    dx = jnp.where(first, g[..., None], 0).astype(x.dtype)
    dx = dx.reshape(n, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    dx = dx.reshape(n, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(dx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


class VGG(nnx.Module):
    """VGG-16/19 convolutional stack returning the feature maps a caller asks for.

    Convolutions are attributes named like the features (`conv1_1`, ...), so the
    parameter tree reads `conv3_2.kernel` (HWIO) and `conv3_2.bias`.
    """

    def __init__(self, depth: int = 19, *, rngs: nnx.Rngs, dtype=jnp.float32):
        """Builds the layers with random (He-normal) weights; see `weights.load_vgg` for ImageNet.

        Args:
          depth: 16 or 19.
          rngs: parameter initialisation keys.
          dtype: compute dtype; parameters stay float32.
        """
        _check_depth(depth)
        self.depth = depth
        self.dtype = dtype
        self.layer_names = layer_names(depth)
        for name, (cin, cout) in conv_shapes(depth).items():
            conv = nnx.Conv(
                cin,
                cout,
                kernel_size=(3, 3),
                padding=((1, 1), (1, 1)),
                kernel_init=nnx.initializers.he_normal(),
                dtype=dtype,
                param_dtype=jnp.float32,
                rngs=rngs,
            )
            setattr(self, name, conv)

    def __call__(self, image_rgb01: jax.Array, layers: Sequence[str]) -> dict[str, jax.Array]:
        """Runs the network up to the deepest requested layer.

        Args:
          image_rgb01: float [N, H, W, 3], RGB in [0, 1].
          layers: feature names, e.g. ("conv4_2", "pool5"); see `layer_names(depth)`.

        Returns:
          {name: [N, H // LAYER_STRIDE[name], W // LAYER_STRIDE[name], C]} for each
          requested name; conv features are post-ReLU activations.
        """
        if isinstance(layers, str):
            layers = (layers,)
        wanted = set(layers)
        unknown = wanted - set(self.layer_names)
        if unknown:
            raise ValueError(
                f"Unknown VGG-{self.depth} layer(s) {sorted(unknown)}; "
                f"choose from {', '.join(self.layer_names)}."
            )
        if not wanted:
            return {}
        if image_rgb01.ndim != 4 or image_rgb01.shape[-1] != 3:
            raise ValueError(
                f"VGG expects RGB images shaped [N, H, W, 3], got shape {image_rgb01.shape}."
            )
        deepest = max(self.layer_names.index(name) for name in wanted)
        x = caffe_preprocess(image_rgb01).astype(self.dtype)
        features = {}
        for name in self.layer_names[: deepest + 1]:
            if name.startswith("conv"):
                x = jax.nn.relu(getattr(self, name)(x))
            else:
                x = max_pool_2x2(x)
            if name in wanted:
                features[name] = x
        return features


def layer_shapes(
    net: VGG, size: tuple[int, int], layers: Sequence[str]
) -> dict[str, tuple[int, ...]]:
    """NHWC shapes of net's layers for a 1 x h x w x 3 input, without computing them."""
    graph, state = nnx.split(net)

    def features(state):
        return nnx.merge(graph, state)(jnp.zeros((1, *size, 3), jnp.float32), layers)

    return {k: v.shape for k, v in jax.eval_shape(features, state).items()}


@functools.partial(jax.jit, static_argnames=("graph", "layers"))
def _features(graph, state, images, layers):
    return nnx.merge(graph, state)(images, layers)


def features(net: nnx.Module, images: jax.Array, layers) -> dict[str, jax.Array]:
    """Jitted net(images, layers) (compiled once per network, shape and layer set)."""
    graph, state = nnx.split(net)
    return _features(graph, state, images, tuple(layers))
