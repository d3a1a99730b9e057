r"""Training-step cost of the learned resizer next to its FLOP cost, per backbone.

    python bench/train_step.py --backbones=resnet50            # the issue's goal case
    python bench/train_step.py                                 # the paper's backbones
    python bench/train_step.py --backbones=small_cnn --channels=1 --num_classes=10 \
        --batch=128 --fixed_input=28 --learned_input=28 --output=8   # configs/default.py
    python bench/train_step.py --backbones=mobilenet_v2 --batch=2 --fixed_input=64 \
        --learned_input=128 --output=64 --notime                 # a small, quick check

For each backbone it builds the trainer's real step (`steps.Steps.train_step`:
uint8 batch -> normalise -> resizer -> backbone -> loss -> grads -> SGD update,
state donated) twice: behind the fixed bilinear resizer fed `--fixed_input`
images (224 -> 224 by default, i.e. the standard pipeline, where the resize is
the identity) and behind the learned resizer fed `--learned_input` images
(448 -> 224). The two steps run interleaved (A, B, A, B, ...) so that load on a
shared machine hits both alike; the table shows the median step time of each,
its median CPU time (all the process's threads; steadier than wall time when
other processes share the cores), images/s, XLA's memory estimate of the
compiled step, XLA's forward FLOPs per image, and the learned resizer's time
and FLOP overheads over the fixed one with their ratio (time overhead / FLOP
overhead; 1.0 means the resizer's FLOPs cost as much time as the backbone's),
and the minor page faults per step. It also
reads the compiled step itself (`learned_resize/runtime/compiled_stats.py`), which does
not depend on the machine's load: XLA's FLOPs of the whole step (forward, backward,
update), its temporary, argument and output memory, and the number of copy,
transpose, reduce and reduce-window instructions in the optimised HLO (fusions
included), i.e. the memory traffic the program does besides the model's
arithmetic; `--notime` prints only these columns (a change's effect is judged by
what it removes). `bench/peer_step.py` prints the same columns for flax's
examples/imagenet ResNet-50 step next to ours. XLA:CPU's FLOP count of a depthwise
convolution's kernel gradient is about the channel count times its multiply-adds
(a 3x3 layer of 144 channels at 56x56, batch 8: 0.065 GFLOP forward, 9.1 for the
kernel gradient), so the step GFLOP of MobileNet-v2 and EfficientNet-B0 are far
above 3 x forward. Works
unchanged on CPU, GPU and TPU (the batch is split over every device; it must be
divisible by the device count).

`--allocator` picks the host malloc (see learned_resize/allocator_lib.py; it
matters on CPU, where XLA's buffers are host memory): `tcmalloc` (the default, as
for the trainer), `system` (glibc), or `both`: the same measurement once under each,
in two child processes, one table.
"""

import resource
import subprocess
import sys
import time

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from learned_resize import models
from learned_resize import steps as steps_lib
from learned_resize.config import defaults
from learned_resize.runtime import allocator as allocator_lib
from learned_resize.runtime import compiled_stats
from learned_resize.runtime import mesh as mesh_lib
from learned_resize.tools.flops import xla_flops

# The backbones of configs/imagenet.py's table (`models.available_classifiers()` has more).
PAPER_BACKBONES = (
    "resnet50", "mobilenet_v2", "efficientnet_b0", "inception_v2", "densenet121",
)  # fmt: skip
_BACKBONES = flags.DEFINE_list(
    "backbones", list(PAPER_BACKBONES), "Backbones to measure (names from the model registry)."
)
_BATCH = flags.DEFINE_integer("batch", 8, "Global batch size.")
_FIXED_INPUT = flags.DEFINE_integer("fixed_input", 224, "Input size of the fixed-resizer step.")
_LEARNED_INPUT = flags.DEFINE_integer("learned_input", 448, "Input size of the learned step.")
_OUTPUT = flags.DEFINE_integer("output", 224, "Resizer output size = backbone input size.")
_CHANNELS = flags.DEFINE_integer("channels", 3, "Image channels.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classes of the backbone's head.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps of each variant (median).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps of each variant after compiling.")
_ALLOCATOR = flags.DEFINE_enum(
    "allocator", "tcmalloc", ["tcmalloc", "system", "both"], "Host malloc (see the docstring)."
)
_TIME = flags.DEFINE_bool(
    "time", True, "Time the steps; --notime prints only the compiled-program columns."
)
_HEADER = flags.DEFINE_bool("header", True, "Print the header lines (off in --allocator=both).")


