r"""A trained learned resizer as a `jax.export` artifact or an ONNX file, for any input size.

    python -m learned_resize.tools.export --checkpoint=W/learned --out=resizer.jaxexport
    python -m learned_resize.tools.export --checkpoint=W/learned --format=onnx --out=resizer.onnx

writes the artifact (the serialized `jax.export.Exported`, or an ONNX model) and its
settings next to it (`resizer.json`): inference mode, weights embedded. Existing files
are replaced only with `--overwrite`, and the checkpoint's own files (its folder, the
run's config.json) never: the command stops with one `error:` line before it reads
anything. In any JAX program, without this package's training code (only jax and numpy
are imported to load it):

    from learned_resize.tools import export
    resize = export.load("resizer.jaxexport")
    small = resize(images)  # uint8 [N, H, W, C] (0..255) or float in [0, 1], any N, H, W

The function takes images in pixel units, normalises them as the trainer did
(`mean`, `std` in the JSON), applies the resizer and returns float32
`[N, h, w, C]` in [0, 1] units (not clipped: a learned resizer's output is not an
image). Normalise it with the same `mean`/`std` to feed the classifier it was trained
with. Batch, height and width are symbolic (`jax.export.symbolic_shape("batch, height,
width")`): one artifact serves every input size. Its fixed resizes are two matmuls with
weight matrices computed inside the program from the input size
(`resampling.resize_matrix`, entered through `resampling.shape_polymorphic()`), the
same linear map as the trainer's slice plan, which needs a concrete size. The trainer's
own program is untouched. `--input_size=H,W` exports for one fixed size instead, with
the trainer's formulation.

The exported function is the trained `LearnedResizer` module itself in eval mode,
after `resizers.fold_batch_norm` has folded each conv + BatchNorm pair into the conv
(exact in real arithmetic), traced with XLA's own convolutions so that it runs on any
platform.

ONNX (`--format=onnx`, opset 17, dynamic `batch`, `height`, `width`): the graph is
written by `tools/onnx_graph.py` with the `onnx` package's helper API from the folded
weights: `Conv` (each conv + BatchNorm pair as one conv with a bias), `LeakyRelu`, and
each fixed resize as two `MatMul`s whose weight matrices are computed in the graph from
the input's `Shape` with `Range`/integer arithmetic, the same formula as
`resampling.resize_matrix`. The layout is NCHW (ONNX's and PyTorch's): float32 `[N, C,
H, W]` in [0, 1] -> `[N, C, h, w]` in [0, 1] units. ONNX's own `Resize` is not used: its
edge handling and antialiasing are defined differently from jax.image's (which the
trainer used), so matching would be approximate. Why not a converter: jax2onnx 0.17.1
(PyPI) pins orbax-checkpoint < 0.11.37, below the version this package trains with, and
brings two dozen packages (flax plugins, equinox, huggingface-hub, netron); the network
has five kinds of operator, so a direct graph needs only `onnx` and is easy to check
(tests/tools/test_onnx_export.py compares onnxruntime with the JAX artifact).
"""

import contextlib
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

SUFFIX = ".jaxexport"
ONNX_SUFFIX = ".onnx"
FORMATS = ("jax", "onnx")
_SPATIAL = "batch, height, width"


def settings_path(path: str) -> str:
    """The JSON written next to artifact `path` (resizer.jaxexport or .onnx -> resizer.json)."""
    for suffix in (SUFFIX, ONNX_SUFFIX):
        if path.endswith(suffix):
            return path[: -len(suffix)] + ".json"
    return path + ".json"


