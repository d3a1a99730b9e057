"""VGG's 2x2 max pool, forward and backward, as `reduce_window` against `vgg.max_pool_2x2`.

    python bench/max_pool.py [--height=384 --width=512]

The three pools of VGG-19 up to conv4_1 for a --height x --width input (post-ReLU
inputs), each timed as a jitted value-and-gradient of sum(pool(x)^2), median of 7
alternating calls; also checks both give the same values and gradients.
"""

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from learned_resize.retarget import vgg
from learned_resize.runtime import cli

_HEIGHT = flags.DEFINE_integer("height", 384, "Input height (pool1's).", lower_bound=8)
_WIDTH = flags.DEFINE_integer("width", 512, "Input width (pool1's).", lower_bound=8)
_REPS = flags.DEFINE_integer("reps", 7, "Timed calls of each pool (median).", lower_bound=1)


def reduce_window_pool(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def timed(fn, x, reps):
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - start)
    return times


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    print(f"jax {jax.__version__} ({jax.default_backend()})")
    total = {"reduce_window": 0.0, "max_pool_2x2": 0.0}
    for level, channels in ((0, 64), (1, 128), (2, 256)):
        shape = (1, _HEIGHT.value >> level, _WIDTH.value >> level, channels)
        noise = np.random.default_rng(level).standard_normal(shape)
        x = jax.nn.relu(jnp.asarray(noise, jnp.float32))
        pools = {"reduce_window": reduce_window_pool, "max_pool_2x2": vgg.max_pool_2x2}
        fns = {
            name: jax.jit(jax.value_and_grad(lambda x, p=pool: jnp.sum(jnp.square(p(x)))))
            for name, pool in pools.items()
        }
        (v1, g1), (v2, g2) = (fn(x) for fn in fns.values())
        same = float(v1) == float(v2) and bool(jnp.array_equal(g1, g2))
        times = {name: [] for name in fns}
        for _ in range(_REPS.value):  # alternate so both see the same machine load
            for name, fn in fns.items():
                times[name] += timed(fn, x, 1)
        med = {name: statistics.median(t) for name, t in times.items()}
        for name in med:
            total[name] += med[name]
        print(
            f"pool{level + 1} input {shape}: reduce_window {med['reduce_window'] * 1e3:.1f} ms, "
            f"max_pool_2x2 {med['max_pool_2x2'] * 1e3:.1f} ms; same values and gradient: {same}"
        )
    print(
        f"all three: reduce_window {total['reduce_window']:.3f} s, max_pool_2x2 "
        f"{total['max_pool_2x2']:.3f} s (x{total['max_pool_2x2'] / total['reduce_window']:.2f})"
    )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
