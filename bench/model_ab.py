r"""A backbone's training step from an older commit's model file against this tree's, interleaved.

    python bench/model_ab.py --base=8ee268c --backbones=resnet50 --kinds=bilinear
    python bench/model_ab.py --base=8ee268c --backbones=resnet50 --kinds=learned --repeats=3
    python bench/model_ab.py --base=1faa35b --part=resizer --backbones=resnet50 --kinds=learned

For each backbone and resizer kind it builds bench/train_step.py's variant (the
trainer's real step) twice in one process: once with the backbone's module as it
was at `--base` (read with `git show`, imported under another name) and once as
it is now. It prints the compiled programs' counts (temp memory, copies,
transposes, reductions) and, unless `--notime`, the median wall and CPU time of
interleaved steps with their ratio (now / base). Modules the old file imports from
the package are today's. `--part=resizer` compares `models/resizers.py` instead (the
learned resizer at `--base` in front of today's backbone).
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
from learned_resize.models import resizers
from learned_resize.runtime import allocator  # noqa: E402
from learned_resize.runtime import mesh as mesh_lib

_BASE = flags.DEFINE_string("base", None, "Git revision whose model files are the baseline.")
_KINDS = flags.DEFINE_list("kinds", ["bilinear"], "Resizer kinds: bilinear and/or learned.")
_PART = flags.DEFINE_enum(
    "part", "backbone", ["backbone", "resizer"], "Which model file is taken from --base."
)


def _module_at(revision: str, file: str, module_name: str, directory: pathlib.Path):
    """The module `file` (a path in the repository) as it was at `revision`."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{file}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=pathlib.Path(__file__).parent,
    ).stdout
    target = directory / f"{module_name}.py"
    target.write_text(source)
    spec = importlib.util.spec_from_file_location(module_name, target)
    sys.modules[module_name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[module_name])
    return sys.modules[module_name]


def register_base(backbone: str, revision: str, directory: pathlib.Path) -> str:
    """Registers `backbone` as built by its module at `revision`; returns the new name."""
    path, ctor, kwargs = models._REGISTRY[backbone]
    module_name = f"{path.split('.')[-1]}_at_{revision}"
    _module_at(revision, path.replace(".", "/") + ".py", module_name, directory)
    name = f"{backbone}@{revision}"
    models._REGISTRY[name] = (module_name, ctor, kwargs)
    defaults.MIN_INPUT_SIZE[name] = defaults.MIN_INPUT_SIZE[backbone]
    return name


def compare(backbone: str, kind: str, base_name: str, mesh, base_resizer=None) -> None:
    """base_name's step against backbone's; with base_resizer (a LearnedResizer class),
    the base step's learned resizer is that one."""
    size = ts._FIXED_INPUT.value if kind == "bilinear" else ts._LEARNED_INPUT.value
    variants = []
    today = resizers.LearnedResizer
    for name, resizer_cls in ((base_name, base_resizer or today), (backbone, today)):
        start = time.time()
        resizers.LearnedResizer = resizer_cls  # make_resizer builds this class
        try:
            variant = ts.Variant(ts.make_config(name, kind, size), mesh, seed=0)
        finally:
            resizers.LearnedResizer = today
        if resizer_cls is not today:
            name = f"{name} with resizers.py@{_BASE.value}"
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
        base_resizer = None
        if _PART.value == "resizer":
            module = _module_at(
                _BASE.value,
                "learned_resize/models/resizers.py",
                "resizers_at_base",
                pathlib.Path(directory),
            )
            base_resizer = module.LearnedResizer
        for backbone in ts._BACKBONES.value:
            if _PART.value == "resizer":
                base_name = backbone
            else:
                base_name = register_base(backbone, _BASE.value, pathlib.Path(directory))
            for kind in _KINDS.value:
                compare(backbone, kind, base_name, mesh, base_resizer)


if __name__ == "__main__":
    app.run(main)
