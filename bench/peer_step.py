r"""Our ResNet-50 training step next to flax's examples/imagenet one, compiled and timed alike.

    git --git-dir=FLAX_GIT_DIR archive HEAD examples/imagenet | tar -x -C /tmp/flaxpeer
    python bench/peer_step.py --flax_examples=/tmp/flaxpeer/examples
    python bench/peer_step.py --flax_examples=/tmp/flaxpeer/examples --notime   # counts only

The peer is flax's own ImageNet example (`examples/imagenet/train.py`, `models.py`,
`configs/default.py`), imported from the checkout at `--flax_examples` (its parent
directory or `imagenet/` itself; nothing of it is copied here): `train.train_step`
on `models.ResNet50`, f32, under `jax.pmap` as its `train_and_evaluate` runs it
(state unreplicated, batch split over the local devices), with its SGD + Nesterov,
warm-up + cosine schedule and L2 penalty. Imports it needs only for its input
pipeline and logging (`tensorflow`, `clu`) are replaced by empty modules when they
are not installed. Ours is bench/train_step.py's step for the same backbone behind
the fixed bilinear resize at the same size (the identity), i.e. `steps.Steps.train_step`.

Both steps take the same batch size and image size. Two differences in what they are
given: the peer's images are float32, already normalised by its input pipeline, ours
uint8, normalised inside the step; our state is donated, the peer's is not.

It prints, for both compiled steps (`learned_resize/runtime/compiled_stats.py`; independent
of the machine's load): XLA's FLOPs of the whole step, the temporary, argument and
output memory, and the copy, transpose, reduce and reduce-window instructions of
the optimised HLO; then, unless `--notime`, the median wall and CPU time of
`--repeats` steps run interleaved (peer, ours, peer, ours, ...) after `--warmup`
untimed ones, and the ratios ours / peer. Flags shared with bench/train_step.py:
`--batch`, `--fixed_input` (the image size), `--repeats`, `--warmup`, `--allocator`,
`--time`. `--nograd_norm` compiles ours without its `grad_norm` metric (a norm over
every gradient; XLA:CPU splits the large sums into a reduce-window and a reduce).
"""

import functools
import importlib
import importlib.util
import os
import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import train_step as ts  # noqa: E402  (the sibling benchmark; defines the shared flags)

from learned_resize.runtime import allocator as allocator_lib
from learned_resize.runtime import compiled_stats  # noqa: E402
from learned_resize.runtime import mesh as mesh_lib

_FLAX_EXAMPLES = flags.DEFINE_string(
    "flax_examples",
    "/tmp/flaxpeer/examples",
    "flax's examples/ directory (or examples/imagenet) of a flax checkout.",
)

_GRAD_NORM = flags.DEFINE_bool(
    "grad_norm",
    True,
    "Keep our step's grad_norm metric; --nograd_norm compiles ours with optax.global_norm "
    "replaced by a constant (the peer computes no such metric).",
)

# Imported at the top of the example's train.py / input_pipeline.py, used only by its
# input pipeline, checkpointing hooks and metric writer, none of which runs here.
_OPTIONAL_IMPORTS = ("tensorflow", "clu", "clu.metric_writers", "clu.periodic_actions")
# Installed modules the example imports that look for tensorflow when they are imported
# (flax.io asks importlib whether it is installed): imported before the stand-ins exist.
_IMPORTED_FIRST = ("flax.io", "flax.training.checkpoints", "tensorflow_datasets")


def imagenet_dir(path: str) -> pathlib.Path | None:
    """The example's directory under `path`, or None when there is none."""
    for candidate in (pathlib.Path(path), pathlib.Path(path) / "imagenet"):
        if (candidate / "train.py").is_file() and (candidate / "models.py").is_file():
            return candidate
    return None


class _StandIn(types.ModuleType):
    """An empty module whose every attribute is another stand-in (`tf.float32` as a default)."""

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _StandIn(f"{self.__name__}.{attr}")


def stub_missing_modules(names=_OPTIONAL_IMPORTS) -> list[str]:
    """Empty modules for those of `names` that do not import; returns the stubbed names."""
    for name in _IMPORTED_FIRST:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    stubbed = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            module = _StandIn(name, "Empty stand-in made by bench/peer_step.py.")
            sys.modules[name] = module
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)
            stubbed.append(name)
    return stubbed


def import_peer(directory: pathlib.Path):
    """(train, models, default config) modules of the example, imported from `directory`."""
    sys.path.insert(0, str(directory))
    try:
        flax_train = importlib.import_module("train")
        flax_models = importlib.import_module("models")
    finally:
        sys.path.remove(str(directory))
    spec = importlib.util.spec_from_file_location(
        "flax_imagenet_default_config", directory / "configs" / "default.py"
    )
    config_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config_module)
    return flax_train, flax_models, config_module.get_config()


