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

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "launch", "local_multiprocess.py")


def run_layout(processes, devices, args, workdir) -> dict:
    flags = [
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        f"--config.batch_size={args.batch_size}",
        f"--config.optim.reference_batch_size={args.batch_size}",
        f"--config.num_train_steps={args.steps}",
        f"--config.log_every_steps={args.log_every}",
        f"--config.checkpoint_every_steps={args.steps}",
        "--config.data.eval_split=test[:1000]",
    ]
    if args.manual_dir:
        flags.append(f"--config.data.manual_dir={args.manual_dir}")
    if args.data_dir:
        flags.append(f"--config.data.data_dir={args.data_dir}")
    cmd = [sys.executable, LAUNCHER, f"--num_processes={processes}"]
    cmd += [f"--devices_per_process={devices}", f"--log_dir={workdir}_logs", "--", *flags]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default="1x8,2x4", help="PROCESSESxDEVICES, comma-separated.")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--manual_dir", default="", help="Fashion-MNIST idx files dir.")
    parser.add_argument("--data_dir", default="", help="TFDS data dir (default: TFDS's).")
    args = parser.parse_args()
    layouts = [tuple(int(x) for x in layout.split("x")) for layout in args.layouts.split(",")]
    if any(p * d != layouts[0][0] * layouts[0][1] for p, d in layouts):
        raise SystemExit(f"--layouts={args.layouts}: every layout needs the same device count.")

    sys.path.insert(0, REPO)
    from learned_resize import datasets

    # Prepared once here: several processes preparing it at once would race.
    datasets.prepare("fashion_mnist_local", args.data_dir or None, args.manual_dir or None)
    results = {layout: [] for layout in layouts}
    with tempfile.TemporaryDirectory(prefix="multihost_overhead_") as root:
        for repeat in range(args.repeats):
            for p, d in layouts:
                workdir = os.path.join(root, f"{p}x{d}_{repeat}")
                results[(p, d)].append(run_layout(p, d, args, workdir))
                print(f"  {p}x{d} run {repeat + 1}: {results[(p, d)][-1]}", flush=True)

    base = layouts[0]
    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("steps_per_s", "wall")}
        for k, v in results.items()
    }
    print(
        f"\nconfigs/tiny.py, global batch {args.batch_size}, {args.steps} steps, "
        f"{os.cpu_count()} CPU cores, median of {args.repeats}:\n"
    )
    print(
        "| processes x devices | steady steps/s | images/s | step time vs "
        f"{base[0]}x{base[1]} | launch wall (s) | wall vs {base[0]}x{base[1]} |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for (p, d), m in med.items():
        b = med[base]
        print(
            f"| {p} x {d} | {m['steps_per_s']:.2f} | {m['steps_per_s'] * args.batch_size:,.0f} | "
            f"{b['steps_per_s'] / m['steps_per_s']:.2f} | {m['wall']:.0f} | "
            f"{m['wall'] / b['wall']:.2f} |"
        )


if __name__ == "__main__":
    main()
