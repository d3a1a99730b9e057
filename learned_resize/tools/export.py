r"""A trained learned resizer as a `jax.export` artifact you can use anywhere.

    python -m learned_resize.tools.export --checkpoint=W/learned --out=resizer.jaxexport

writes `resizer.jaxexport` (the serialized `jax.export.Exported`: inference mode,
weights embedded) and `resizer.json` (its settings). Existing files are replaced only
with `--overwrite`, and the checkpoint's own files (its folder, the run's config.json)
never: the command stops with one `error:` line before it reads anything. In any JAX
program, without this package's training code (only jax and numpy are imported to
load it):

    from learned_resize.tools import export
    resize = export.load("resizer.jaxexport")
    small = resize(images)  # uint8 [N, H, W, C] (0..255) or float in [0, 1]

The function takes images in pixel units, normalises them as the trainer did
(`mean`, `std` in the JSON), applies the resizer and returns float32
`[N, h, w, C]` in [0, 1] units (not clipped: a learned resizer's output is not an
image). Multiply back by nothing and normalise with the same `mean`/`std` to feed
the classifier it was trained with. The batch size is symbolic; the spatial input
size is fixed at export time (`--input_size`, default the run's `input_size`)
because the resampling's slice plan depends on it (`resampling.py`): export once
per input size.

The exported function is the trained `LearnedResizer` module itself in eval mode,
after `resizers.fold_batch_norm` has folded each conv + BatchNorm pair into the conv
(exact in real arithmetic), traced with XLA's own convolutions so that it runs on any
platform.
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

SUFFIX = ".jaxexport"


def settings_path(path: str) -> str:
    """The JSON written next to artifact `path` (resizer.jaxexport -> resizer.json)."""
    return (path[: -len(SUFFIX)] if path.endswith(SUFFIX) else path) + ".json"


def load(path: str):
    """Loads an exported resizer; returns `resize(images) -> float32 images in [0, 1]`.

    `resize.settings` holds the JSON settings (input and output size, channels,
    mean, std, the run's resizer config).
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
    from learned_resize.runtime import checkpoints

    config = run_config(checkpoint)
    if config.resizer.kind != "learned":
        raise ValueError(
            f"The run at {checkpoint} has a fixed {config.resizer.kind!r} resizer, nothing to "
            "export; point to a run with config.resizer.kind='learned'."
        )
    meta = checkpoints.model_meta(config)
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


def export_resizer(resizer, config, input_size=None, platforms=("cpu",)):
    """(serialized bytes, settings) of `resizer` behind the run's normalisation."""
    input_size = tuple(int(s) for s in (input_size or config.input_size))
    mean = np.asarray(config.data.mean, np.float32)
    std = np.asarray(config.data.std, np.float32)
    from learned_resize.models import resizers
    from learned_resize.models.cpu import narrow_conv

    folded = resizers.fold_batch_norm(resizer)
    out_size = tuple(resizer.output_size)

    def resize_unit(images):  # float [N, H, W, C] in [0, 1] -> float32 in [0, 1]
        x = (images - mean) / std
        return folded(x, train=False) * std + mean

    channels = int(config.data.channels)
    (batch,) = jax.export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, *input_size, channels), jnp.float32)
    # XLA's own convolutions, not the CPU-only forms: the artifact runs on any platform.
    with narrow_conv.use_formulation("xla"):
        exported = jax.export.export(jax.jit(resize_unit), platforms=platforms)(spec)
    settings = {
        "input_size": list(input_size),
        "output_size": list(out_size),
        "channels": channels,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "platforms": list(platforms),
        "input": "uint8 0..255 or float in [0, 1], [batch, *input_size, channels]",
        "output": "float32 in [0, 1] units, not clipped, [batch, *output_size, channels]",
        # How the run brought an image to input_size (input_pipeline.eval_preprocess).
        "preprocess": {
            "aspect": config.data.get("aspect", "square"),
            "eval_crop_fraction": float(config.data.eval_crop_fraction),
        },
        "resizer": config.resizer.to_dict(),
        "classifier": config.model.name,
    }
    return bytes(exported.serialize()), settings


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


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--checkpoint", required=True, help="workdir of a learned-resizer run")
    parser.add_argument("--out", required=True, help="artifact path, e.g. resizer.jaxexport")
    parser.add_argument("--input_size", default="", help="H,W to export for (default: the run's)")
    parser.add_argument("--platforms", default="cpu", help="comma-separated: cpu,cuda,tpu")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing artifact and JSON (never the checkpoint's files)",
    )
    args = parser.parse_args(argv)
    try:
        input_size = _parse_size(args.input_size) if args.input_size else None
        platforms = tuple(p for p in args.platforms.split(",") if p)
        if set(platforms) - {"cpu", "cuda", "rocm", "tpu"} or not platforms:
            raise ValueError(f"--platforms={args.platforms!r}; use some of cpu,cuda,rocm,tpu.")
        check_outputs(args.out, args.checkpoint, args.overwrite)
        resizer, config = restore_resizer(args.checkpoint)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    serialized, settings = export_resizer(resizer, config, input_size, platforms)
    write(args.out, serialized, settings)
    print(f"wrote {args.out} ({len(serialized)} bytes) and {settings_path(args.out)}")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"--input_size={text!r}; give H,W as two integers, e.g. 224,224."
        ) from None
    if h <= 0 or w <= 0:
        raise ValueError(f"--input_size={text!r}; give two positive integers.")
    return h, w


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    sys.exit(main())


if __name__ == "__main__":
    console()
