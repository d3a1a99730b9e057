"""The retargeting loss against the same loss in PyTorch on this CPU.

    python bench/retarget_vs_torch.py --torch_python=/path/to/torchenv/bin/python
    python bench/retarget_vs_torch.py --torch_python=... --width=256 --reps=3 --budget=60

torch is never a dependency of the package: give it its own environment, e.g.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy

(the CPU wheel from PyPI, or `--index-url https://download.pytorch.org/whl/cpu`). Without
torch behind --torch_python (default: $TORCH_PYTHON, else this Python) the bench prints
one sentence saying so and exits 0.

The problem is the CLI's finest scale with the default settings: scikit-image's
astronaut scaled to --width, retargeted with the configured plan (default multi; the
numbers in docs/performance.md were taken with seam, the default then: the
loss's cost depends on the sizes, not the plan) to --fraction of its width;
the loss is `reconstruct.retarget_loss` plus the range penalty, i.e. exactly what
`reconstruct.minimize` runs L-BFGS on (VGG-19 conv1_1..conv4_1 reconstruction, VGG-16
conv4_2 perceptual term on the half-scale output against the plan-warped input, TV and
stats prior). This process computes the targets and exports them with the cached VGG
weights to an .npz; `retarget_torch_worker.py` runs under --torch_python, rebuilds the
loss in PyTorch from those arrays and answers commands (loss and gradient at a given
image, timings, an L-BFGS solve). So only the loss and gradient of the output image
are compared, not the target computation.

It reports:
  1. agreement of loss (relative; must be <= 1e-4) and gradient (relative L2 and
     cosine) at the start image and at a perturbed one;
  2. per evaluation of loss + gradient, wall and process CPU time (median of --reps),
     ours jitted after warm-up and torch eager with 2 threads, with 2 threads and
     OMP_WAIT_POLICY=PASSIVE, and with 1 thread, measured in alternating rounds so all
     see the same machine load (on a loaded machine torch's spinning OpenMP threads
     cost it 1.4-25x; passive waiting or one thread removes that);
  3. solver to target: our L-BFGS (`reconstruct.minimize` with the CLI's settings for
     the fine scale: optax L-BFGS, zoom line search, memory 10, iteration cap and rtol
     stop) cold (with compilation) and warm, and `torch.optim.LBFGS`
     (line_search_fn='strong_wolfe', the same memory and iteration cap, torch's own
     tolerances off, stopped after --budget seconds, its fastest thread setting from
     2.) from the same start; then the time (and evaluations) each needed to reach
     the other's final loss.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import skimage.data
from absl import app, flags

from learned_resize.retarget import api, coarse_to_fine, operators, plans, reconstruct, vgg, weights
from learned_resize.runtime import cli, errors

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "retarget_torch_worker.py")

_TORCH_PYTHON = flags.DEFINE_string(
    "torch_python",
    os.environ.get("TORCH_PYTHON", sys.executable),
    "A Python that has torch and numpy (default: $TORCH_PYTHON, else this one).",
)
_WIDTH = flags.DEFINE_integer("width", 512, "Input width (astronaut).", lower_bound=8)
_FRACTION = flags.DEFINE_float("fraction", 0.75, "Output width / input.")
_REPS = flags.DEFINE_integer("reps", 5, "Timed evaluations per side.", lower_bound=1)
_BUDGET = flags.DEFINE_float("budget", 200.0, "Torch solve limit, s.")
_NO_SOLVE = flags.DEFINE_bool("no_solve", False, "Skip the solver comparison.")
_WINOGRAD_MIN_PIXELS = flags.DEFINE_integer(
    "winograd_min_pixels", None, "0: Winograd at any size (default: the config's).", lower_bound=0
)
_ITERATIONS = flags.DEFINE_integer(
    "iterations", 0, "Both solvers' cap (default: the CLI's).", lower_bound=0
)
_ONCE = flags.DEFINE_bool("once", False, "Our solver cold only, no warm run.")
flags.register_validator("fraction", lambda v: v > 0, "--fraction must be positive, e.g. 0.75")
flags.register_validator("budget", lambda v: v > 0, "--budget is seconds, more than 0")


def skip_sentence(python: str) -> str:
    return (
        f"torch is not importable by {python}, so this bench skips: install it in its own "
        "environment (never the project's), e.g. `python3 -m venv /tmp/torchenv && "
        "/tmp/torchenv/bin/pip install torch numpy`, and pass "
        "--torch_python=/tmp/torchenv/bin/python."
    )


def has_torch(python: str) -> bool:
    probe = subprocess.run(
        [python, "-c", "import torch, numpy"], capture_output=True, timeout=300, check=False
    )
    return probe.returncode == 0


def build_problem(width: int, fraction: float, winograd_min_pixels: int | None = None):
    """(value_fn, aux, start, meta) of the CLI's finest scale for the astronaut."""
    cfg = api.get_config()
    if winograd_min_pixels is not None:
        cfg.winograd_min_pixels = winograd_min_pixels
    vgg19, vgg16 = weights.load_vgg(19), weights.load_vgg(16)
    image = api.as_float_image(skimage.data.astronaut())
    height = round(image.shape[0] * width / image.shape[1])
    image = operators.uniform_scale(image[None], (height, width))[0]
    size = (height, round(fraction * width))
    mask = api.importance_mask(image, vgg19, cfg)
    plan, _ = plans.plan_for(cfg, image, size, mask)
    scale = cfg.scales[-1]
    loss_fn, aux, scaled = coarse_to_fine.scale_problem(cfg, image, size, plan, scale, vgg19, vgg16)
    start = operators.apply_plan(plan, image[None], scaled.shape[1:3])  # init='plan'
    meta = dict(cfg=cfg, size=size, in_size=(height, width), vgg19=vgg19, vgg16=vgg16)
    return loss_fn, aux, start, meta