def make_config(backbone: str, resizer_kind: str, input_size: int):
    """A complete trainer config for one variant (no data is read)."""
    config = defaults.base_config()
    config.data.channels = _CHANNELS.value
    config.data.num_classes = _NUM_CLASSES.value
    config.data.mean = (0.5,) * _CHANNELS.value
    config.data.std = (0.25,) * _CHANNELS.value
    config.input_size = (input_size, input_size)
    config.resizer.kind = resizer_kind
    config.resizer.output_size = (_OUTPUT.value, _OUTPUT.value)
    config.model.name = backbone
    config.model.dtype = _DTYPE.value
    config.batch_size = _BATCH.value
    config.num_train_steps = 1000
    config.optim.weight_decay = 1e-4
    return config


class Variant:
    """One compiled training step with its own state and a fixed random batch."""

    def __init__(self, config, mesh, seed: int):
        trainer = steps_lib.Steps(config, mesh, steps_per_epoch=100, num_steps=1000)
        self.state, self.rest = trainer.init(jax.random.key(0))
        size = tuple(config.input_size)
        rng = np.random.default_rng(seed)
        batch = {
            "image": rng.integers(0, 256, (config.batch_size, *size, _CHANNELS.value), np.uint8),
            "label": rng.integers(0, config.data.num_classes, config.batch_size, np.int32),
            "skipped": np.zeros(config.batch_size, np.int32),
        }
        self.batch = mesh_lib.global_batch(batch, mesh)
        self.step = trainer.train_step.lower(self.state, self.batch, self.rest).compile()
        self.stats = compiled_stats.summary(self.step)
        self.temp_bytes = self.stats["temp_bytes"]
        self.op_counts = {op: self.stats[op] for op in compiled_stats.COUNTED_OPS}
        self.memory_bytes = (
            self.stats["argument_bytes"]
            + self.stats["output_bytes"]
            - self.stats["alias_bytes"]
            + self.stats["temp_bytes"]
        )

        def forward(params, stats, rest, images):
            model = nnx.merge(trainer.graphdef, params, stats, rest)
            return model(images, train=False)

        state, images = self.state, self.batch["image"]
        forward_flops = xla_flops(forward, state["params"], state["batch_stats"], self.rest, images)
        self.forward_flops = forward_flops / config.batch_size

    def run(self):
        self.state, metrics = self.step(self.state, self.batch, self.rest)
        jax.block_until_ready(metrics["loss"])


def time_interleaved(variants) -> tuple[list, list, list]:
    """Per variant, run A, B, A, B: median wall and CPU seconds per step, minor faults per step.

    CPU time (all of the process's threads) is the steadier of the two on a shared
    machine, where other processes stretch the wall time of whichever step they hit.
    """
    for variant in variants:
        for _ in range(_WARMUP.value):
            variant.run()
    times, cpu = [[] for _ in variants], [[] for _ in variants]
    faults = [0 for _ in variants]
    for _ in range(_REPEATS.value):
        for i, variant in enumerate(variants):
            faults[i] -= resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start, cpu_start = time.perf_counter(), time.process_time()
            variant.run()
            times[i].append(time.perf_counter() - start)
            cpu[i].append(time.process_time() - cpu_start)
            faults[i] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    medians = lambda samples: [float(np.median(s)) for s in samples]
    return medians(times), medians(cpu), [f / _REPEATS.value for f in faults]


def measure(backbone: str, mesh) -> dict:
    fixed = Variant(make_config(backbone, "bilinear", _FIXED_INPUT.value), mesh, seed=0)
    learned = Variant(make_config(backbone, "learned", _LEARNED_INPUT.value), mesh, seed=1)
    variants = (fixed, learned)
    if _TIME.value:
        (t_fixed, t_learned), cpu, faults = time_interleaved(variants)
    else:
        (t_fixed, t_learned), cpu, faults = (float("nan"),) * 2, (float("nan"),) * 2, (None, None)
    time_overhead = t_learned / t_fixed - 1
    flop_overhead = learned.forward_flops / fixed.forward_flops - 1
    return {
        "backbone": backbone,
        "allocator": allocator_lib.loaded_allocator(),
        "faults": tuple(faults),
        "ms": (t_fixed * 1e3, t_learned * 1e3),
        "cpu_ms": (cpu[0] * 1e3, cpu[1] * 1e3),
        "images_per_s": (_BATCH.value / t_fixed, _BATCH.value / t_learned),
        "memory_mb": (fixed.memory_bytes / 1e6, learned.memory_bytes / 1e6),
        "temp_mb": (fixed.temp_bytes / 1e6, learned.temp_bytes / 1e6),
        "args_mb": (fixed.stats["argument_bytes"] / 1e6, learned.stats["argument_bytes"] / 1e6),
        "out_mb": (fixed.stats["output_bytes"] / 1e6, learned.stats["output_bytes"] / 1e6),
        "step_gflop": (fixed.stats["flops"] / 1e9, learned.stats["flops"] / 1e9),
        "ops": (fixed.op_counts, learned.op_counts),
        "gflop": (fixed.forward_flops / 1e9, learned.forward_flops / 1e9),
        "time_overhead": time_overhead,
        "flop_overhead": flop_overhead,
        "ratio": time_overhead / flop_overhead if flop_overhead else float("nan"),
    }


