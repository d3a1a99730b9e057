"""Depthwise convolutions, forward and both gradients: XLA's against conv_forms' taps.

    python bench/depthwise.py [--batch=8 --reps=5]

The depthwise layer shapes of MobileNet-v2 and EfficientNet-B0 at 224 px (a selection:
3x3 and 5x5, stride 1 and 2, early and late), each timed as a jitted value and gradient
(input and kernel) of sum(conv(x)^2), median of --reps alternating calls, with the
compiled programs' temp memory and the largest relative difference of the results.
"""

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from learned_resize.models.cpu import conv_forms
from learned_resize.runtime import cli

# (size, channels, stride, kernel)
SHAPES = [
    (112, 32, 1, 3),
    (112, 96, 2, 3),
    (56, 144, 1, 3),
    (56, 144, 2, 5),
    (28, 192, 1, 3),
    (14, 480, 1, 5),
    (14, 576, 1, 3),
    (7, 960, 1, 3),
]
FORMS = {"xla": conv_forms._depthwise_xla, "taps": conv_forms.depthwise_by_taps}

_BATCH = flags.DEFINE_integer("batch", 8, "Batch size of every layer's input.", lower_bound=1)
_REPS = flags.DEFINE_integer("reps", 5, "Timed calls of each form (median).", lower_bound=1)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    print(f"jax {jax.__version__} ({jax.default_backend()}), batch {_BATCH.value}")
    head = f"{'layer':<24}{'xla ms':>9}{'taps ms':>9}{'ratio':>7}"
    print(f"{head}{'temp MB xla / taps':>20}{'rel diff':>10}")
    total = dict.fromkeys(FORMS, 0.0)
    for size, channels, stride, k in SHAPES:
        rng = np.random.default_rng(size * channels)
        x = jnp.asarray(rng.standard_normal((_BATCH.value, size, size, channels)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((k, k, 1, channels)), jnp.float32)
        pads = tuple(jax.lax.padtype_to_pads((size, size), (k, k), (stride, stride), "SAME"))
        fns, temp, results = {}, {}, {}
        for name, form in FORMS.items():

            def loss(x, w, f=form, s=(stride, stride), p=pads):
                return jnp.sum(jnp.square(f(x, w, s, p)))

            fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
            temp[name] = fn.lower(x, kernel).compile().memory_analysis().temp_size_in_bytes
            results[name] = jax.block_until_ready(fn(x, kernel))
            fns[name] = fn
        diff = max(
            float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
            for a, b in zip(jax.tree.leaves(results["xla"]), jax.tree.leaves(results["taps"]))
        )
        times = {name: [] for name in fns}
        for _ in range(_REPS.value):
            for name, fn in fns.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(x, kernel))
                times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(t) for name, t in times.items()}
        for name in med:
            total[name] += med[name]
        label = f"{size}x{size}x{channels} s{stride} {k}x{k}"
        print(
            f"{label:<24}{med['xla'] * 1e3:>9.1f}{med['taps'] * 1e3:>9.1f}"
            f"{med['taps'] / med['xla']:>7.2f}"
            f"{temp['xla'] / 1e6:>12.0f} / {temp['taps'] / 1e6:<6.0f}"
            f"{diff:>10.1e}"
        )
    print(
        f"all: xla {total['xla']:.3f} s, taps {total['taps']:.3f} s "
        f"(x{total['taps'] / total['xla']:.3f})"
    )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