def export(path, loss_fn, aux, start, meta):
    """Writes everything the torch worker needs to rebuild the loss."""
    spec = loss_fn.keywords["spec"]
    out = {}

    def order(depth, layers):
        names = vgg.layer_names(depth)
        return names[: max(names.index(n) for n in layers) + 1]

    rec_order = order(19, spec.rec_layers)
    perc_order = order(16, spec.perc_layers) if spec.perc_layers else ()
    for net, names, params in (
        ("rec", rec_order, weights.load_params(19)),
        ("perc", perc_order, weights.load_params(16)),
    ):
        for name in names:
            if name.startswith("conv"):
                out[f"{net}/{name}/kernel"] = params[f"{name}/kernel"]
                out[f"{net}/{name}/bias"] = params[f"{name}/bias"]
    for name in spec.rec_layers:
        out[f"rec_target/{name}"] = np.asarray(aux["rec_targets"][name])
        out[f"rec_weight/{name}"] = np.asarray(aux["rec_weights"][name])
    for name in spec.perc_layers:
        out[f"perc_target/{name}"] = np.asarray(aux["perc_targets"][name])
        out[f"perc_weight/{name}"] = np.asarray(aux["perc_weights"][name])
    small = reconstruct.perceptual_input(start, spec.perc_scale)
    out.update(
        rec_layers=np.asarray(spec.rec_layers),
        perc_layers=np.asarray(spec.perc_layers, dtype=str),
        rec_order=np.asarray(rec_order),
        perc_order=np.asarray(perc_order, dtype=str),
        perc_size=np.asarray(small.shape[1:3]),
        mean=np.asarray(aux["mean"]),
        std=np.asarray(aux["std"]),
        range_weight=np.float32(reconstruct.RANGE_WEIGHT),
        start=np.asarray(start),
        **{k: np.asarray(aux[k]) for k in ("alpha", "beta", "gamma", "tv_weight", "stats_weight")},
    )
    np.savez(path, **out)


