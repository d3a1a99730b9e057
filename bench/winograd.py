"""Winograd F(2x2, 3x3) against XLA's convolution, VGG-19's layers at the retargeting
loss's sizes (`learned_resize/models/cpu/winograd.py`).

    python bench/winograd.py                  # output 384x512 (the CLI at 512 px)
    python bench/winograd.py --height=192 --width=256

For each 3x3 layer shape VGG-19 has up to conv4_1, and VGG-16 up to conv4_2 at half of
that size (the perceptual term), times one jitted SAME convolution both ways (median of
--reps, alternating) and prints the ratio and the largest difference relative to the
layer's largest output. `winograd.use_for` picks the layers whose channels are at least
MIN_CHANNELS on both sides; this table is where that threshold comes from.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from learned_resize.models.cpu import winograd
from learned_resize.runtime import cli

# (name, input channels, output channels, stride of the layer's grid) of VGG-19 to conv4_1.
LAYERS = (
    ("conv1_2", 64, 64, 1),
    ("conv2_1", 64, 128, 2),
    ("conv2_2", 128, 128, 2),
    ("conv3_1", 128, 256, 4),
    ("conv3_2", 256, 256, 4),
    ("conv4_1", 256, 512, 8),
    ("conv4_1 grad", 512, 256, 8),
    ("vgg16 conv4_2", 512, 512, 16),
)

_HEIGHT = flags.DEFINE_integer("height", 384, "Output height (conv1_2's layer).", lower_bound=1)
_WIDTH = flags.DEFINE_integer("width", 512, "Output width (conv1_2's layer).", lower_bound=1)
_REPS = flags.DEFINE_integer("reps", 5, "Timed calls of each form (median).", lower_bound=1)


def _direct(x, kernel):
    dims = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims)


def _median_seconds(fns, args, reps):
    """Median wall time of each fn(*its args), the fns alternating within each rep."""
    for fn, a in zip(fns, args):
        jax.block_until_ready(fn(*a))  # compile
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, a, t in zip(fns, args, times):
            start = time.perf_counter()
            jax.block_until_ready(fn(*a))
            t.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    rng = np.random.default_rng(0)
    direct, wino = jax.jit(_direct), jax.jit(winograd.conv3x3)
    print(f"output {_WIDTH.value}x{_HEIGHT.value}; median of {_REPS.value}; jax {jax.__version__}")
    print(
        f"{'layer':<15}{'size':>10}{'C->K':>10}{'XLA ms':>9}{'Winograd ms':>13}"
        f"{'ratio':>7}{'max diff':>10}"
    )
    total = [0.0, 0.0]
    for name, c, k, stride in LAYERS:
        h, w = -(-_HEIGHT.value // stride), -(-_WIDTH.value // stride)
        x = jnp.asarray(rng.standard_normal((1, h, w, c)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((3, 3, c, k)) / np.sqrt(9 * c), jnp.float32)
        u = jax.jit(winograd.transform_kernel)(kernel)
        a, b = direct(x, kernel), wino(x, u)
        diff = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
        t_direct, t_wino = _median_seconds((direct, wino), ((x, kernel), (x, u)), _REPS.value)
        used = "*" if winograd.use_for(kernel.shape) else " "
        total[0] += t_direct
        total[1] += t_wino if used == "*" else t_direct
        print(
            f"{name:<14}{used}{f'{w}x{h}':>10}{f'{c}->{k}':>10}{1e3 * t_direct:>9.1f}"
            f"{1e3 * t_wino:>13.1f}{t_wino / t_direct:>7.2f}{diff:>10.1e}",
            flush=True,
        )
    print(
        f"* = Winograd used (winograd.use_for); these layers once each, XLA only "
        f"{1e3 * total[0]:.0f} ms, as used {1e3 * total[1]:.0f} ms"
    )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
