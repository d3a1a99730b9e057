"""Reading photos and masks for the retargeting CLI the way a viewer shows them.

`read_image` applies the EXIF orientation (a phone's portrait stays upright),
converts an embedded ICC profile to sRGB (the VGG weights were trained on sRGB),
scales 16-bit and 32-bit integer images by their range instead of clipping them, and
composites transparency over white. `read_mask` reads a user mask (any mode; non-zero
= on) drawn on the photo (its size, or its exact aspect ratio). Output names are checked
before any work (`check_output`). A grey photo (`is_gray`) is retargeted as one channel
repeated three times, and its result brought back to grey (`to_gray`).
"""

import io
import pathlib

import jax
import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# Output sides above this are refused: one L-BFGS iteration at 4096 px takes minutes here.
MAX_SIDE = 4096
# Nor may a side grow by more than this factor (seam insertion beyond it is meaningless).
MAX_GROWTH = 4.0


# Inputs smaller than this on a side are refused: VGG block 5 (stride 16) needs a few
# cells to say anything, and seams on a handful of columns are meaningless.
MIN_SIDE = 32
# What PIL can write without surprises for a photo (no palette or bilevel formats).
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _open(path) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
        return im
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(
            f"Image file {str(path)!r} does not exist; check the path."
        ) from None
    except (UnidentifiedImageError, OSError):
        raise ValueError(
            f"Cannot read {str(path)!r} as an image; give a PNG, JPEG or other file PIL can open."
        ) from None


def _to_srgb(im: Image.Image) -> Image.Image:
    profile = im.info.get("icc_profile")
    if not profile or im.mode not in ("RGB", "RGBA", "L", "CMYK"):
        return im
    src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    mode = "RGBA" if im.mode == "RGBA" else "RGB"
    return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode=mode)


def _integer_array(im: Image.Image) -> np.ndarray | None:
    """Float RGB in [0, 1] for 16/32-bit integer modes (PIL would clip them), else None."""
    if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
        return None
    x = np.asarray(im).astype(np.float64)
    top = 65535.0 if im.mode.startswith("I;16") or x.max() <= 65535 else float(x.max())
    x = np.clip(x / top, 0.0, 1.0).astype(np.float32)
    return np.repeat(x[..., None], 3, axis=-1)


def read_image(path) -> np.ndarray:
    """The photo at path as RGB: uint8 [H, W, 3], or float32 in [0, 1] for >8-bit input.

    Raises:
      FileNotFoundError, ValueError: missing, unreadable or too small (one sentence).
    """
    im = ImageOps.exif_transpose(_open(path))
    wide = _integer_array(im)
    if wide is not None:
        image = wide
    else:
        im = _to_srgb(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im)
        image = np.asarray(im.convert("RGB"))
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"{str(path)!r} is {image.shape[1]}x{image.shape[0]}; inputs need at least "
            f"{MIN_SIDE} px per side."
        )
    return image


def read_mask(path, size: tuple[int, int], flag: str = "mask", log=None) -> np.ndarray:
    """User mask at path for a photo of size (h, w): float32 {0, 1}, on = non-zero.

    A mask of the photo's size is used as it is; one of exactly the photo's aspect ratio
    (a mask drawn on a smaller or larger copy) is resized by nearest neighbour, with one
    line to log saying so; any other size is refused.

    Args:
      path: the mask file (any mode; its alpha channel if it has one).
      size: the photo's (height, width).
      flag: how the mask is named in messages, e.g. "--protect=keep.png".
      log: printer for the resizing note, or None.

    Raises:
      FileNotFoundError, ValueError: missing, unreadable, or of another aspect ratio.
    """
    im = ImageOps.exif_transpose(_open(path))
    if "A" in im.getbands():
        im = im.getchannel("A")
    (h, w), (mw, mh) = size, im.size
    if (mh, mw) != (h, w):
        if mw * h != w * mh:
            raise ValueError(
                f"{flag} is {mw}x{mh} but the photo is {w}x{h}; draw the mask on the photo "
                "(same size, or at least the same aspect ratio)."
            )
        if log:
            log(f"note: {flag} is {mw}x{mh}, resized to the photo's {w}x{h} (nearest neighbour).")
    im = im.convert("L").resize((w, h), Image.Resampling.NEAREST)
    return (np.asarray(im) > 0).astype(np.float32)


def is_gray(image) -> bool:
    """Whether image [H, W] or [H, W, C] holds one channel: C == 1 or R == G == B exactly."""
    x = np.asarray(image)
    if x.ndim == 2 or x.shape[-1] == 1:
        return True
    return bool((x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all())


# ITU-R BT.601 luma weights: what PIL's convert("L") uses.
LUMA = (0.299, 0.587, 0.114)


def to_gray(image) -> np.ndarray:
    """[H, W, 3] floats -> the same shape with every channel the luma (BT.601) of the pixel."""
    x = np.asarray(image, np.float32)
    luma = np.clip(x[..., :3] @ np.asarray(LUMA, np.float32), 0.0, 1.0)
    return np.repeat(luma[..., None], 3, axis=-1)


def check_output(out) -> pathlib.Path:
    """The output path, refused before any work when its suffix or folder is wrong."""
    p = pathlib.Path(out)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"--out={str(out)!r} must end in one of {', '.join(OUTPUT_SUFFIXES)} "
            "(the suffix picks the format)."
        )
    if not p.resolve().parent.is_dir():
        raise FileNotFoundError(
            f"Output folder {str(p.resolve().parent)!r} does not exist; create it first."
        )
    return p


def check_size(size, in_size: tuple[int, int]) -> tuple[int, int]:
    """Validates an output size (h, w) against the input size; returns it as ints."""
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"Size must be two integers (height, width), got {size!r}.") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"Output size must be positive, got {w}x{h} (width x height).")
    if max(h, w) > MAX_SIDE or h > MAX_GROWTH * in_size[0] or w > MAX_GROWTH * in_size[1]:
        raise ValueError(
            f"Output size {w}x{h} is too large for a {in_size[1]}x{in_size[0]} input; "
            f"keep each side at most {MAX_SIDE} px and at most {MAX_GROWTH:g}x the input."
        )
    return h, w


def as_float_image(image) -> jax.Array:
    """[H, W, 3] uint8 or float in [0, 1] (or RGBA / grey) -> float32 RGB in [0, 1].

    Floats outside [0, 1] are refused rather than clipped (a 0-255 float image would
    otherwise turn white); RGBA is composited over white.
    """
    # numpy, not jnp: eager jnp ops compile a small program for every new photo size.
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Expected an image shaped [H, W, 3], got shape {tuple(x.shape)}.")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) * np.float32(1 / 255)  # bit for bit XLA's x / 255
    elif np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"Integer images must be uint8, got {x.dtype}; scale to [0, 1] floats.")
    x = x.astype(np.float32)
    lo, hi = float(np.min(x)), float(np.max(x))
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(
            f"Float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
            "divide 0-255 data by 255."
        )
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] == 4:
        x = x[..., :3] * x[..., 3:] + (1.0 - x[..., 3:])
    return jax.device_put(np.clip(x, 0.0, 1.0))  # jnp.asarray compiles a copy per shape
