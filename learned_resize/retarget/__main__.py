"""Retarget a photo from the command line.

    python -m learned_resize.retarget --image=photo.jpg --size=384x512 --out=out.png

Sizes: `--size=WxH` (width x height, pixels), `--size=384x` (width 384, height kept),
`--size=x300` (height 300, width kept), or `--width=` / `--height=` (a missing one is
kept). Without --image the photo is scikit-image's astronaut; without a size the
width becomes 3/4 of the input's. Writes the result to --out and, next to it,
`<out>_comparison.png`: input | uniform scaling | center crop | pixel seam carving |
ours | importance mask. Settings are overridable, e.g. `--config.iterations='(40, 10)'`
or `--config.operator=seam` (see `defaults.get_config`). The default operator is
'multi' (a crop keeping the most of the importance mask, then seams for the rest);
`--config.operator=seam` is the paper's method (seams only). Also: `--image=FOLDER
--out=FOLDER` (every image, one compilation per output size), `--protect=mask.png`
(non-zero pixels kept intact), `--remove=mask.png` (object removal: seams take it
first; operators multi and seam), enlarging (`--size=` larger than the input) and
both sides at once. Inputs: EXIF orientation applied, ICC profiles converted to sRGB,
16-bit scaled, transparency over white. A grey photo (mode L, or RGB with three equal
channels) is written back as grey (mode L: the luma of the result). A mask must be drawn
on the photo: of its size, or of exactly its aspect ratio (then resized by nearest
neighbour, with a one-line note); any other size is refused.

Nothing the user owns is overwritten: an output (or its comparison image) that is an
input (--image, --protect, --remove; by any spelling, symlink or hard link) is refused,
and so is an existing file unless `--overwrite` is given (an input never is replaced,
even then). Every refusal, like every bad setting (`validation.check_config`), size or output
suffix, is one `error:` line and exit status 1, before any weights load or anything
compiles.

Needs the VGG weight cache: `python -m learned_resize.retarget.weights --fetch`;
`--weights=FILE` takes VGG-19 from a Keras notop .h5 or a torchvision state dict
(.safetensors, .pth) instead (see docs/install.md).
"""

import os
import pathlib
import re
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from learned_resize.retarget import api, image_io, report, validation
from learned_resize.runtime import cli, errors, no_overwrite

_IMAGE = flags.DEFINE_string("image", None, "Input photo (PNG, JPEG...); default: astronaut.")
_SIZE = flags.DEFINE_string("size", None, "Output size WxH, Wx (width only) or xH (height only).")
_WIDTH = flags.DEFINE_integer("width", None, "Output width in pixels (height kept unless given).")
_HEIGHT = flags.DEFINE_integer("height", None, "Output height in pixels (width kept unless given).")
_OUT = flags.DEFINE_string(
    "out", "retargeted.png", "Output image (or folder when --image is one); comparison beside it."
)
_PROTECT = flags.DEFINE_string("protect", None, "Mask image: non-zero pixels are kept intact.")
_REMOVE = flags.DEFINE_string("remove", None, "Mask image of an object the seams remove first.")
_COMPARISON = flags.DEFINE_bool("comparison", True, "Also write <out>_comparison.png.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace existing output files (an input is never replaced)."
)
_WEIGHTS = flags.DEFINE_string(
    "weights",
    None,
    "VGG-19 weights file instead of the cache: Keras notop .h5, or a torchvision state dict "
    "(.safetensors or .pth).",
)
_CACHE = flags.DEFINE_string(
    "compile_cache",
    os.path.join(os.path.expanduser("~"), ".cache", "learned_resize", "jax"),
    "Persistent XLA compilation cache (repeat runs at the same sizes skip compiling); '' = off.",
)


def define_config_flag(argv) -> None:
    """Defines --config (the defaults, overridable with --config.KEY=VALUE).

    ml_collections reads the overrides in argv as the flag is defined, and an unknown key
    ends in its traceback there; so an unknown key is refused first, in one line naming
    the closest valid key (or this tool's flag of that name: --config.compile_cache).
    """
    if any(re.fullmatch(r"-{1,2}config(=.*)?", arg) for arg in argv[1:]):
        errors.exit_with(
            errors.UserError(
                "--config takes no file here; set one setting at a time with "
                "--config.KEY=VALUE (e.g. --config.operator=seam; the keys are in "
                "learned_resize/retarget/defaults.py)."
            ),
            errors.EXIT_USER_ERROR,
        )
    config = api.get_config()
    unknown = cli.unknown_config_key(argv, config, "learned_resize/retarget/defaults.py")
    if unknown is not None:
        errors.exit_with(unknown, errors.EXIT_USER_ERROR)
    config_flags.DEFINE_config_dict("config", config)


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


def progress(line: str) -> None:
    """Prints a progress line with a bar for the solve's "iter n/N" lines."""
    found = re.search(r"iter\s+(\d+)/(\d+)", line)
    if found and int(found.group(2)):
        done = round(20 * int(found.group(1)) / int(found.group(2)))
        line = f"[{'#' * done}{'.' * (20 - done)}] {line}"
    print(line, flush=True)


def read_image(path: str | None) -> np.ndarray:
    """The photo (see `image_io.read_image`); scikit-image's astronaut when path is None."""
    if path is None:
        import skimage.data

        return skimage.data.astronaut()
    return image_io.read_image(path)


