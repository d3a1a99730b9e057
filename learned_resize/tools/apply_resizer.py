r"""Apply a trained resizer to a folder of images, next to the bilinear resize.

    python -m learned_resize.tools.apply_resizer --checkpoint=W/learned --images=DIR --out=DIR

`--checkpoint` is the workdir of a learned-resizer run or an artifact written by
`python -m learned_resize.tools.export`. Every image in `--images` (anything PIL opens)
is brought to the run's input size as its eval did (`input_pipeline.eval_preprocess`:
shorter side, central crop; or the whole image padded, for `data.aspect='pad'`),
resized by the fixed resize the resizer uses for its skip (e.g. bilinear without
antialiasing) and by the trained resizer, and written as `OUT/<name>.png`:

    [ fixed resize | learned resize ]

each enlarged `--zoom` times with nearest neighbours (default: to about 256 px high)
so that 8x8 outputs can be seen. The learned output is clipped to [0, 1] for the
PNG: it is what the classifier sees, not a picture. Existing files in `--out` are
replaced only with `--overwrite`, and an input (an image in `--images`, the
checkpoint's files) never: the command stops with one `error:` line before it starts
if one would be.
"""

import argparse
import os
import sys

import numpy as np
import PIL.Image

_GAP = 2  # px of white between the two panels


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--checkpoint", required=True, help="run workdir or .jaxexport file")
    parser.add_argument("--images", required=True, help="directory of images")
    parser.add_argument("--out", required=True, help="directory for the PNGs")
    parser.add_argument("--zoom", type=int, default=0, help="enlargement (0: to ~256 px)")
    parser.add_argument("--batch_size", type=int, default=16, help="images per call")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing PNGs in --out (never an input image or the checkpoint)",
    )
    return parser.parse_args(argv)


def _load(checkpoint: str):
    """The resizer function (see export.load) for a run workdir or an artifact."""
    from learned_resize.tools import export

    if os.path.isfile(checkpoint):
        return export.load(checkpoint)
    import jax

    resizer, config = export.restore_resizer(checkpoint)
    serialized, settings = export.export_resizer(resizer, config)
    exported = jax.export.deserialize(bytearray(serialized))

    def resize(images):
        return exported.call(np.asarray(images, np.float32) / 255.0)

    resize.settings = settings
    return resize


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


def _preprocess(path: str, settings: dict) -> np.ndarray | None:
    """uint8 [H, W, C] at the artifact's input size, as the run's eval; None if unreadable."""
    from learned_resize.data import aspect_ratio, preprocessing

    with open(path, "rb") as f:
        image = preprocessing.decode_image(f.read(), settings["channels"])
    if image is None:
        return None
    pre = settings.get("preprocess", {})
    pad = pre.get("aspect", "square") == "pad"
    preprocess = aspect_ratio.eval_pad if pad else preprocessing.eval_preprocess
    return preprocess(image, tuple(settings["input_size"]), pre.get("eval_crop_fraction", 1.0))


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
) -> int:
    """Writes OUT/<name>.png for every readable image; returns how many were written."""
    from learned_resize.models import resampling

    files = _image_files(images)
    targets = _targets(files, out, images, checkpoint, overwrite)
    resize = _load(checkpoint)
    settings = resize.settings
    out_h = settings["output_size"][0]
    zoom = zoom or max(1, round(256 / out_h))
    fixed_method = settings["resizer"].get("interpolation", "bilinear")
    antialias = settings["resizer"].get("antialias", resampling.ANTIALIAS)
    os.makedirs(out, exist_ok=True)
    written = skipped = 0
    for start in range(0, len(files), batch_size):
        chunk = list(zip(files, targets))[start : start + batch_size]
        arrays = [(_preprocess(f, settings), t) for f, t in chunk]
        readable = [(a, t) for a, t in arrays if a is not None]
        skipped += len(arrays) - len(readable)
        if readable:
            batch = np.stack([a for a, _ in readable])
            learned = np.asarray(resize(batch))
            fixed = np.asarray(
                resampling.resize(
                    batch.astype(np.float32) / 255.0,
                    settings["output_size"],
                    fixed_method,
                    antialias,
                )
            )
            for k, (_, target) in enumerate(readable):
                _panels(fixed[k], learned[k], zoom).save(target)
                written += 1
        _progress(start + len(chunk), len(files), skipped)
    return written


def main(argv=None) -> int:
    args = _arguments(argv)
    try:
        if args.zoom < 0 or args.batch_size < 1:
            raise ValueError("--zoom must be >= 0 and --batch_size >= 1.")
        written = run(
            args.checkpoint, args.images, args.out, args.zoom, args.batch_size, args.overwrite
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {written} PNGs to {args.out} ([fixed | learned] each)")
    return 0


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    sys.exit(main())


if __name__ == "__main__":
    console()
