r"""Is this accelerator ready and fast? The doctor, a learning check, ResNet-50's step, a retarget.

    python -m learned_resize.tools.device_check [--out=device_check.json]
    python -m learned_resize.tools.device_check --smoke      # tiny sizes, seconds on a CPU

On whatever `jax.devices()` gives (every device of this process, the batch split over
them), one row per check, printed as one table and written as JSON to `--out`:

  doctor      `learned_resize.tools.doctor.run_checks`: OK when every line is; without
              tensorflow-datasets the dataset lines are left out (and named).
  learning    `configs/default.py`'s `learned` stage (small CNN behind a learned resizer
              28x28 -> 8x8) trained from scratch through `learned_resize.steps.Steps` for
              `--train_steps` steps on in-memory Fashion-MNIST (the idx files of Debian's
              `dataset-fashion-mnist`; separable synthetic images when they are absent),
              then evaluated on held-out images (`learning_check.py`): OK when the loss
              fell and top-1 is at least chance + 0.25. No input pipeline, so grain and
              TFDS are not needed.
  resnet50    the `learned` stage of `configs/imagenet.py:resnet50` (resizer 448 -> 224,
              ResNet-50, bf16 compute): the trainer's train step on a fixed random uint8
              batch, at the largest batch that fits (from `--start_batch`, halved on
              RESOURCE_EXHAUSTED; `step_speed.py`). images/s, XLA's FLOPs of the step and
              MFU against the chip's peak dense bf16 FLOP/s (`chips.py`; unknown chips get
              the achieved FLOP/s only). XLA counts the FLOPs of the program one device
              runs, so MFU is per-chip FLOP/s over the per-chip peak.
  retarget    `learned_resize.retarget.api.retarget` of scikit-image's astronaut at
              `--photo_px` to 3/4 of its width with the default settings: the first call
              (compiles included) and a second one. Needs the VGG weight cache.

Rows that need a package which is missing (ml-collections, scikit-image) or the VGG
weights say so and are skipped; nothing is imported from tensorflow-datasets, grain,
array-record or tensorboardX, so a host with only jax, flax, optax and orbax runs it.
Exit status 0 when every row is OK or skipped, 2 when a check failed, 1 for bad flags
(one `error:` line before anything runs). `--smoke`: ResNet-50 at 64 -> 32 px, batch 2,
20 training steps, a 64-px photo; what tests/tools/test_device_check.py runs.
"""

import dataclasses
import importlib
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

from learned_resize.runtime import cli
from learned_resize.tools import learning_check, step_speed

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO, "configs")  # the checkout's config files

CHECKS = ("doctor", "learning", "resnet50", "retarget")  # the rows, in order
LEARNING_MARGIN = 0.25  # top-1 must beat chance (1 / classes) by this much
ML_COLLECTIONS = "ml-collections~=1.0"  # configs, Steps and retargeting need it


@dataclasses.dataclass
class Row:
    """One line of the table: status is ok, fail, fix (the doctor's) or skipped."""

    name: str
    status: str
    summary: str
    values: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Missing(Exception):  # noqa: N818  (a reason to skip a row, not an error)
    """A package, file or weight the row needs is absent; the message says what to do."""