_COLUMNS = (
    "backbone", "malloc", "step ms (fixed / learned)", "CPU ms/step", "images/s", "step memory MB",
    "temp MB", "args MB", "out MB", "step GFLOP", "copies", "transposes", "reduces",
    "reduce-windows", "page faults/step",
    "fwd GFLOP/image", "time overhead", "FLOP overhead", "ratio",
)  # fmt: skip


def format_row(r: dict) -> str:
    pair = lambda v, f: "-" if v[0] is None else f"{v[0]:{f}} / {v[1]:{f}}"
    cells = (
        r["backbone"],
        r["allocator"],
        pair(r["ms"], ".0f"),
        pair(r["cpu_ms"], ".0f"),
        pair(r["images_per_s"], ".1f"),
        pair(r["memory_mb"], ".0f"),
        pair(r["temp_mb"], ".0f"),
        pair(r["args_mb"], ".0f"),
        pair(r["out_mb"], ".0f"),
        pair(r["step_gflop"], ".1f"),
        *(f"{r['ops'][0][op]} / {r['ops'][1][op]}" for op in compiled_stats.COUNTED_OPS),
        pair(r["faults"], ".0f"),
        pair(r["gflop"], ".4g"),
        f"{100 * r['time_overhead']:+.1f}%",
        f"{100 * r['flop_overhead']:+.1f}%",
        f"{r['ratio']:.2f}",
    )
    untimed = ("nan", "None")  # --notime: the time columns are empty.
    cells = ["-" if any(u in c for u in untimed) else c for c in cells]
    return "| " + " | ".join(cells) + " |"


def run_under_each_allocator():
    """--allocator=both: this script under glibc's malloc, then under tcmalloc."""
    args = [a for a in sys.argv[1:] if not a.startswith(("--allocator", "--header", "--noheader"))]
    for i, allocator in enumerate(("system", "tcmalloc")):
        header = "--header" if i == 0 else "--noheader"
        command = [sys.executable, __file__, *args, f"--allocator={allocator}", header]
        subprocess.run(command, env=allocator_lib.environment(allocator), check=True)


def main(argv):
    del argv
    if _ALLOCATOR.value == "both":
        run_under_each_allocator()
        return
    allocator_lib.reexec_under(_ALLOCATOR.value)
    if allocator_lib.loaded_allocator() != _ALLOCATOR.value:
        raise SystemExit(
            "--allocator=tcmalloc but tcmalloc is not installed; run launch/install.sh "
            "or pass --allocator=system."
        )
    backbones = _BACKBONES.value
    unknown = set(backbones) - set(models.available_classifiers())
    if unknown:
        raise ValueError(
            f"Unknown --backbones {sorted(unknown)}; use some of {models.available_classifiers()}."
        )
    mesh = mesh_lib.create_mesh()
    if _HEADER.value:
        device = jax.devices()[0]
        print(
            f"jax {jax.__version__} on {jax.device_count()} x {device.platform} "
            f"({device.device_kind}); "
            f"batch {_BATCH.value}, {_DTYPE.value}; fixed bilinear {_FIXED_INPUT.value} -> "
            f"{_OUTPUT.value} vs learned {_LEARNED_INPUT.value} -> {_OUTPUT.value}; "
            f"median of {_REPEATS.value} interleaved steps after {_WARMUP.value} warm-up steps"
        )
        print("| " + " | ".join(_COLUMNS) + " |")
        print("|" + "|".join("---" for _ in _COLUMNS) + "|", flush=True)
    for backbone in backbones:
        try:
            row = format_row(measure(backbone, mesh))
        except Exception as e:  # One backbone failing should not hide the others' rows.
            row = f"| {backbone} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} |"
        print(row, flush=True)


if __name__ == "__main__":
    app.run(main)
