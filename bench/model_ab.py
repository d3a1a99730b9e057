r"""A backbone's training step from an older commit's model file against this tree's, interleaved.

    python bench/model_ab.py --base=8ee268c --backbones=resnet50 --kinds=bilinear
    python bench/model_ab.py --base=8ee268c --backbones=resnet50 --kinds=learned --repeats=3

For each backbone and resizer kind it builds bench/train_step.py's variant (the
trainer's real step) twice in one process: once with the backbone's module as it
was at `--base` (read with `git show`, imported under another name) and once as
it is now. It prints the compiled programs' counts (temp memory, copies,
transposes, reductions) and, unless `--notime`, the median wall and CPU time of
interleaved steps with their ratio (now / base). Modules the old file imports from
the package are today's.
"""

import importlib.util
import pathlib
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import train_step as ts  # noqa: E402  (the sibling benchmark; defines the shared flags)

from learned_resize import models
from learned_resize.config import defaults
from learned_resize.runtime import allocator  # noqa: E402
from learned_resize.runtime import mesh as mesh_lib

_BASE = flags.DEFINE_string("base", None, "Git revision whose model files are the baseline.")
_KINDS = flags.DEFINE_list("kinds", ["bilinear"], "Resizer kinds: bilinear and/or learned.")


def register_base(backbone: str, revision: str, directory: pathlib.Path) -> str:
    """Registers `backbone` as built by its module at `revision`; returns the new name."""
    path, ctor, kwargs = models._REGISTRY[backbone]
    file = path.replace(".", "/") + ".py"
    source = subprocess.run(
        ["git", "show", f"{revision}:{file}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=pathlib.Path(__file__).parent,
    ).stdout
    module_name = f"{path.split('.')[-1]}_at_{revision}"
    target = directory / f"{module_name}.py"
    target.write_text(source)
    spec = importlib.util.spec_from_file_location(module_name, target)
    sys.modules[module_name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[module_name])
    name = f"{backbone}@{revision}"
    models._REGISTRY[name] = (module_name, ctor, kwargs)
    defaults.MIN_INPUT_SIZE[name] = defaults.MIN_INPUT_SIZE[backbone]
    return name


def compare(backbone: str, kind: str, base_name: str, mesh) -> None:
    size = ts._FIXED_INPUT.value if kind == "bilinear" else ts._LEARNED_INPUT.value
    variants = []
    for name in (base_name, backbone):
        start = time.time()
        variant = ts.Variant(ts.make_config(name, kind, size), mesh, seed=0)
        c = variant.op_counts
        print(
            f"| {name} | {kind} | {variant.temp_bytes / 1e6:.0f} | {c['copy']} | "
            f"{c['transpose']} | {c['reduce']} | {c['reduce-window']} | "
            f"{time.time() - start:.0f} |",
            flush=True,
        )
        variants.append(variant)
    if ts._TIME.value:
        wall, cpu, _ = ts.time_interleaved(variants)
        print(
            f"{backbone} {kind}: wall {wall[0] * 1e3:.0f} -> {wall[1] * 1e3:.0f} ms "
            f"(x{wall[1] / wall[0]:.3f}), CPU {cpu[0] * 1e3:.0f} -> {cpu[1] * 1e3:.0f} ms "
            f"(x{cpu[1] / cpu[0]:.3f})",
            flush=True,
        )


def main(argv):
    del argv
    if not _BASE.value:
        raise SystemExit("error: pass --base=<git revision> (e.g. --base=main)")
    allocator.reexec_under(ts._ALLOCATOR.value)
    mesh = mesh_lib.create_mesh()
    print(
        "| model | resizer | temp MB | copies | transposes | reduces | reduce-windows | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        for backbone in ts._BACKBONES.value:
            base_name = register_base(backbone, _BASE.value, pathlib.Path(directory))
            for kind in _KINDS.value:
                compare(backbone, kind, base_name, mesh)


if __name__ == "__main__":
    app.run(main)
