"""Pixel seam carving's first call in a fresh process: ours against `seam-carving`.

    python bench/seam_cold.py [--size=256 --trials=5]

scikit-image's astronaut at --size x --size, narrowed to 3/4 of its width. Each trial
starts a new Python for each variant (imports not timed) and times the first call:
  - ours, stored executable: `seams.seam_carve` with learned_resize/runtime/executables.py's
    store warm (a priming process wrote it);
  - ours, JAX cache: the store off, JAX's persistent compilation cache warm (traces
    and lowers, loads the compiled program);
  - ours, nothing cached: the store off, no persistent cache (traces and compiles);
  - `seam-carving` (PyPI, numba `cache=True`, its on-disk cache warm), backward energy.
Medians over --trials, alternating variants; the caches live in a temporary directory.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags

from learned_resize.runtime import cli

CHILD = r"""
import json, os, sys, time
import numpy as np, skimage.data, skimage.transform
variant, size = sys.argv[1], int(sys.argv[2])
image = skimage.transform.resize(skimage.data.astronaut(), (size, size), anti_aliasing=True)
width = round(0.75 * size)
t0 = time.perf_counter()
if variant == "seam-carving":
    import seam_carving
    src = (image * 255).round().astype(np.uint8)
    t1 = time.perf_counter()
    out = seam_carving.resize(src, (width, size), energy_mode="backward")
else:
    import jax, jax.numpy as jnp
    if variant == "jax cache":
        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_CACHE"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from learned_resize.retarget import seams
    x = jnp.asarray(image, jnp.float32)
    t1 = time.perf_counter()
    out = np.asarray(seams.seam_carve(x, (size, width)))
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "call": t2 - t1, "shape": list(out.shape)}))
"""

VARIANTS = {
    "ours, stored executable": ("stored", {"LEARNED_RESIZE_EXECUTABLES": "1"}),
    "ours, JAX cache": ("jax cache", {"LEARNED_RESIZE_EXECUTABLES": "0"}),
    "ours, nothing cached": ("none", {"LEARNED_RESIZE_EXECUTABLES": "0"}),
    "seam-carving (numba cache)": ("seam-carving", {}),
}

_SIZE = flags.DEFINE_integer("size", 256, "Side of the square astronaut, pixels.", lower_bound=2)
_TRIALS = flags.DEFINE_integer("trials", 5, "Fresh processes per variant (median).", lower_bound=1)


def run(variant, env, size):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(size)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    size, trials = _SIZE.value, _TRIALS.value
    with tempfile.TemporaryDirectory() as tmp:
        base = dict(
            os.environ,
            LEARNED_RESIZE_CACHE=os.path.join(tmp, "store"),
            JAX_CACHE=os.path.join(tmp, "jax"),
            NUMBA_CACHE_DIR=os.path.join(tmp, "numba"),
        )
        envs = {name: dict(base, **extra) for name, (_, extra) in VARIANTS.items()}
        for name, (variant, _) in VARIANTS.items():  # prime every cache
            run(variant, envs[name], size)
        results = {name: [] for name in VARIANTS}
        for _ in range(trials):
            for name, (variant, _) in VARIANTS.items():
                results[name].append(run(variant, envs[name], size))
    peer = statistics.median(r["call"] for r in results["seam-carving (numba cache)"])
    print(f"{size}x{size} -> {size}x{round(0.75 * size)}, first call in a")
    print(f"fresh process, median of {trials} (imports not in the call time)")
    print(f"{'variant':<30}{'call s':>8}{'/ peer':>8}{'import s':>10}")
    for name, rows in results.items():
        call = statistics.median(r["call"] for r in rows)
        imports = statistics.median(r["import"] for r in rows)
        print(f"{name:<30}{call:>8.3f}{call / peer:>8.2f}{imports:>10.2f}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
