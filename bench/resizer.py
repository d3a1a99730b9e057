r"""LearnedResizer: the straightforward formulation vs the one in resizers.py, in one run.

    python bench/resizer.py                      # both cases below, ~1 min here
    python bench/resizer.py --cases=default --repeats=21
    LEARNED_RESIZE_MALLOC=system python bench/resizer.py   # under glibc's malloc

Times a jitted forward + backward (gradients of every parameter, BN statistics
updated, as in a training step) of the same module with the same parameters,
computed three ways: the straightforward module ("naive"), resizers.py with XLA's
own convolution for out_conv on CPU too ("XLA out_conv"), and resizers.py as it is
("new"). The calls are interleaved (A, B, C, A, B, C, ...) so that load on a shared
machine hits all alike; it prints the median of each, naive / new, XLA's FLOP count
of each compiled step, and the largest difference between the others' outputs,
gradients and statistics and the naive module's (they compute the same function).

Cases: `default` is configs/default.py's learned stage (batch 128, 28x28x1 -> 8x8);
`resnet50` is the ImageNet recipe's (batch 8, 448x448x3 -> 224x224). Both use the
configs' resizer settings (n=16, r=1, bilinear without antialiasing).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from learned_resize.models import resampling, resizers
from learned_resize.models.cpu import narrow_conv
from learned_resize.runtime import allocator

CASES = {
    # name: (batch, input size, channels, output size)
    "default": (128, 28, 1, 8),
    "resnet50": (8, 448, 3, 224),
}

_CASES = flags.DEFINE_list("cases", list(CASES), f"Cases to run, from {sorted(CASES)}.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed steps of each formulation (median).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps of each after compiling.")
_NUM_FILTERS = flags.DEFINE_integer("num_filters", 16, "n.")
_NUM_RES_BLOCKS = flags.DEFINE_integer("num_res_blocks", 1, "r.")
_ANTIALIAS = flags.DEFINE_bool("antialias", False, "Antialiased resizes (configs: False).")


def naive_forward(model: resizers.LearnedResizer, x: jax.Array, train: bool) -> jax.Array:
    """The resizer as first written: every layer as its nnx module, BN before the resize."""
    fixed = lambda t: jax.image.resize(
        t,
        (*t.shape[:-3], *model.output_size, t.shape[-1]),
        resampling.JAX_METHODS[model.interpolation],
        antialias=model.antialias,
    )
    lrelu = lambda t: jax.nn.leaky_relu(t, 0.2)
    skip = fixed(x)
    y = lrelu(model.head_conv7(x.astype(model.dtype)))
    y = lrelu(model.head_conv1(y))
    y = fixed(model.head_bn(y, use_running_average=not train))
    z = y
    for block in model.blocks:
        z = block(z, train)
    z = model.tail(z, train) + y
    return model.out_conv(z).astype(x.dtype) + skip


def interleaved_medians(functions, args, repeats, warmup):
    """Median wall time (s) of each compiled function, calls interleaved round-robin."""
    for f in functions:
        for _ in range(warmup):
            jax.block_until_ready(f(*args))
    times = [[] for _ in functions]
    for _ in range(repeats):
        for f, t in zip(functions, times):
            start = time.perf_counter()
            jax.block_until_ready(f(*args))
            t.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def train_step_of(forward, graphdef):
    """(params, stats, rest, x, w) -> (output, parameter gradients, new BN statistics)."""

    def step(params, stats, rest, x, w):
        def loss(params):
            model = nnx.merge(graphdef, params, stats, rest, copy=True)
            out = forward(model, x, True)
            return jnp.sum(out * w), (out, nnx.state(model, nnx.BatchStat))

        (_, (out, new_stats)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return out, grads, new_stats

    return jax.jit(step)


def xla_out_conv():
    """resizers.py as it is, but with XLA's convolution for out_conv on CPU too."""
    return narrow_conv.use_formulation("xla")


def run_case(name):
    batch, size, channels, out = CASES[name]
    model = resizers.LearnedResizer(
        (out, out),
        num_filters=_NUM_FILTERS.value,
        num_res_blocks=_NUM_RES_BLOCKS.value,
        antialias=_ANTIALIAS.value,
        in_channels=channels,
        rngs=nnx.Rngs(0),
    )
    graphdef, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, size, size, channels)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(batch, out, out, channels)), jnp.float32)
    args = (params, stats, rest, x, w)
    new = lambda m, x, train: m(x, train=train)
    compiled = [train_step_of(naive_forward, graphdef).lower(*args).compile()]
    with xla_out_conv():  # the patch is read while tracing
        compiled.append(train_step_of(new, graphdef).lower(*args).compile())
    compiled.append(train_step_of(new, graphdef).lower(*args).compile())
    flops = [c.cost_analysis().get("flops", float("nan")) for c in compiled]
    results = [c(*args) for c in compiled]
    rel = lambda a, b: float(jnp.abs(a - b).max() / jnp.maximum(jnp.abs(a).max(), 1e-30))
    max_rel_diff = max(  # outputs, gradients and BN statistics, against the naive module's
        max(jax.tree.leaves(jax.tree.map(rel, results[0], r))) for r in results[1:]
    )
    times = interleaved_medians(compiled, args, _REPEATS.value, _WARMUP.value)
    return dict(
        case=f"{name}: B={batch} {size}x{size}x{channels} -> {out}x{out}",
        ms=[t * 1e3 for t in times],
        speedup=times[0] / times[2],
        gflop=[f / 1e9 for f in flops],
        max_rel_diff=max_rel_diff,
    )


def main(argv):
    del argv
    unknown = set(_CASES.value) - set(CASES)
    if unknown:
        raise ValueError(f"Unknown --cases {sorted(unknown)}; use some of {sorted(CASES)}.")
    print(
        f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0].device_kind}, "
        f"{allocator.loaded_allocator()} malloc"
    )
    print(
        f"fwd+bwd of LearnedResizer (n={_NUM_FILTERS.value}, r={_NUM_RES_BLOCKS.value}), "
        f"median of {_REPEATS.value} interleaved steps"
    )
    columns = (
        "case", "naive ms", "XLA out_conv ms", "new ms", "speedup",
        "GFLOP (naive / XLA out_conv / new)", "max rel diff",
    )  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for name in _CASES.value:
        r = run_case(name)
        cells = (
            r["case"],
            *(f"{t:.1f}" for t in r["ms"]),
            f"{r['speedup']:.2f}x",
            " / ".join(f"{f:.2f}" for f in r["gflop"]),
            f"{r['max_rel_diff']:.1e}",
        )
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    allocator.reexec_under_tcmalloc()  # as the trainer; LEARNED_RESIZE_MALLOC=system: glibc
    app.run(main)