def _require(module: str, package: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise Missing(f"needs {package}: pip install '{package}'") from None


def _load_config(name: str, arg: str = ""):
    """`get_config(arg)` of configs/NAME.py in the checkout."""
    _require("ml_collections", ML_COLLECTIONS)
    path = os.path.join(CONFIG_DIR, name)
    if not os.path.isfile(path):
        raise Missing(f"{path} not found: run from a checkout of the project")
    return cli.load_config(f"{path}:{arg}" if arg else path)


def _stage(config, name: str):
    """The config of stage `name` as the trainer runs it (its overrides applied)."""
    from learned_resize.config import stages

    for stage, _, stage_config in stages.stage_configs(config, workdir="unused"):
        if stage == name:
            return stage_config
    raise KeyError(name)


# ------------------------------------------------------------------------------ doctor


def check_doctor() -> Row:
    from learned_resize.tools import doctor

    left_out = ""
    try:
        checks = doctor.run_checks()
    except ImportError as e:  # the dataset checks import tensorflow-datasets
        import jax
        from jax._src import hardware_utils

        local = jax.local_devices()
        tpu_chips, _ = hardware_utils.num_available_tpu_chips_and_device_id()
        checks = [
            doctor.check_platform(local, hardware_utils.has_visible_nvidia_gpu(), tpu_chips),
            doctor.check_processes(
                jax.process_index(), jax.process_count(), len(local), jax.device_count()
            ),
            doctor.check_memory(local),
            doctor.check_versions(local[0].client.platform_version.strip() or local[0].platform),
            doctor.check_allocator(local[0].platform),
            doctor.check_weights(None),
        ]
        left_out = f"; dataset checks left out ({e.name or e} not installed)"
    fixes = [c for c in checks if not c.ok]
    summary = f"{len(checks) - len(fixes)} of {len(checks)} OK" + left_out
    if fixes:
        summary += "; to fix: " + ", ".join(c.name for c in fixes)
    lines = [c.line() for c in checks]
    return Row("doctor", "fix" if fixes else "ok", summary, {"lines": lines})


# ---------------------------------------------------------------------------- learning


def check_learning(num_steps: int, eval_images: int) -> Row:
    _require("ml_collections", ML_COLLECTIONS)  # learned_resize.steps imports it
    import jax

    config = _stage(_load_config("default.py"), "learned")
    devices = jax.device_count()
    with config.unlocked():
        config.init_from.path = ""  # from scratch: nothing to restore
        config.batch_size = max(devices, config.batch_size // devices * devices)  # split evenly
    learned, values, summary = learning_check.run(config, num_steps, eval_images, LEARNING_MARGIN)
    return Row("learning", "ok" if learned else "fail", summary, values)


# ---------------------------------------------------------------------------- resnet50


def resnet50_config(batch: int, input_px: int | None = None, output_px: int | None = None):
    """The `learned` stage of configs/imagenet.py:resnet50 at `batch` (bf16 compute);
    `input_px` / `output_px` shrink it (--smoke)."""
    config = _stage(_load_config("imagenet.py", "resnet50"), "learned")
    with config.unlocked():
        config.init_from.path = ""
        config.batch_size = batch
        config.model.dtype = "bfloat16"
        if input_px:
            config.input_size = (input_px, input_px)
        if output_px:
            config.resizer.output_size = (output_px, output_px)
    return config


def check_resnet50(start_batch: int, steps: int, input_px=None, output_px=None) -> Row:
    _require("ml_collections", ML_COLLECTIONS)
    values, summary = step_speed.measure(
        lambda batch: resnet50_config(batch, input_px, output_px), start_batch, steps
    )
    return Row("resnet50", "ok", summary, values)


# ---------------------------------------------------------------------------- retarget


def astronaut(px: int) -> np.ndarray:
    """scikit-image's astronaut (512x512) resized to px x px, uint8 RGB."""
    _require("skimage", "scikit-image")
    import PIL.Image
    import skimage.data

    photo = PIL.Image.fromarray(skimage.data.astronaut())
    if photo.size != (px, px):
        photo = photo.resize((px, px), PIL.Image.Resampling.LANCZOS)
    return np.asarray(photo)


def check_retarget(px: int) -> Row:
    _require("ml_collections", ML_COLLECTIONS)
    from learned_resize.retarget import weights

    missing = [weights.cache_path(d) for d in (19, 16) if not weights.cache_path(d).is_file()]
    if missing:
        raise Missing(f"VGG weights missing ({missing[0]}): {weights.FETCH_COMMAND}")
    image = astronaut(px)
    import jax

    from learned_resize.retarget import api

    size = (px, px * 3 // 4)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        out = api.retarget(image, size, log=None)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
    values = {
        "input": [px, px],
        "output": list(out.shape[:2]),
        "first_seconds": times[0],
        "second_seconds": times[1],
    }
    summary = (
        f"astronaut {px}x{px} -> {size[1]}x{size[0]} (width x height): "
        f"{times[0]:.2f} s first call (compiles), {times[1]:.2f} s second"
    )
    return Row("retarget", "ok", summary, values)


# -------------------------------------------------------------------------------- main


def run_row(name: str, fn, *args) -> Row:
    """fn(*args) timed; a missing prerequisite is a skipped row, any other error a failed one."""
    start = time.perf_counter()
    try:
        row = fn(*args)
    except Missing as e:
        row = Row(name, "skipped", str(e))
    except Exception as e:  # one check failing must not hide the others
        text = " ".join(str(e).split())[:300]
        row = Row(name, "fail", f"{type(e).__name__}: {text}")
    row.seconds = time.perf_counter() - start
    print(f"{row.name}: {row.status} ({row.seconds:.1f} s)", flush=True)
    return row


def table(rows: list[Row]) -> str:
    lines = ["| check | status | seconds | result |", "|---|---|---:|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.summary} |" for r in rows]
    return "\n".join(lines)


def define_flags(values: flags.FlagValues = flags.FLAGS) -> dict:
    """The command line's flags (defined only when run as a program, or by a test)."""
    define = dict(flag_values=values)
    return dict(
        out=flags.DEFINE_string("out", "device_check.json", "Where to write the JSON.", **define),
        smoke=flags.DEFINE_bool(
            "smoke", False, "Tiny sizes (seconds on a CPU): see the docstring.", **define
        ),
        train_steps=flags.DEFINE_integer(
            "train_steps", None, "Learning-check steps (default 300; 20 with --smoke).", **define
        ),
        start_batch=flags.DEFINE_integer(
            "start_batch",
            None,
            "ResNet-50 global batch to try first, halved until it fits "
            "(default 256 per device; 2 with --smoke).",
            **define,
        ),
        timed_steps=flags.DEFINE_integer(
            "timed_steps", None, "ResNet-50 steps timed (default 20; 3 with --smoke).", **define
        ),
        checks=flags.DEFINE_list(
            "checks", list(CHECKS), f"Rows to run, some of {','.join(CHECKS)}.", **define
        ),
        photo_px=flags.DEFINE_integer(
            "photo_px",
            None,
            "Side of the retargeted photo (default 512; 64 with --smoke).",
            **define,
        ),
    )


def _settings(flag: dict) -> dict:
    """Flag values with the defaults of the mode filled in; UsageError for bad ones."""
    smoke = flag["smoke"].value
    chosen = lambda name, full, tiny: (
        flag[name].value if flag[name].value is not None else (tiny if smoke else full)
    )
    settings = {
        "train_steps": chosen("train_steps", 300, 20),
        "start_batch": chosen("start_batch", 0, 2),  # 0: 256 per device
        "timed_steps": chosen("timed_steps", 20, 3),
        "photo_px": chosen("photo_px", 512, 64),
    }
    unknown = sorted(set(flag["checks"].value) - set(CHECKS))
    if unknown or not flag["checks"].value:
        raise app.UsageError(f"--checks takes some of {','.join(CHECKS)}, got {unknown or 'none'}.")
    minimum = {"train_steps": 1, "start_batch": 0, "timed_steps": 1, "photo_px": 32}
    for name, low in minimum.items():
        if settings[name] < low:
            raise app.UsageError(f"--{name} must be at least {low}, got {settings[name]}.")
    out_dir = os.path.dirname(os.path.abspath(flag["out"].value))
    if not os.path.isdir(out_dir):
        raise app.UsageError(f"--out={flag['out'].value}: directory {out_dir} does not exist.")
    if os.path.isdir(flag["out"].value):
        raise app.UsageError(f"--out={flag['out'].value} is a directory; give a file name.")
    return settings


def main(argv: list[str], flag: dict) -> int:
    if len(argv) > 1:
        print(
            f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.",
            file=sys.stderr,
        )
        return 1
    try:
        settings = _settings(flag)
    except app.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    import jax

    smoke = flag["smoke"].value
    device = jax.devices()[0]
    header = (
        f"jax {jax.__version__} on {jax.device_count()} x {device.platform} "
        f"({device.device_kind}){'; --smoke sizes' if smoke else ''}"
    )
    print(header, flush=True)
    if device.platform == "cpu" and not smoke:
        print("note: no accelerator; full sizes take long on a CPU (--smoke: tiny ones)")
    start_batch = settings["start_batch"] or 256 * jax.device_count()
    sizes = (64, 32) if smoke else (None, None)
    calls = {
        "doctor": (check_doctor,),
        "learning": (check_learning, settings["train_steps"], 2048 if smoke else 10_000),
        "resnet50": (check_resnet50, start_batch, settings["timed_steps"], *sizes),
        "retarget": (check_retarget, settings["photo_px"]),
    }
    rows = [run_row(name, *calls[name]) for name in CHECKS if name in flag["checks"].value]
    print(header)
    print(table(rows))
    report = {
        "jax": jax.__version__,
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "smoke": smoke,
        "rows": [r.as_dict() for r in rows],
    }
    with open(flag["out"].value, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {flag['out'].value}", flush=True)
    return 2 if any(r.status == "fail" for r in rows) else 0


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    cli.run_tool(define_flags, main)


if __name__ == "__main__":
    console()
