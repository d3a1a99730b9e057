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

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from learned_resize.runtime import cli

ROWS = (
    ("empty caches", 256, 256, 16),
    ("same size again", 256, 256, 16),
    ("new size, same bucket", 250, 250, 16),
    ("new size, buckets off", 250, 250, 0),
    ("new size, new bucket", 200, 256, 16),
)
# How the parent starts a row's process: `retarget_compile.py --child '{"width": ...}'`.
# The child reads its settings from that JSON, not from flags: it imports the CLI module,
# whose flags (--width, --comparison, ...) would clash with this script's.
CHILD = "--child"


def child(width: int, height: int, bucket: int, comparison: bool, cache: str, tmp: str) -> None:
    """One row's process: the CLI's work twice at this size; prints RESULT and its JSON."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from learned_resize.retarget import __main__ as retarget_cli
    from learned_resize.retarget import api

    retarget_cli.use_compile_cache(cache)
    photo = pathlib.Path(tmp) / f"photo_{width}x{height}.png"
    Image.fromarray(skimage.data.astronaut()).resize(
        (width, height), Image.Resampling.LANCZOS
    ).save(photo)
    cfg = api.get_config()
    cfg.bucket = bucket
    seconds = []
    for k in range(2):
        out = pathlib.Path(tmp) / f"out_{k}.png"
        start = time.perf_counter()
        # overwrite: out_0/out_1 are this bench's own files, rewritten by every row.
        size_flags = (None, round(0.75 * width), None)
        retarget_cli.run(str(photo), size_flags, str(out), cfg, comparison, overwrite=True)
        seconds.append(time.perf_counter() - start)
    same = np.array_equal(
        np.asarray(Image.open(out)), np.asarray(Image.open(out.with_name("out_0.png")))
    )
    print("RESULT " + json.dumps(dict(seconds=seconds, same=same)))


def user_cache(tmp: pathlib.Path) -> pathlib.Path:
    """A fresh package cache holding links to the user's VGG weights only."""
    from learned_resize.runtime import executables

    root = tmp / "cache"
    root.mkdir()
    for entry in executables.cache_root().iterdir():
        if entry.suffix == ".npz":
            (root / entry.name).symlink_to(entry)
    return root


def main(argv, comparison_flag):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    comparison = comparison_flag.value
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        env = dict(os.environ, LEARNED_RESIZE_CACHE=str(user_cache(tmp)))
        print(
            f"comparison grid {'on' if comparison else 'off'}; "
            f"machine load {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'row':<24}{'size':>16}{'bucket':>8}{'first s':>9}{'second s':>10}{'compile s':>11}"
        )
        for label, height, width, bucket in ROWS:
            settings = dict(width=width, height=height, bucket=bucket, comparison=comparison)
            settings.update(cache=str(tmp / "jax"), tmp=str(tmp))
            command = [sys.executable, __file__, CHILD, json.dumps(settings)]
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
    if sys.argv[1:2] == [CHILD]:
        child(**json.loads(sys.argv[2]))
    else:
        _COMPARISON = flags.DEFINE_bool("comparison", True, "Also write the comparison grid.")
        app.run(lambda argv: main(argv, _COMPARISON), flags_parser=cli.parse_flags)
