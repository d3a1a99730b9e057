r"""Cost of running as several processes: 1 process x 8 devices vs 2 x 4 (vs 4 x 2) on one machine.

    python bench/multihost_overhead.py                # ~10 min on a busy 2-core CPU
    python bench/multihost_overhead.py --layouts=1x8,2x4,4x2 --repeats=3

Each layout trains configs/tiny.py (small CNN behind a learned resizer, Fashion-MNIST
28 -> 8) with the same global batch through `launch/local_multiprocess.py`, so the
only difference is how the 8 devices are split over processes: with several
processes every step's gradient all-reduce and BN statistics cross process
boundaries through gloo over TCP, and checkpoints and evals synchronise the
processes. The table gives steady-state steps/s (from the metrics.jsonl times,
after the first log window, which holds the compilation) and the whole launch's
wall time (start-up, compilation, a checkpoint and an eval included), each as a
ratio to the first layout. Repeats run the layouts interleaved and report medians,
because this machine is shared.

Needs Fashion-MNIST prepared (`bash launch/install.sh`), or --manual_dir with the
idx files.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_LAYOUTS = flags.DEFINE_list("layouts", ["1x8", "2x4"], "PROCESSESxDEVICES, comma-separated.")
_STEPS = flags.DEFINE_integer("steps", 60, "Training steps per launch.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 10, "Steps per metrics line.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Interleaved repeats of every layout.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Fashion-MNIST idx files dir.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data dir (default: TFDS's).")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "launch", "local_multiprocess.py")


def run_layout(processes, devices, workdir) -> dict:
    main_flags = [
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        f"--config.batch_size={_BATCH_SIZE.value}",
        f"--config.optim.reference_batch_size={_BATCH_SIZE.value}",
        f"--config.num_train_steps={_STEPS.value}",
        f"--config.log_every_steps={_LOG_EVERY.value}",
        f"--config.checkpoint_every_steps={_STEPS.value}",
        "--config.data.eval_split=test[:1000]",
    ]
    if _MANUAL_DIR.value:
        main_flags.append(f"--config.data.manual_dir={_MANUAL_DIR.value}")
    if _DATA_DIR.value:
        main_flags.append(f"--config.data.data_dir={_DATA_DIR.value}")
    cmd = [sys.executable, LAUNCHER, f"--num_processes={processes}"]
    cmd += [f"--devices_per_process={devices}", f"--log_dir={workdir}_logs", "--", *main_flags]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{processes}x{devices} failed:\n{result.stdout[-3000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if '"train/loss"' in line]
    first, last = records[0], records[-1]  # The first window holds the compilation.
    rate = (last["step"] - first["step"]) / (last["time"] - first["time"])
    return {"steps_per_s": rate, "wall": wall}


def _layouts(values: list[str]) -> list[tuple[int, int]] | None:
    """['1x8', '2x4'] -> [(1, 8), (2, 4)]; None unless all are PxD with the same P*D > 0."""
    try:
        layouts = [tuple(int(x) for x in value.split("x")) for value in values]
    except ValueError:
        return None
    if not layouts or any(len(lay) != 2 or min(lay) < 1 for lay in layouts):
        return None
    if any(p * d != layouts[0][0] * layouts[0][1] for p, d in layouts):
        return None
    return layouts


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}; this bench takes only --flags.")
    layouts = _layouts(_LAYOUTS.value)
    if layouts is None:
        sys.exit(
            f"error: --layouts={','.join(_LAYOUTS.value)} is not a list of PROCESSESxDEVICES "
            "with the same device count, e.g. --layouts=1x8,2x4,4x2."
        )

    sys.path.insert(0, REPO)
    from learned_resize.data import builders

    # Prepared once here: several processes preparing it at once would race.
    builders.prepare("fashion_mnist_local", _DATA_DIR.value or None, _MANUAL_DIR.value or None)
    results = {layout: [] for layout in layouts}
    with tempfile.TemporaryDirectory(prefix="multihost_overhead_") as root:
        for repeat in range(_REPEATS.value):
            for p, d in layouts:
                workdir = os.path.join(root, f"{p}x{d}_{repeat}")
                results[(p, d)].append(run_layout(p, d, workdir))
                print(f"  {p}x{d} run {repeat + 1}: {results[(p, d)][-1]}", flush=True)

    base = layouts[0]
    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("steps_per_s", "wall")}
        for k, v in results.items()
    }
    print(
        f"\nconfigs/tiny.py, global batch {_BATCH_SIZE.value}, {_STEPS.value} steps, "
        f"{os.cpu_count()} CPU cores, median of {_REPEATS.value}:\n"
    )
    print(
        "| processes x devices | steady steps/s | images/s | step time vs "
        f"{base[0]}x{base[1]} | launch wall (s) | wall vs {base[0]}x{base[1]} |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for (p, d), m in med.items():
        b = med[base]
        print(
            f"| {p} x {d} | {m['steps_per_s']:.2f} | {m['steps_per_s'] * _BATCH_SIZE.value:,.0f} | "
            f"{b['steps_per_s'] / m['steps_per_s']:.2f} | {m['wall']:.0f} | "
            f"{m['wall'] / b['wall']:.2f} |"
        )


if __name__ == "__main__":
    app.run(main)