def load(path: str):
    """Loads an exported resizer; returns `resize(images) -> float32 images in [0, 1]`.

    `resize.settings` holds the JSON settings (the run's input size, output size,
    channels, mean, std, the run's resizer config).
    """
    with open(path, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    with open(settings_path(path)) as f:
        settings = json.load(f)

    def resize(images):
        images = jnp.asarray(images)
        if images.dtype == jnp.uint8:
            images = images.astype(jnp.float32) / 255.0
        return exported.call(images.astype(jnp.float32))

    resize.settings = settings
    resize.exported = exported
    return resize


# ------------------------------------------------------------------------- building


def run_config(checkpoint: str):
    """The config.json a run wrote next to its checkpoints (workdir, checkpoints/ or a step)."""
    import ml_collections

    path = os.path.abspath(checkpoint)
    for candidate in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        file = os.path.join(candidate, "config.json")
        if os.path.isfile(file):
            with open(file) as f:
                return ml_collections.ConfigDict(json.load(f))
    raise FileNotFoundError(
        f"No config.json in {checkpoint} or the two directories above it; give the workdir of "
        "a training run (e.g. W/learned)."
    )


def restore_resizer(checkpoint: str):
    """(LearnedResizer with the checkpoint's weights, the run's config)."""
    from flax import nnx

    from learned_resize.models import resizers
    from learned_resize.runtime import checkpoint_meta, checkpoints

    config = run_config(checkpoint)
    if config.resizer.kind != "learned":
        raise ValueError(
            f"The run at {checkpoint} has a fixed {config.resizer.kind!r} resizer, nothing to "
            "export; point to a run with config.resizer.kind='learned'."
        )
    meta = checkpoint_meta.model_meta(config)
    loaded = checkpoints.load_parts(os.path.abspath(checkpoint), ("resizer",), meta)
    values = {}
    for kind in ("params", "batch_stats"):
        flat = jax.tree_util.tree_flatten_with_path(loaded[kind].get("resizer", {}))[0]
        values.update({_path_key(path): leaf for path, leaf in flat})
    # Shapes only (nothing initialised, nothing compiled); then the checkpoint's values.
    abstract = nnx.eval_shape(
        lambda: resizers.make_resizer(
            config.resizer, in_channels=config.data.channels, rngs=nnx.Rngs(0)
        )
    )
    graphdef, state = nnx.split(abstract)
    flat = [
        (path, var.replace(jnp.asarray(values["/".join(map(str, path))], var.dtype)))
        for path, var in nnx.to_flat_state(state)
    ]
    resizer = nnx.merge(graphdef, nnx.from_flat_state(flat))
    return resizer, config


def _path_key(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _normalisation(config) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray(config.data.mean, np.float32),
        np.asarray(config.data.std, np.float32),
    )


def export_resizer(resizer, config, input_size=None, platforms=("cpu",)):
    """(serialized bytes, settings) of `resizer` behind the run's normalisation.

    Batch, height and width are symbolic unless `input_size` (H, W) fixes the spatial
    size; then the trainer's own resampling formulation is traced.
    """
    from learned_resize.models import resampling, resizers
    from learned_resize.models.cpu import narrow_conv

    mean, std = _normalisation(config)
    folded = resizers.fold_batch_norm(resizer)

    def resize_unit(images):  # float [N, H, W, C] in [0, 1] -> float32 in [0, 1]
        x = (images - mean) / std
        return folded(x, train=False) * std + mean

    channels = int(config.data.channels)
    if input_size:
        (batch,) = jax.export.symbolic_shape("batch")
        spec = jax.ShapeDtypeStruct((batch, *(int(s) for s in input_size), channels), jnp.float32)
        formulation = contextlib.nullcontext()
    else:
        spec = jax.ShapeDtypeStruct((*jax.export.symbolic_shape(_SPATIAL), channels), jnp.float32)
        formulation = resampling.shape_polymorphic()
    # XLA's own convolutions, not the CPU-only forms: the artifact runs on any platform.
    with narrow_conv.use_formulation("xla"), formulation:
        exported = jax.export.export(jax.jit(resize_unit), platforms=platforms)(spec)
    settings = _settings(resizer, config, input_size)
    settings["platforms"] = list(platforms)
    return bytes(exported.serialize()), settings


def _settings(resizer, config, input_size) -> dict:
    mean, std = _normalisation(config)
    return {
        # The run's input size: what its eval preprocessing brought images to.
        "input_size": [int(s) for s in config.input_size],
        "accepts": [int(s) for s in input_size] if input_size else "any height and width",
        "output_size": list(resizer.output_size),
        "channels": int(config.data.channels),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "input": "uint8 0..255 or float in [0, 1], [batch, height, width, channels]",
        "output": "float32 in [0, 1] units, not clipped, [batch, *output_size, channels]",
        # How the run brought an image to input_size (input_pipeline.eval_preprocess).
        "preprocess": {
            "aspect": config.data.get("aspect", "square"),
            "eval_crop_fraction": float(config.data.eval_crop_fraction),
        },
        "resizer": config.resizer.to_dict(),
        "classifier": config.model.name,
    }


def export_onnx(resizer, config) -> tuple[bytes, dict]:
    """(serialized ONNX model, settings) of `resizer`; see `onnx_graph.onnx_model`."""
    from learned_resize.tools import onnx_graph

    mean, std = _normalisation(config)
    model = onnx_graph.onnx_model(resizer, mean, std, int(config.data.channels))
    settings = _settings(resizer, config, None)
    settings.update(
        format="onnx",
        opset=onnx_graph.ONNX_OPSET,
        input="float32 in [0, 1], [batch, channels, height, width] (NCHW), input name 'images'",
        output="float32 in [0, 1] units, not clipped, [batch, channels, *output_size] (NCHW), "
        "output name 'resized'",
    )
    return model.SerializeToString(), settings


# --------------------------------------------------------------------------- writing


def write(path: str, serialized: bytes, settings: dict) -> None:
    with open(path, "wb") as f:
        f.write(serialized)
    with open(settings_path(path), "w") as f:
        json.dump(settings, f, indent=2, default=list)


def _config_files(checkpoint: str) -> list[str]:
    """The config.json files `run_config` may read for checkpoint (those that exist)."""
    path = os.path.abspath(checkpoint)
    found = []
    for candidate in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        file = os.path.join(candidate, "config.json")
        if os.path.isfile(file):
            found.append(file)
    return found


def check_outputs(out: str, checkpoint: str, overwrite: bool = False) -> None:
    """Refuses, before any work, an artifact or JSON that is the checkpoint or one of its
    files (its folder, the run's config.json), or that exists (unless overwrite)."""
    from learned_resize.runtime import no_overwrite

    inputs = [("--checkpoint", checkpoint)]
    inputs += [("--checkpoint's config", f) for f in _config_files(checkpoint)]
    outputs = [("--out", out), ("settings file", settings_path(out))]
    no_overwrite.check_outputs(outputs, inputs, overwrite)


def export_checkpoint(
    checkpoint: str,
    out: str,
    format: str = "jax",
    input_size: tuple[int, int] | None = None,
    platforms: tuple[str, ...] = ("cpu",),
    overwrite: bool = False,
) -> int:
    """What the command does: checks, restores, exports, writes. Returns the bytes written.

    Raises ValueError / FileNotFoundError (one sentence each) before anything is written.
    """
    if format not in FORMATS:
        raise ValueError(f"--format={format!r}; use one of {', '.join(FORMATS)}.")
    if set(platforms) - {"cpu", "cuda", "rocm", "tpu"} or not platforms:
        raise ValueError(f"--platforms={','.join(platforms)!r}; use some of cpu,cuda,rocm,tpu.")
    if format == "onnx":
        if input_size:
            raise ValueError("--input_size is for --format=jax; an ONNX file takes any size.")
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ValueError(
                "--format=onnx needs the onnx package; pip install 'learned_resize[onnx]'."
            ) from None
    check_outputs(out, checkpoint, overwrite)
    resizer, config = restore_resizer(checkpoint)
    if format == "onnx":
        serialized, settings = export_onnx(resizer, config)
    else:
        serialized, settings = export_resizer(resizer, config, input_size, platforms)
    write(out, serialized, settings)
    return len(serialized)


def parse_size(text: str, flag: str = "--input_size") -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{flag}={text!r}; give H,W as two integers, e.g. 224,224.") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{flag}={text!r}; give two positive integers.")
    return h, w


