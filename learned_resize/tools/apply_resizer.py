r"""Apply a trained resizer to a folder of images of any size, next to the fixed resize.

    python -m learned_resize.tools.apply_resizer --checkpoint=W/learned --images=DIR --out=DIR

`--checkpoint` is the workdir of a learned-resizer run or a `.jaxexport` artifact written
by `python -m learned_resize.tools.export` (any input size unless it was exported with
`--input_size`). Every image in `--images` (anything PIL opens, any size) is, with
`--preprocess=eval` (the default), brought to the run's input size as its eval did
(`input_pipeline.eval_preprocess`: shorter side, central crop; or the whole image
padded, for `data.aspect='pad'`); with `--preprocess=none` it is resized whole, at its
own size, straight to the output size. Then it is resized by the fixed resize the
resizer uses for its skip (e.g. bilinear without antialiasing) and by the trained
resizer, and written as `OUT/<name>.png`:

    [ fixed resize | learned resize ]

each enlarged `--zoom` times with nearest neighbours (default: to about 256 px high)
so that 8x8 outputs can be seen. The learned output is clipped to [0, 1] for the
PNG: it is what the classifier sees, not a picture. Existing files in `--out` are
replaced only with `--overwrite`, and an input (an image in `--images`, the
checkpoint's files) never: the command stops with one `error:` line before it starts
if one would be.
"""

import os
import sys

import numpy as np
import PIL.Image

_GAP = 2  # px of white between the two panels
PREPROCESS = ("eval", "none")


def _load(checkpoint: str):
    """The resizer function (see export.load) for a run workdir or an artifact."""
    from learned_resize.tools import export

    if os.path.isfile(checkpoint):
        if not checkpoint.endswith(export.SUFFIX):
            raise ValueError(
                f"--checkpoint={checkpoint} is not a {export.SUFFIX} artifact; give one written "
                "by learned_resize.tools.export (--format=jax) or a run's workdir."
            )
        return export.load(checkpoint)
    import jax

    resizer, config = export.restore_resizer(checkpoint)
    serialized, settings = export.export_resizer(resizer, config)  # any input size
    exported = jax.export.deserialize(bytearray(serialized))

    def resize(images):
        return exported.call(np.asarray(images, np.float32) / 255.0)

    resize.settings = settings
    return resize


def _accepted_size(settings: dict) -> tuple[int, int] | None:
    """The one input size an artifact takes, or None for any (older artifacts: fixed)."""
    accepts = settings.get("accepts", settings["input_size"])
    return tuple(accepts) if isinstance(accepts, list) else None


