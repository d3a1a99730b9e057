"""VGG inside the L-BFGS loop: the same features as `vgg.VGG`, a faster gradient.

XLA:CPU runs the convolutions of autodiff's backward pass 3-4x slower inside a while
loop than in a plain jitted function (measured here: VGG-19 to conv4_1 at 96x128,
1.76 s vs 0.53 s per loss-and-gradient evaluation). The transposed convolution
autodiff emits uses a reversed kernel with swapped feature dimensions; outside a loop
XLA re-lays it out once, inside it falls back to a slow kernel. `_conv` below is the
same 3x3 SAME convolution with a custom VJP whose input gradient uses a flipped and
transposed copy of the kernel prepared once, outside the loop (0.50 s inside the
loop). It drops the kernel gradient, which reconstruction never needs. On CPU, layers
with 256 or more channels in and out run both ways by Winograd's F(2x2, 3x3)
(`winograd.py`), their transformed kernels also prepared once.
"""

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.models import cpu
from learned_resize.models.cpu import winograd
from learned_resize.retarget import vgg as vgg_lib

_DIMS = ("NHWC", "HWIO", "NHWC")


def _apply(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME 3x3 convolution with an HWIO kernel, or a Winograd-transformed one [16, C, K]."""
    if kernel.ndim == 3:
        return winograd.conv3x3(x, kernel)
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DIMS
    )


@jax.custom_vjp
def _conv(x: jax.Array, kernel: jax.Array, kernel_bwd: jax.Array) -> jax.Array:
    return _apply(x, kernel)


def _conv_fwd(x, kernel, kernel_bwd):
    return _conv(x, kernel, kernel_bwd), kernel_bwd


def _conv_bwd(kernel_bwd, g):
    return _apply(g, kernel_bwd), None, None


_conv.defvjp(_conv_fwd, _conv_bwd)


def vgg_loop_params(net: vgg_lib.VGG, fast: bool = True) -> dict[str, dict[str, jax.Array]]:
    """The weights of a `vgg.VGG` for `vgg_loop_features`: per layer the forward and
    backward (flipped, transposed) kernels, Winograd-transformed where `winograd.use_for`
    says so on CPU (unless fast is False), and the bias."""
    params = nnx.to_pure_dict(nnx.state(net))
    on_cpu = fast and cpu.enabled() and jax.default_backend() == "cpu"
    winograd_layers = tuple(
        name for name, p in params.items() if on_cpu and winograd.use_for(p["kernel"].shape)
    )
    return _loop_kernels(params, winograd_layers)


@functools.partial(jax.jit, static_argnums=1)
def _loop_kernels(params, winograd_layers):
    # One compiled call instead of an eager flip and transpose per layer.
    out = {}
    for name, p in params.items():
        fwd, bwd = p["kernel"], jnp.flip(p["kernel"], (0, 1)).transpose(0, 1, 3, 2)
        if name in winograd_layers:
            fwd, bwd = winograd.transform_kernel(fwd), winograd.transform_kernel(bwd)
        out[name] = {"fwd": fwd, "bwd": bwd, "bias": p["bias"]}
    return out


def vgg_loop_features(
    params: Mapping, depth: int, image: jax.Array, layers: Sequence[str]
) -> dict[str, jax.Array]:
    """`vgg.VGG(depth)(image, layers)` computed with the loop-friendly convolution."""
    names = vgg_lib.layer_names(depth)
    x = vgg_lib.caffe_preprocess(image)
    features = {}
    for name in names[: max(names.index(n) for n in layers) + 1]:
        if name.startswith("conv"):
            p = params[name]
            x = jax.nn.relu(_conv(x, p["fwd"], p["bwd"]) + p["bias"])
        else:
            x = vgg_lib.max_pool_2x2(x)
        if name in layers:
            features[name] = x
    return features


def split_network(net: nnx.Module, winograd: bool = True) -> tuple[int | nnx.GraphDef, object]:
    """(static, params) of a feature network for `LossSpec` and the loss's aux.

    A `vgg.VGG` becomes (depth, `vgg_loop_params`) and runs through the loop-friendly
    forward (Winograd layers on CPU unless winograd is False); any other module with the
    same call signature (e.g. a test stand-in) becomes (GraphDef, State) and runs as itself.
    """
    if isinstance(net, vgg_lib.VGG):
        return net.depth, vgg_loop_params(net, winograd)
    return nnx.split(net)


def network_features(static, params, image: jax.Array, layers) -> dict[str, jax.Array]:
    """Features of the network described by (static, params) from `split_network`."""
    if isinstance(static, int):
        return vgg_loop_features(params, static, image, layers)
    return nnx.merge(static, params)(image, layers)