# ------------------------------------------------------------------------------ CLI


def define_flags(values=None) -> dict:
    """The command line's flags, in `values` (absl's FLAGS by default). Defined only when
    this module runs as a program (or by a test, in its own FlagValues): importing it
    (tools/eval_modes.py does) claims no flag names."""
    from absl import flags

    define = dict(flag_values=values if values is not None else flags.FLAGS)
    return dict(
        checkpoint=flags.DEFINE_string(
            "checkpoint", None, "Workdir of a learned-resizer run (e.g. W/learned).", **define
        ),
        out=flags.DEFINE_string(
            "out", None, "Artifact path, e.g. resizer.jaxexport or resizer.onnx.", **define
        ),
        format=flags.DEFINE_enum(
            "format", "jax", FORMATS, "jax: a jax.export artifact; onnx: an ONNX model.", **define
        ),
        input_size=flags.DEFINE_string(
            "input_size",
            "",
            "H,W: a jax artifact for this size only (default: any size).",
            **define,
        ),  # fmt: skip
        platforms=flags.DEFINE_string(
            "platforms", "cpu", "Comma-separated, for --format=jax: cpu,cuda,rocm,tpu.", **define
        ),
        overwrite=flags.DEFINE_bool(
            "overwrite",
            False,
            "Replace an existing artifact and JSON (never the checkpoint's files).",
            **define,
        ),  # fmt: skip
    )


def main(argv: list[str], flag: dict) -> int:
    """Runs the command with the parsed flags of `define_flags`; 1 on a user error."""
    try:
        if len(argv) > 1:
            raise ValueError(f"unexpected arguments {' '.join(argv[1:])}; flags start with --.")
        for name in ("checkpoint", "out"):
            if not flag[name].value:
                raise ValueError(f"--{name} is missing; see the examples in --help.")
        text = flag["input_size"].value
        size = parse_size(text) if text else None
        platforms = tuple(p for p in flag["platforms"].value.split(",") if p)
        out = flag["out"].value
        written = export_checkpoint(
            flag["checkpoint"].value, out, flag["format"].value, size, platforms,
            flag["overwrite"].value,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({written} bytes) and {settings_path(out)}")
    return 0


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    from learned_resize.runtime import cli

    cli.run_tool(define_flags, main)


if __name__ == "__main__":
    console()