class Worker:
    """The torch worker process: one JSON command line in, one JSON line out."""

    def __init__(self, python: str, problem: str, threads: int, passive: bool):
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        self.label = f"torch, {threads} thread{'s' * (threads > 1)}" + (
            ", OMP_WAIT_POLICY=PASSIVE" if passive else ""
        )
        self.proc = subprocess.Popen(
            [python, WORKER, problem, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.hello = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the torch worker exited; see its error above")
        return json.loads(line)

    def __call__(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if not self.proc.stdin.closed and self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def reach(times, evals, losses, target):
    """(time, evaluations) when losses[i] first is <= target, else None."""
    for t, n, v in zip(times, evals, losses):
        if v <= target:
            return t, n
    return None


def our_solve(loss_fn, aux, start, cfg, iterations):
    """reconstruct.minimize as the CLI runs it (one line per iteration: chunk=1 only
    changes how often it reports; the compiled loop is the same)."""
    marks, evals = [], []
    t0 = time.perf_counter()

    def log(line):
        marks.append(time.perf_counter() - t0)
        # The first line is after the priming evaluation; the others give the count.
        found = re.search(r"evals (\d+)", line)
        evals.append(int(found.group(1)) if found else 1)

    cpu = time.process_time()
    _, info = reconstruct.minimize(
        loss_fn,
        start,
        aux,
        iterations=iterations,
        chunk=1,
        memory_size=cfg.memory_size,
        max_linesearch_steps=cfg.max_linesearch_steps,
        tol=cfg.tol,
        rtol=cfg.rtol,
        log=log,
    )
    return dict(
        times=marks,
        evals=evals,
        losses=info.losses,
        iterations=info.iterations,
        evaluations=info.evaluations,
        seconds=time.perf_counter() - t0,
        cpu=time.process_time() - cpu,
    )


def agreement(worker, value_and_grad, start, aux, tmp) -> float:
    """Prints loss and gradient agreement at the start and a perturbed image; returns
    the worst relative loss difference."""
    noise = 0.05 * jax.random.normal(jax.random.key(0), start.shape)
    print("\nagreement (torch vs ours)")
    worst = 0.0
    for label, image in (("start", start), ("start + noise", start + noise)):
        path, out = os.path.join(tmp, "image.npz"), os.path.join(tmp, "out.npz")
        np.savez(path, image=np.asarray(image))
        worker(cmd="eval", image=path, out=out)
        with np.load(out) as f:
            t_loss, t_grad = float(f["loss"]), f["grad"].astype(np.float64)
        o_loss, o_grad = value_and_grad(image, aux)
        o_loss, o_grad = float(o_loss), np.asarray(o_grad, np.float64)
        rel = abs(t_loss - o_loss) / abs(o_loss)
        worst = max(worst, rel)
        grad_rel = np.linalg.norm(t_grad - o_grad) / np.linalg.norm(o_grad)
        cos = np.vdot(t_grad, o_grad) / (np.linalg.norm(t_grad) * np.linalg.norm(o_grad))
        print(
            f"  {label:<14} loss ours {o_loss:.7g} torch {t_loss:.7g} rel diff {rel:.1e}; "
            f"gradient rel L2 diff {grad_rel:.1e}, cosine {cos:.7f}"
        )
    return worst


def time_evaluations(workers, value_and_grad, start, aux, reps):
    """Alternating rounds (ours, then each torch configuration); prints the medians and
    returns torch's fastest worker."""
    jax.block_until_ready(value_and_grad(start, aux))  # compile + warm up
    for k in workers:
        k(cmd="time", reps=1)  # warm up
    walls = {"ours": [], **{k.label: [] for k in workers}}
    cpus = {name: [] for name in walls}
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(value_and_grad(start, aux))
        walls["ours"].append(time.perf_counter() - w)
        cpus["ours"].append(time.process_time() - c)
        for k in workers:
            t = k(cmd="time", reps=1)
            walls[k.label] += t["wall"]
            cpus[k.label] += t["cpu"]
    med = statistics.median
    print(f"\nloss + gradient, one evaluation (median of {reps}, alternating)")
    print(f"  {'':<42}{'wall s':>8}{'CPU s':>8}{'wall / ours':>13}")
    for name in walls:
        ratio = med(walls[name]) / med(walls["ours"])
        print(f"  {name:<42}{med(walls[name]):>8.3f}{med(cpus[name]):>8.3f}{ratio:>12.2f}x")
    print(f"  load average now {os.getloadavg()[0]:.2f}", flush=True)
    return min(workers, key=lambda k: med(walls[k.label]))


def solve_both(worker, loss_fn, aux, start, cfg):
    """Ours cold, torch, ours warm from the same start: (our rows, torch's result)."""
    iterations = _ITERATIONS.value or cfg.iterations[-1]
    print(
        f"\nsolver to target from the same start (iteration cap {iterations}, "
        f"memory {cfg.memory_size}; ours stops at rtol {cfg.rtol}, torch after "
        f"{_BUDGET.value:.0f} s; {worker.label})"
    )
    rows = [("ours (cold)", our_solve(loss_fn, aux, start, cfg, iterations))]
    print(f"  ours cold done, load average {os.getloadavg()[0]:.2f}", flush=True)
    tr = worker(cmd="solve", iterations=iterations, budget=_BUDGET.value, memory=cfg.memory_size)
    print(f"  torch done, load average {os.getloadavg()[0]:.2f}", flush=True)
    if not _ONCE.value:
        rows.append(("ours (warm)", our_solve(loss_fn, aux, start, cfg, iterations)))
        print(f"  ours warm done, load average {os.getloadavg()[0]:.2f}")
    return rows, tr


def report_solvers(rows, tr):
    """The solver table and the time each needed to reach the other's final loss."""
    t_final = min(tr["losses"])
    print(f"  {'solver':<13}{'iters':>6}{'evals':>6}{'final loss':>12}{'wall s':>9}{'CPU s':>8}")
    for label, r in rows:
        print(
            f"  {label:<13}{r['iterations']:>6}{r['evaluations']:>6}{r['losses'][-1]:>12.6g}"
            f"{r['seconds']:>9.1f}{r['cpu']:>8.1f}"
        )
    print(
        f"  {'torch LBFGS':<13}{tr['iterations']:>6}{len(tr['losses']):>6}{t_final:>12.6g}"
        f"{tr['times'][-1]:>9.1f}{tr['cpu']:>8.1f}  (stopped: {tr['stopped']})"
    )
    o_final = min(rows[-1][1]["losses"])

    def fmt(hit, within, evals):
        if hit is None:
            return f"not reached in {within:.1f} s ({evals} evaluations)"
        return f"{hit[0]:.1f} s ({hit[1]} evaluations)"

    for label, r in rows:
        hit = reach(r["times"], r["evals"], r["losses"], t_final)
        print(
            f"  {label} to torch's final loss {t_final:.6g}: "
            f"{fmt(hit, r['seconds'], r['evaluations'])}"
        )
    t_evals = list(range(1, len(tr["losses"]) + 1))
    hit = reach(tr["times"], t_evals, tr["losses"], o_final)
    print(
        f"  torch to our final loss {o_final:.6g}: {fmt(hit, tr['times'][-1], len(tr['losses']))}"
    )


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    if shutil.which(_TORCH_PYTHON.value) is None:
        sys.exit(
            f"error: --torch_python={_TORCH_PYTHON.value} is not a program; give the path of a "
            "Python that has torch and numpy, e.g. --torch_python=/tmp/torchenv/bin/python."
        )
    if not has_torch(_TORCH_PYTHON.value):
        print(skip_sentence(_TORCH_PYTHON.value))
        return
    load_start = os.getloadavg()
    device = jax.devices()[0]
    try:
        loss_fn, aux, start, meta = build_problem(
            _WIDTH.value, _FRACTION.value, _WINOGRAD_MIN_PIXELS.value
        )
    except FileNotFoundError as e:  # no weight cache; the message says how to make one
        sys.exit(errors.one_line(e))
    cfg = meta["cfg"]

    def value_fn(z, aux):
        return loss_fn(z, aux) + reconstruct.RANGE_WEIGHT * reconstruct.range_penalty(z)

    value_and_grad = jax.jit(jax.value_and_grad(value_fn))
    with tempfile.TemporaryDirectory() as tmp:
        problem = os.path.join(tmp, "problem.npz")
        export(problem, loss_fn, aux, start, meta)
        # torch with 2 threads as shipped, 2 threads whose OpenMP workers sleep instead
        # of spinning at barriers (on a machine shared with other jobs the spinning
        # threads are what a waiting thread competes with), and 1 thread.
        workers = [
            Worker(_TORCH_PYTHON.value, problem, threads, passive)
            for threads, passive in ((2, False), (2, True), (1, False))
        ]
        (h, w), (oh, ow) = meta["in_size"], meta["size"]
        print(
            f"jax {jax.__version__} ({device.platform}), torch {workers[0].hello['torch']}; "
            f"{os.cpu_count()} CPU cores; load average at start "
            f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}"
        )
        print(
            f"problem: astronaut {w}x{h} -> {ow}x{oh}, fine scale; loss on the "
            f"{start.shape[2]}x{start.shape[1]} output: VGG-19 {tuple(cfg.rec_layers)}, "
            f"VGG-16 {tuple(cfg.perc_layers)} at scale {cfg.perc_scale}, TV, stats, range; "
            f"Winograd {'on' if oh * ow >= cfg.winograd_min_pixels else 'off'} at this size "
            f"(config.winograd_min_pixels={cfg.winograd_min_pixels})"
        )
        try:
            worst = agreement(workers[0], value_and_grad, start, aux, tmp)
            if worst > 1e-4:
                print(f"FAIL: the losses differ by {worst:.1e} relative (> 1e-4)")
                sys.exit(1)
            print("  losses agree to <= 1e-4 relative: ok")
            # The solver comparison uses torch's fastest configuration here.
            worker = time_evaluations(workers, value_and_grad, start, aux, _REPS.value)
            if _NO_SOLVE.value:
                return
            rows, tr = solve_both(worker, loss_fn, aux, start, cfg)
        finally:
            for k in workers:
                k.close()
    report_solvers(rows, tr)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