def comparison_path(out) -> pathlib.Path:
    p = pathlib.Path(out)
    return p.with_name(f"{p.stem}_comparison.png")


def jobs(image_flag: str | None, out: str) -> list[tuple[str | None, pathlib.Path]]:
    """(input, output) pairs: one photo, or every image in a folder into the folder --out."""
    if image_flag is None or not pathlib.Path(image_flag).is_dir():
        return [(image_flag, image_io.check_output(out))]
    out_dir = pathlib.Path(out)
    if not out_dir.is_dir():
        raise FileNotFoundError(
            f"--image is a folder, so --out must be an existing folder; {out!r} is not."
        )
    inputs = sorted(
        p
        for p in pathlib.Path(image_flag).iterdir()
        if p.suffix.lower() in image_io.OUTPUT_SUFFIXES
    )
    if not inputs:
        raise FileNotFoundError(f"No PNG/JPEG/WebP/BMP/TIFF images in {image_flag!r}.")
    return [(str(p), out_dir / f"{p.stem}.png") for p in inputs]


def check_writes(
    pairs, write_comparison: bool, image_flag: str | None, masks, overwrite: bool
) -> None:
    """Refuses outputs that are inputs, repeat each other, or exist (unless overwrite)."""
    outputs = []
    for _, out_path in pairs:
        outputs.append(("output", out_path))
        if write_comparison:
            fix = "choose another --out or pass --nocomparison"
            outputs.append(("comparison image", comparison_path(out_path), fix))
    inputs = [("--image", image_flag), ("--protect", masks[0]), ("--remove", masks[1])]
    inputs += [("--image", path) for path, _ in pairs]
    no_overwrite.check_outputs(outputs, inputs, overwrite)


def save(image, path, gray: bool) -> None:
    """Writes image [H, W, 3] in [0, 1] to path; as one channel (mode L) when gray."""
    pixels = report.to_uint8(image)
    Image.fromarray(pixels[..., 0] if gray else pixels).save(path)


def run(
    argv_image,
    size_flags,
    out: str,
    config,
    write_comparison: bool,
    masks=(None, None),
    overwrite: bool = False,
    weights_path: str | None = None,
):
    """The CLI's work; raises ValueError / FileNotFoundError on user errors.

    Every input is read and checked (settings, outputs, size, masks) before the weights
    load and anything compiles; images in one size bucket share one compilation.
    """
    start = time.perf_counter()
    validation.check_config(config)
    pairs = jobs(argv_image, out)
    check_writes(pairs, write_comparison, argv_image, masks, overwrite)
    todo = []
    for path, out_path in pairs:
        image = read_image(path)
        size = api.check_size(parse_size(*size_flags, image.shape[:2]), image.shape[:2])
        user = [
            None if m is None else image_io.read_mask(m, image.shape[:2], f"{flag}={m}", print)
            for flag, m in zip(("--protect", "--remove"), masks)
        ]
        todo.append((path, image, size, user, out_path))
    from learned_resize.retarget import weights  # after the cheap checks

    vgg19 = weights.load_vgg(19) if weights_path is None else weights.load_vgg_file(weights_path)
    vgg16 = weights.load_vgg(16) if config.beta > 0 and len(config.perc_layers) else None
    for k, (path, image, size, user, out_path) in enumerate(todo):
        print(
            f"[{k + 1}/{len(todo)}] {path or 'astronaut'}: {image.shape[1]}x{image.shape[0]} -> "
            f"{size[1]}x{size[0]} ({config.operator}, scales {tuple(config.scales)}, "
            f"at most {tuple(config.iterations)} iterations)"
        )
        result = api.retarget_details(
            image,
            size,
            config=config,
            vgg19=vgg19,
            vgg16=vgg16,
            protect_mask=user[0],
            remove_mask=user[1],
            log=progress,
        )
        save(result.image, out_path, image_io.is_gray(image))
        iters = "+".join(str(s.iterations) for s in result.solves)
        evals = sum(s.evaluations for s in result.solves)
        how = (
            f"{iters} L-BFGS iterations, {evals} evaluations"
            if result.solves
            else "nothing reconstructed: the plan copies every pixel"
        )
        print(f"wrote {out_path} in {result.seconds:.1f} s ({how})")
        if write_comparison:
            columns = report.baselines(image, size)
            columns["ours"] = np.asarray(result.image)
            grid = report.comparison_grid(api.as_float_image(image), columns, result.mask)
            Image.fromarray(grid).save(comparison_path(out_path))
            print(f"wrote {comparison_path(out_path)}")
    print(f"total time {time.perf_counter() - start:.1f} s")


def use_compile_cache(path: str) -> None:
    """JAX's persistent compilation cache in path ('' = off), for every program."""
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        # Every program, not only slow ones (2 s before): at 256 px the CLI's many
        # small programs are most of a repeat run's compile time (bench: 19.0 -> 14.9 s).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    use_compile_cache(_CACHE.value)
    try:
        run(
            _IMAGE.value,
            (_SIZE.value, _WIDTH.value, _HEIGHT.value),
            _OUT.value,
            flags.FLAGS.config,
            _COMPARISON.value,
            (_PROTECT.value, _REMOVE.value),
            _OVERWRITE.value,
            _WEIGHTS.value,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    define_config_flag(sys.argv)
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    console()
