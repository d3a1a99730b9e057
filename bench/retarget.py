"""Speed of deep-feature retargeting with the CLI's default settings.

    python bench/retarget.py                 # 256 and 512 px wide, to 3/4 width
    python bench/retarget.py --widths=256,512,1024

For each width, scikit-image's astronaut scaled to that width is retargeted to 3/4 of
it twice in one process: the first (cold) run includes XLA compilation, the second
(warm) reuses the compiled code. Per size the table gives the L-BFGS iterations and
loss evaluations per scale, cold and warm wall time (and the cold run's process CPU
time: on a machine shared with other jobs wall time partly measures the neighbours),
the warm run split into preparation (mask, plan, targets) and solve, and the cost of
one loss-and-gradient evaluation inside the solve (solve time / evaluations) against
the same evaluation timed alone (best of 3): their ratio is the share of the solve
spent in the VGG forward/backward passes, the rest is L-BFGS and line-search
bookkeeping.
Needs the VGG weight cache (`python -m learned_resize.retarget.weights --fetch`).
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import skimage.data
from absl import app, flags

from learned_resize.retarget import api, operators, weights
from learned_resize.runtime import cli, errors

_WIDTHS = flags.DEFINE_list("widths", ["256", "512"], "Input widths, comma-separated.")
flags.register_validator(
    "widths",
    lambda v: bool(v) and all(w.isdigit() and int(w) >= 8 for w in v),
    "--widths must be whole numbers of pixels, at least 8, e.g. --widths=256,512",
)


def _eval_seconds(loss_fn, aux, scaled, reps: int = 3) -> float:
    """Best wall time of one jitted loss-and-gradient evaluation, alone."""
    value_and_grad = jax.jit(jax.value_and_grad(lambda z, aux: loss_fn(z, aux)))
    z = jnp.zeros_like(scaled)
    jax.block_until_ready(value_and_grad(z, aux))  # compile
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(value_and_grad(z, aux))
        best = min(best, time.perf_counter() - start)
    return best


def bench_width(width: int, vgg19, vgg16, cfg) -> dict:
    image = api.as_float_image(skimage.data.astronaut())
    height = round(image.shape[0] * width / image.shape[1])
    image = operators.uniform_scale(image[None], (height, width))[0]
    size = (height, round(0.75 * width))

    def run():
        return api.retarget_details(image, size, config=cfg, vgg19=vgg19, vgg16=vgg16, log=None)

    cpu = time.process_time()
    cold = run()
    cold_cpu = time.process_time() - cpu
    warm = run()
    solve = sum(info.seconds for info in warm.solves)
    evals = sum(info.evaluations for info in warm.solves)
    alone = 0.0  # the solve's evaluations, each timed alone
    for scale, info in zip(cfg.scales, warm.solves):
        loss_fn, aux, scaled = api.scale_problem(cfg, image, size, warm.plan, scale, vgg19, vgg16)
        alone += info.evaluations * _eval_seconds(loss_fn, aux, scaled)
    return dict(
        size=f"{width}x{height} -> {size[1]}x{size[0]}",
        iters="+".join(str(info.iterations) for info in warm.solves),
        evals="+".join(str(info.evaluations) for info in warm.solves),
        cold=cold.seconds,
        cold_cpu=cold_cpu,
        warm=warm.seconds,
        prep=warm.seconds - solve,
        solve=solve,
        per_eval=solve / evals,
        per_eval_alone=alone / evals,
    )


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    cfg = api.get_config()
    try:
        vgg19 = weights.load_vgg(19)
        vgg16 = weights.load_vgg(16)
    except FileNotFoundError as e:  # no weight cache; the message says how to make one
        sys.exit(errors.one_line(e))
    load = os.getloadavg()[0]
    device = jax.devices()[0]
    print(
        f"jax {jax.__version__} on {jax.device_count()} x {device.platform} ({device.device_kind})"
    )
    print(f"CPU cores: {os.cpu_count()}, load average at start: {load:.1f}")
    print(
        f"defaults: scales {tuple(cfg.scales)}, iterations {tuple(cfg.iterations)}, "
        f"rec {tuple(cfg.rec_layers)}, perc {tuple(cfg.perc_layers)} at {cfg.perc_scale}"
    )
    rows = []
    for width in (int(w) for w in _WIDTHS.value):
        rows.append(bench_width(width, vgg19, vgg16, cfg))
        print(f"  done {rows[-1]['size']}", flush=True)
    header = (
        f"{'size':<20}{'iters':>7}{'evals':>7}{'cold s':>8}{'(CPU s)':>9}{'warm s':>8}"
        f"{'prep s':>8}{'solve s':>9}{'s/eval':>8}{'alone':>7}{'VGG share':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        share = r["per_eval_alone"] / r["per_eval"]
        print(
            f"{r['size']:<20}{r['iters']:>7}{r['evals']:>7}{r['cold']:>8.1f}"
            f"{r['cold_cpu']:>9.1f}{r['warm']:>8.1f}{r['prep']:>8.1f}{r['solve']:>9.1f}"
            f"{r['per_eval']:>8.2f}{r['per_eval_alone']:>7.2f}{share:>11.0%}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
