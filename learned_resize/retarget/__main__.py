"""Retarget a photo from the command line.

    python -m learned_resize.retarget --image=photo.jpg --size=384x512 --out=out.png

Sizes: `--size=WxH` (width x height, pixels), `--size=384x` (width 384, height kept),
`--size=x300` (height 300, width kept), or `--width=` / `--height=` (a missing one is
kept). Without --image the photo is scikit-image's astronaut; without a size the
width becomes 3/4 of the input's. Writes the result to --out and, next to it,
`<out>_comparison.png`: input | uniform scaling | center crop | pixel seam carving |
ours | importance mask. Settings are overridable, e.g. `--config.iterations='(40, 10)'`
or `--config.operator=uniform` (see `api.get_config`).

Needs the VGG weight cache: `python -m learned_resize.retarget.weights --fetch`.
"""

import os
import pathlib
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image, UnidentifiedImageError

from learned_resize.retarget import api, report

_IMAGE = flags.DEFINE_string("image", None, "Input photo (PNG, JPEG...); default: astronaut.")
_SIZE = flags.DEFINE_string("size", None, "Output size WxH, Wx (width only) or xH (height only).")
_WIDTH = flags.DEFINE_integer("width", None, "Output width in pixels (height kept unless given).")
_HEIGHT = flags.DEFINE_integer("height", None, "Output height in pixels (width kept unless given).")
_OUT = flags.DEFINE_string("out", "retargeted.png", "Output PNG; the comparison goes next to it.")
_COMPARISON = flags.DEFINE_bool("comparison", True, "Also write <out>_comparison.png.")
_CACHE = flags.DEFINE_string(
    "compile_cache",
    os.path.join(os.path.expanduser("~"), ".cache", "learned_resize", "jax"),
    "Persistent XLA compilation cache (repeat runs at the same sizes skip compiling); '' = off.",
)
_CONFIG = config_flags.DEFINE_config_dict("config", api.get_config())


def parse_size(
    size: str | None, width: int | None, height: int | None, in_size: tuple[int, int]
) -> tuple[int, int]:
    """Output (height, width) from the flags; the default is 3/4 of the input width.

    Raises:
      ValueError: malformed --size, or --size given together with --width/--height.
    """
    in_h, in_w = in_size
    if size is not None:
        if width is not None or height is not None:
            raise ValueError("Give either --size or --width/--height, not both.")
        text = size.strip().lower()
        w_text, sep, h_text = text.partition("x")
        try:
            if not sep or not (w_text or h_text):
                raise ValueError
            width = int(w_text) if w_text else None
            height = int(h_text) if h_text else None
        except ValueError:
            raise ValueError(
                f"--size must look like 384x512 (width x height), 384x or x512, got {size!r}."
            ) from None
    if width is None and height is None:
        return in_h, max(1, round(0.75 * in_w))
    return (in_h if height is None else height), (in_w if width is None else width)


def read_image(path: str | None) -> np.ndarray:
    """The photo as uint8 RGB [H, W, 3]; scikit-image's astronaut when path is None."""
    if path is None:
        import skimage.data

        return skimage.data.astronaut()
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"Image file {path!r} does not exist; check the path.") from None
    except (UnidentifiedImageError, OSError):
        raise ValueError(
            f"Cannot read {path!r} as an image; give a PNG, JPEG or other file PIL can open."
        ) from None


def comparison_path(out: str) -> pathlib.Path:
    p = pathlib.Path(out)
    return p.with_name(f"{p.stem}_comparison.png")


def run(argv_image, size_flags, out: str, config, write_comparison: bool) -> None:
    """The CLI's work; raises ValueError / FileNotFoundError on user errors."""
    start = time.perf_counter()
    image = read_image(argv_image)
    if max(image.shape[:2]) > api.MAX_SIDE:
        raise ValueError(
            f"The input is {image.shape[1]}x{image.shape[0]}; downscale it to at most "
            f"{api.MAX_SIDE} px per side first."
        )
    size = api.check_size(parse_size(*size_flags, image.shape[:2]), image.shape[:2])
    out_dir = pathlib.Path(out).resolve().parent
    if not out_dir.is_dir():
        raise FileNotFoundError(f"Output folder {str(out_dir)!r} does not exist; create it first.")
    from learned_resize.retarget import weights  # after the cheap checks

    vgg19 = weights.load_vgg(19)
    vgg16 = weights.load_vgg(16) if config.beta > 0 and len(config.perc_layers) else None
    print(
        f"retargeting {image.shape[1]}x{image.shape[0]} -> {size[1]}x{size[0]} "
        f"({config.operator}, scales {tuple(config.scales)}, iterations {tuple(config.iterations)})"
    )
    result = api.retarget_details(image, size, config=config, vgg19=vgg19, vgg16=vgg16)
    out_image = np.asarray(result.image)
    Image.fromarray(report.to_uint8(out_image)).save(out)
    total_iters = sum(s.iterations for s in result.solves)
    total_evals = sum(s.evaluations for s in result.solves)
    print(
        f"wrote {out} in {result.seconds:.1f} s "
        f"({total_iters} L-BFGS iterations, {total_evals} loss evaluations)"
    )
    if write_comparison:
        columns = report.baselines(image, size)
        columns["ours"] = out_image
        grid = report.comparison_grid(api.as_float_image(image), columns, result.mask)
        path = comparison_path(out)
        Image.fromarray(grid).save(path)
        print(f"wrote {path}")
    print(f"total time {time.perf_counter() - start:.1f} s")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if _CACHE.value:
        jax.config.update("jax_compilation_cache_dir", _CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
    try:
        run(
            _IMAGE.value,
            (_SIZE.value, _WIDTH.value, _HEIGHT.value),
            _OUT.value,
            _CONFIG.value,
            _COMPARISON.value,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
