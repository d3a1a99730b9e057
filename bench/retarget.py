"""Speed of deep-feature retargeting with the CLI's default settings.

    python bench/retarget.py                 # 256 and 512 px wide, to 3/4 width
    python bench/retarget.py --widths=256,512,1024
    python bench/retarget.py --winograd_min_pixels=0   # Winograd at every scale

For each width, scikit-image's astronaut scaled to that width is retargeted to 3/4 of
it, solving at that width (`config.work_side=0`: these rows time the solve itself),
twice in one process: the first (cold) run includes XLA compilation, the second
(warm) reuses the compiled code. Per size the table gives the L-BFGS iterations and
loss evaluations per scale, cold and warm wall time (and the cold run's process CPU
time: on a machine shared with other jobs wall time partly measures the neighbours),
the warm run split into preparation (mask, plan, targets) and solve, and the cost of
one loss-and-gradient evaluation inside the solve (solve time / evaluations) against
the same evaluation timed alone (best of 3): their ratio is the share of the solve
spent in the VGG forward/backward passes, the rest is L-BFGS and line-search
bookkeeping.

    python bench/retarget.py --photos=640,12mp   # whole photos, one subprocess per row

--photos rows retarget a whole photo to 3/4 width through `api.retarget_details` with
the defaults (working size `config.work_side`), twice in a fresh subprocess with the
CLI's persistent compilation cache: cold (the first call: weights load, compilation
or cache reads) and warm, plus the child's peak resident memory (`os.wait4`'s
ru_maxrss). '640' is scikit-image's rocket (640x427, a tuning photo); '12mp' is a
held-out photo (imgaug's quokka, else scikit-image's astronaut) upscaled to 4032x3024;
'zidane' (1280x720) and 'bus' (810x1080) are the held-out camera photos, real photos at
the size they were saved (`pip install --no-deps ultralytics==8.4.190`).
Needs the VGG weight cache (`python -m learned_resize.retarget.weights --fetch`).
"""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import skimage.data
from absl import app, flags

from learned_resize.retarget import api, coarse_to_fine, operators, photos, weights
from learned_resize.runtime import cli, errors

_WIDTHS = flags.DEFINE_list("widths", ["256", "512"], "Input widths, comma-separated.")
_PHOTOS = flags.DEFINE_list("photos", [], "Whole-photo rows: 640, 12mp, zidane, bus.")
_CHILD = flags.DEFINE_string("child", None, "Internal: run one --photos row and print JSON.")
_WORK_SIDE = flags.DEFINE_integer(
    "work_side", None, "--photos rows: config.work_side (default: the defaults')."
)
_WINOGRAD = flags.DEFINE_integer(
    "winograd_min_pixels",
    None,
    "--widths rows: config.winograd_min_pixels (0: Winograd at every scale; default: the "
    "defaults').",
    lower_bound=0,
)
flags.register_validator(
    "photos",
    lambda v: set(v) <= {"640", "12mp", "zidane", "bus"},
    "--photos takes 640, 12mp, zidane and/or bus, e.g. --photos=640,12mp",
)
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
        loss_fn, aux, scaled = coarse_to_fine.scale_problem(
            cfg, image, size, warm.plan, scale, vgg19, vgg16
        )
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


def _photo(row: str):
    import numpy as np

    from learned_resize.retarget import buckets

    if row == "640":
        return skimage.data.rocket(), "rocket"
    if row in ("zidane", "bus"):
        return photos.load(row).image, f"{row} (held out, camera)"
    try:
        image, name = photos.load("quokka").image, "quokka (held out)"
    except FileNotFoundError:
        image, name = skimage.data.astronaut(), "astronaut"
    big = buckets.resize_image(np.asarray(image, np.float32) / 255.0, (3024, 4032))
    return big, f"{name} upscaled"


def child(row: str) -> None:
    """One --photos row in this (fresh) process: cold and warm calls, printed as JSON."""
    from learned_resize.retarget import __main__ as cli_main

    if os.environ.get("RETARGET_BENCH_CACHE", "1") == "1":
        cli_main.use_compile_cache(cli_main._CACHE.default)
    start = time.perf_counter()
    image, name = _photo(row)
    size = (image.shape[0], round(0.75 * image.shape[1]))
    vgg19, vgg16 = weights.load_vgg(19), weights.load_vgg(16)
    loaded = time.perf_counter() - start
    times, work = [], None
    cfg = api.get_config()
    if _WORK_SIDE.value is not None:
        cfg.work_side = _WORK_SIDE.value
    for _ in range(2):
        result = api.retarget_details(image, size, config=cfg, vgg19=vgg19, vgg16=vgg16, log=None)
        times.append(result.seconds)
        work = result.work_size
    out = dict(photo=name, size=f"{image.shape[1]}x{image.shape[0]} -> {size[1]}x{size[0]}")
    out.update(work=f"{work[0][1]}x{work[0][0]} -> {work[1][1]}x{work[1][0]}", load=loaded)
    out.update(cold=times[0], warm=times[1], evals=sum(s.evaluations for s in result.solves))
    print(json.dumps(out))


def photo_rows(rows) -> None:
    """Each row in its own subprocess; its peak RSS from os.wait4."""
    print(
        f"{'photo':<30}{'size':<24}{'working size':<18}{'evals':>6}{'weights s':>10}"
        f"{'cold s':>8}{'warm s':>8}{'peak RSS GB':>13}"
    )
    for row in rows:
        load = os.getloadavg()[0]
        proc = subprocess.Popen(
            [sys.executable, __file__, f"--child={row}"]
            + ([] if _WORK_SIDE.value is None else [f"--work_side={_WORK_SIDE.value}"]),
            stdout=subprocess.PIPE,
            text=True,
        )
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            sys.exit(f"error: the {row} row failed (exit status {status >> 8}); run it alone.")
        r = json.loads(stdout.strip().splitlines()[-1])
        print(
            f"{r['photo']:<30}{r['size']:<24}{r['work']:<18}{r['evals']:>6}{r['load']:>10.1f}"
            f"{r['cold']:>8.1f}{r['warm']:>8.1f}{usage.ru_maxrss / 2**20:>13.2f}"
            f"   (load {load:.1f})",
            flush=True,
        )


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    if _CHILD.value:
        return child(_CHILD.value)
    if _PHOTOS.value:
        try:  # a camera photo's wheel missing: one line before any subprocess
            for row in sorted(set(_PHOTOS.value) & {"zidane", "bus"}):
                photos.load(row)
        except FileNotFoundError as e:
            sys.exit(errors.one_line(e))
        print(f"CPU cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")
        photo_rows(_PHOTOS.value)
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        return None
    cfg = api.get_config()
    cfg.work_side = 0  # the solve at each width itself, not at the working size
    if _WINOGRAD.value is not None:
        cfg.winograd_min_pixels = _WINOGRAD.value
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
        f"defaults but work_side=0: scales {tuple(cfg.scales)}, "
        f"iterations {tuple(cfg.iterations)}, rec {tuple(cfg.rec_layers)}, "
        f"perc {tuple(cfg.perc_layers)} at {cfg.perc_scale}, "
        f"winograd_min_pixels {cfg.winograd_min_pixels}"
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
