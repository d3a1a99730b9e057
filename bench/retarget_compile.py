"""Compile time of the retargeting CLI for a new photo size, with and without buckets.

    python bench/retarget_compile.py                  # the CLI's defaults (comparison grid on)
    python bench/retarget_compile.py --nocomparison

Each row is a fresh Python process that runs the CLI's work (`__main__.run`, the same
call `python -m learned_resize.retarget` makes) twice on the astronaut scaled to the
row's size, narrowed to 3/4 width; compile time = the first run minus the second (which
compiles nothing). The caches a user has (JAX's persistent compilation cache, the
executable store) start empty in a temporary directory and the rows run in order, each
finding what the rows before it left, as a user's runs would:

  1. 256x256, empty caches
  2. 256x256 again (a repeat size)
  3. 250x250, a new size in the same bucket as 256x256 (`config.bucket`, default 16)
  4. 250x250 with --config.bucket=0 (exact sizes: its programs are new)
  5. 256x200, a new size in a new bucket (256x208)

The VGG weights are read from the user's cache (symlinked into the temporary one).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROWS = (
    ("empty caches", 256, 256, 16),
    ("same size again", 256, 256, 16),
    ("new size, same bucket", 250, 250, 16),
    ("new size, buckets off", 250, 250, 0),
    ("new size, new bucket", 200, 256, 16),
)


def child(args) -> None:
    import numpy as np
    import skimage.data
    from PIL import Image

    from learned_resize.retarget import __main__ as cli
    from learned_resize.retarget import api

    cli.use_compile_cache(args.cache)
    photo = pathlib.Path(args.tmp) / f"photo_{args.width}x{args.height}.png"
    Image.fromarray(skimage.data.astronaut()).resize(
        (args.width, args.height), Image.Resampling.LANCZOS
    ).save(photo)
    cfg = api.get_config()
    cfg.bucket = args.bucket
    seconds = []
    for k in range(2):
        out = pathlib.Path(args.tmp) / f"out_{k}.png"
        start = time.perf_counter()
        cli.run(str(photo), (None, round(0.75 * args.width), None), str(out), cfg, args.comparison)
        seconds.append(time.perf_counter() - start)
    same = np.array_equal(
        np.asarray(Image.open(out)), np.asarray(Image.open(out.with_name("out_0.png")))
    )
    print("RESULT " + json.dumps(dict(seconds=seconds, same=same)))


def user_cache(tmp: pathlib.Path) -> pathlib.Path:
    """A fresh package cache holding links to the user's VGG weights only."""
    from learned_resize import executables

    root = tmp / "cache"
    root.mkdir()
    for entry in executables.cache_root().iterdir():
        if entry.suffix == ".npz":
            (root / entry.name).symlink_to(entry)
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparison", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("width", "height", "bucket"):
        parser.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        env = dict(os.environ, LEARNED_RESIZE_CACHE=str(user_cache(tmp)))
        print(
            f"comparison grid {'on' if args.comparison else 'off'}; "
            f"machine load {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'row':<24}{'size':>16}{'bucket':>8}{'first s':>9}{'second s':>10}{'compile s':>11}"
        )
        for label, height, width, bucket in ROWS:
            command = [
                sys.executable,
                __file__,
                "--child",
                f"--width={width}",
                f"--height={height}",
            ]
            command += [f"--bucket={bucket}", f"--cache={tmp / 'jax'}", f"--tmp={tmp}"]
            command += ["--comparison" if args.comparison else "--no-comparison"]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode or not lines:
                sys.exit(f"error: the {label!r} run failed:\n{done.stderr[-2000:]}")
            result = json.loads(lines[-1][len("RESULT ") :])
            first, second = result["seconds"]
            size = f"{width}x{height}->{round(0.75 * width)}"
            print(
                f"{label:<24}{size:>16}{bucket:>8}"
                f"{first:>9.1f}{second:>10.1f}{first - second:>11.1f}",
                flush=True,
            )
            assert result["same"], "the two runs of one process wrote different images"


if __name__ == "__main__":
    main()