class PeerVariant:
    """flax examples/imagenet's compiled ResNet-50 train step, its state and a fixed batch."""

    def __init__(self, flax_train, flax_models, config, batch_size: int, size: int, seed: int):
        config.batch_size = batch_size
        config.half_precision = False
        model = flax_train.create_model(model_cls=flax_models.ResNet50, half_precision=False)
        base_lr = config.learning_rate * batch_size / 256.0
        learning_rate_fn = flax_train.create_learning_rate_fn(config, base_lr, 100)
        self.state = flax_train.create_train_state(
            jax.random.key(0), config, model, size, learning_rate_fn
        )
        devices = jax.local_device_count()
        rng = np.random.default_rng(seed)
        split = (devices, batch_size // devices)  # as its prepare_tf_data hands batches over
        self.batch = {
            "image": rng.standard_normal((*split, size, size, 3), np.float32),
            "label": rng.integers(0, 1000, split).astype(np.int32),
        }
        p_train_step = jax.pmap(  # as in its train_and_evaluate
            functools.partial(flax_train.train_step, learning_rate_fn=learning_rate_fn),
            in_axes=(None, 0),
            out_axes=(None, 0),
            axis_name="batch",
        )
        self.step = p_train_step.lower(self.state, self.batch).compile()
        self.stats = compiled_stats.summary(self.step)

    def run(self):
        self.state, metrics = self.step(self.state, self.batch)
        jax.block_until_ready(metrics["loss"])


_ROWS = (
    ("XLA GFLOP / step", lambda s: s["flops"] / 1e9, ".1f"),
    ("temp MB", lambda s: s["temp_bytes"] / 1e6, ".0f"),
    ("argument MB", lambda s: s["argument_bytes"] / 1e6, ".0f"),
    ("output MB", lambda s: s["output_bytes"] / 1e6, ".0f"),
    *((f"{op} instructions", lambda s, op=op: s[op], "d") for op in compiled_stats.COUNTED_OPS),
)


def row(name, peer, ours, fmt) -> str:
    ratio = f"x{ours / peer:.2f}" if peer else "-"
    return f"| {name} | {peer:{fmt}} | {ours:{fmt}} | {ratio} |"


def main(argv):
    del argv
    directory = imagenet_dir(_FLAX_EXAMPLES.value)
    if directory is None:
        print(
            f"No flax examples/imagenet checkout at --flax_examples={_FLAX_EXAMPLES.value} "
            "(it needs train.py and models.py); nothing to compare. Get one with "
            "`git clone https://github.com/google/flax` and pass "
            "--flax_examples=flax/examples."
        )
        return
    allocator_lib.reexec_under(ts._ALLOCATOR.value)
    stubbed = stub_missing_modules()
    flax_train, flax_models, config = import_peer(directory)
    batch, size = ts._BATCH.value, ts._FIXED_INPUT.value
    if ts._DTYPE.value != "float32":
        raise SystemExit("peer_step compares float32 steps (the example's default).")

    peer = PeerVariant(flax_train, flax_models, config, batch, size, seed=0)
    mesh = mesh_lib.create_mesh()
    our_config = ts.make_config("resnet50", "bilinear", size)
    our_config.resizer.output_size = (size, size)  # the identity, as in the peer's step
    real_global_norm = optax.global_norm
    if not _GRAD_NORM.value:
        optax.global_norm = lambda tree: jnp.zeros((), jnp.float32)
    try:
        ours = ts.Variant(our_config, mesh, seed=0)
    finally:
        optax.global_norm = real_global_norm

    device = jax.devices()[0]
    print(
        f"jax {jax.__version__} on {jax.device_count()} x {device.platform}; "
        f"{allocator_lib.loaded_allocator()} malloc; ResNet-50 train step, batch {batch}, "
        f"{size}x{size}, float32; peer: {os.path.abspath(directory)}"
        + ("" if _GRAD_NORM.value else "; ours without its grad_norm metric")
        + (f" (stubbed imports: {', '.join(stubbed)})" if stubbed else "")
    )
    print("| | peer (flax examples/imagenet) | ours (steps.Steps) | ours / peer |")
    print("|---|---|---|---|")
    for name, get, fmt in _ROWS:
        print(row(name, get(peer.stats), get(ours.stats), fmt), flush=True)
    if ts._TIME.value:
        wall, cpu, _ = ts.time_interleaved((peer, ours))
        print(row("step wall ms (median)", wall[0] * 1e3, wall[1] * 1e3, ".0f"))
        print(row("step CPU ms (median)", cpu[0] * 1e3, cpu[1] * 1e3, ".0f"))
        print(
            f"(median of {ts._REPEATS.value} interleaved steps each after "
            f"{ts._WARMUP.value} warm-up steps; load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