def _image_files(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--images={directory} is not a directory; give a folder.")
    names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    files = [os.path.join(directory, n) for n in names]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise ValueError(f"--images={directory} has no files; put the images there.")
    return files


def _targets(
    files: list[str], out: str, images: str, checkpoint: str, overwrite: bool = False
) -> list[str]:
    """OUT/<stem>.png per file; refused (one sentence) if one would replace an input, or
    an existing file without overwrite."""
    from learned_resize.runtime import no_overwrite
    from learned_resize.tools import export

    targets = [os.path.join(out, os.path.splitext(os.path.basename(f))[0] + ".png") for f in files]
    if len(set(targets)) < len(targets):
        raise ValueError("two files in --images share a name stem; rename one of them.")
    inputs = [("--images", images), *(("--images", f) for f in files)]
    inputs += [("--checkpoint", checkpoint), ("--checkpoint", export.settings_path(checkpoint))]
    no_overwrite.check_outputs([("output", t) for t in targets], inputs, overwrite)
    return targets


def _preprocess(path: str, settings: dict, how: str = "eval") -> np.ndarray | None:
    """uint8 [H, W, C]: at the run's input size as its eval (`how='eval'`) or as it is
    (`'none'`); None if unreadable."""
    from learned_resize.data import aspect_ratio, preprocessing

    with open(path, "rb") as f:
        image = preprocessing.decode_image(f.read(), settings["channels"])
    if image is None or how == "none":
        return None if image is None else preprocessing.to_array(image)
    pre = settings.get("preprocess", {})
    pad = pre.get("aspect", "square") == "pad"
    preprocess = aspect_ratio.eval_pad if pad else preprocessing.eval_preprocess
    size = _accepted_size(settings) or tuple(settings["input_size"])
    return preprocess(image, size, pre.get("eval_crop_fraction", 1.0))


def _same_size_runs(arrays: list) -> list[list]:
    """Consecutive (array, target) pairs split where the array's shape changes."""
    runs = []
    for pair in arrays:
        if runs and runs[-1][0][0].shape == pair[0].shape:
            runs[-1].append(pair)
        else:
            runs.append([pair])
    return runs


def _panels(fixed: np.ndarray, learned: np.ndarray, zoom: int) -> PIL.Image.Image:
    """[fixed | learned], each [h, w, C] in [0, 1], enlarged `zoom` times."""
    h, w, c = fixed.shape
    strip = np.ones((h * zoom, 2 * w * zoom + _GAP, c), np.float32)
    for i, panel in enumerate((fixed, learned)):
        big = np.repeat(np.repeat(np.clip(panel, 0, 1), zoom, 0), zoom, 1)
        strip[:, i * (w * zoom + _GAP) : i * (w * zoom + _GAP) + w * zoom] = big
    pixels = np.round(strip * 255).astype(np.uint8)
    return PIL.Image.fromarray(pixels[:, :, 0] if c == 1 else pixels)


def _progress(done: int, total: int, skipped: int) -> None:
    width = 30
    filled = width * done // total
    bar = "#" * filled + "." * (width - filled)
    note = f", {skipped} unreadable" if skipped else ""
    end = "\n" if done == total else ""
    print(f"\r[{bar}] {done}/{total} images{note}", end=end, file=sys.stderr, flush=True)


def run(
    checkpoint: str,
    images: str,
    out: str,
    zoom: int = 0,
    batch_size: int = 16,
    overwrite: bool = False,
    preprocess: str = "eval",
) -> int:
    """Writes OUT/<name>.png for every readable image; returns how many were written."""
    from learned_resize.models import resampling

    if preprocess not in PREPROCESS:
        raise ValueError(f"--preprocess={preprocess!r}; use one of {', '.join(PREPROCESS)}.")
    files = _image_files(images)
    targets = _targets(files, out, images, checkpoint, overwrite)
    resize = _load(checkpoint)
    settings = resize.settings
    fixed_size = _accepted_size(settings)
    if preprocess == "none" and fixed_size:
        raise ValueError(
            f"--checkpoint={checkpoint} was exported for {fixed_size[0]}x{fixed_size[1]} inputs "
            "only; export it again without --input_size, or use --preprocess=eval."
        )
    out_h = settings["output_size"][0]
    zoom = zoom or max(1, round(256 / out_h))
    fixed_method = settings["resizer"].get("interpolation", "bilinear")
    antialias = settings["resizer"].get("antialias", resampling.ANTIALIAS)
    os.makedirs(out, exist_ok=True)
    written = skipped = 0
    for start in range(0, len(files), batch_size):
        chunk = list(zip(files, targets))[start : start + batch_size]
        arrays = [(_preprocess(f, settings, preprocess), t) for f, t in chunk]
        readable = [(a, t) for a, t in arrays if a is not None]
        skipped += len(arrays) - len(readable)
        for run_of_size in _same_size_runs(readable):  # one call per input size
            batch = np.stack([a for a, _ in run_of_size])
            learned = np.asarray(resize(batch))
            fixed = np.asarray(
                resampling.resize(
                    batch.astype(np.float32) / 255.0,
                    settings["output_size"],
                    fixed_method,
                    antialias,
                )
            )
            for k, (_, target) in enumerate(run_of_size):
                _panels(fixed[k], learned[k], zoom).save(target)
                written += 1
        _progress(start + len(chunk), len(files), skipped)
    return written


def define_flags(values=None) -> dict:
    """The command line's flags, in `values` (absl's FLAGS by default); defined only when
    this module runs as a program, so importing it claims no flag names."""
    from absl import flags

    define = dict(flag_values=values if values is not None else flags.FLAGS)
    return dict(
        checkpoint=flags.DEFINE_string(
            "checkpoint", None, "Run workdir or .jaxexport artifact.", **define
        ),
        images=flags.DEFINE_string("images", None, "Directory of images, any size.", **define),
        out=flags.DEFINE_string("out", None, "Directory for the PNGs.", **define),
        preprocess=flags.DEFINE_enum(
            "preprocess",
            "eval",
            PREPROCESS,
            "eval: crop/resize to the run's input size as its eval did; none: the whole "
            "image at its own size.",
            **define,
        ),  # fmt: skip
        zoom=flags.DEFINE_integer("zoom", 0, "Enlargement (0: to about 256 px).", **define),
        batch_size=flags.DEFINE_integer("batch_size", 16, "Images per call.", **define),
        overwrite=flags.DEFINE_bool(
            "overwrite",
            False,
            "Replace existing PNGs in --out (never an input image or the checkpoint).",
            **define,
        ),  # fmt: skip
    )


def main(argv: list[str], flag: dict) -> int:
    """Runs the command with the parsed flags of `define_flags`; 1 on a user error."""
    value = {name: f.value for name, f in flag.items()}
    try:
        if len(argv) > 1:
            raise ValueError(f"unexpected arguments {' '.join(argv[1:])}; flags start with --.")
        for name in ("checkpoint", "images", "out"):
            if not value[name]:
                raise ValueError(f"--{name} is missing; see the example in --help.")
        if value["zoom"] < 0 or value["batch_size"] < 1:
            raise ValueError("--zoom must be >= 0 and --batch_size >= 1.")
        written = run(
            value["checkpoint"], value["images"], value["out"], value["zoom"],
            value["batch_size"], value["overwrite"], value["preprocess"],
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {written} PNGs to {value['out']} ([fixed | learned] each)")
    return 0


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    from learned_resize.runtime import cli

    cli.run_tool(define_flags, main)


if __name__ == "__main__":
    console()
