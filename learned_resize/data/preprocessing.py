"""Decoding and augmentation of single images (pure functions of their inputs).

`train_preprocess` and `eval_preprocess` take a decoded PIL image. The input
pipeline calls `decode_train_example` and `decode_eval_example` instead, which
take the encoded bytes and produce the same arrays up to resampling error: they
read the image's size from its header first, so they know the region and the
output size before decoding, and decode a JPEG at the smallest DCT scale (1/2,
1/4 or 1/8, PIL's draft mode) whose pixels still cover that region at least at
the output resolution, so the resize that follows still shrinks. An ImageNet
photo cropped to 224 px then decodes 4-16x fewer pixels; the README
("Performance" at commit 80bc7f2) and bench/input_pipeline.py have the measured speed-up, and
tests/test_preprocessing.py bounds the difference from a full decode. Other formats
(PNG) decode fully, exactly as before.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import PIL.Image

# Aspect ratios (width / height) of the inception crop, sampled log-uniformly.
ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
# Tries at a random crop box before falling back to a central crop.
_CROP_ATTEMPTS = 10
# PIL resampling for every resize: bilinear, antialiased when shrinking.
_RESAMPLE = PIL.Image.Resampling.BILINEAR

# (width, height) of the full image -> the smallest (width, height) it may be decoded at.
DraftRequest = Callable[[tuple[int, int]], tuple[int, int]]


def _decode(data, channels: int, request: DraftRequest | None = None):
    """Returns (image, scale) or None if corrupt: the image decoded at 1/scale of its size.

    `request`, when given, is called with the full size before anything is decoded; a JPEG
    is then decoded at the largest scale in (8, 4, 2, 1) that keeps it at least that large.
    """
    if isinstance(data, np.ndarray):
        data = data.item()
    mode = "L" if channels == 1 else "RGB"
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            scale = 1
            if request is not None:
                width, height = image.size
                drafted = image.draft(None, request(image.size))  # None unless a JPEG.
                if drafted is not None:
                    scale = round(width / drafted[1][2])
            image.load()  # Decodes now, so truncated data fails here.
            return (image if image.mode == mode else image.convert(mode)), scale
    except Exception:  # PIL raises many types for corrupt data.
        return None


def decode_image(data: bytes, channels: int) -> PIL.Image.Image | None:
    """Decodes PNG/JPEG/... bytes to a PIL image with 1 or 3 channels; None if corrupt."""
    decoded = _decode(data, channels)
    return None if decoded is None else decoded[0]


def to_array(image: PIL.Image.Image) -> np.ndarray:
    """PIL image -> uint8 [H, W, C]."""
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def sample_crop_box(
    rng: np.random.Generator, height: int, width: int, min_area: float
) -> tuple[int, int, int, int]:
    """Samples an Inception-style crop box (top, left, crop_height, crop_width).

    The box covers a uniform fraction in [min_area, 1] of the image area, with
    an aspect ratio log-uniform in ASPECT_RATIO_RANGE; after _CROP_ATTEMPTS
    draws that do not fit, it is the largest central box within that ratio range.
    """
    area = height * width
    log_low, log_high = np.log(ASPECT_RATIO_RANGE[0]), np.log(ASPECT_RATIO_RANGE[1])
    for _ in range(_CROP_ATTEMPTS):
        target_area = area * rng.uniform(min_area, 1.0)
        aspect = math.exp(rng.uniform(log_low, log_high))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    aspect = width / height
    if aspect < ASPECT_RATIO_RANGE[0]:
        crop_w, crop_h = width, min(height, round(width / ASPECT_RATIO_RANGE[0]))
    elif aspect > ASPECT_RATIO_RANGE[1]:
        crop_w, crop_h = min(width, round(height * ASPECT_RATIO_RANGE[1])), height
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _eval_resize_size(
    height: int, width: int, image_size: tuple[int, int], crop_fraction: float
) -> tuple[int, int]:
    """(height, width) the eval resize gives an image before the center crop."""
    out_h, out_w = image_size
    # The side that needs the larger scale (the shorter one for a square output) is set to
    # its target size; the other follows the aspect ratio, but never falls below the crop.
    if out_h * width >= out_w * height:
        new_h = max(out_h, round(out_h / crop_fraction))
        new_w = max(out_w, round(width * new_h / height))
    else:
        new_w = max(out_w, round(out_w / crop_fraction))
        new_h = max(out_h, round(height * new_w / width))
    return new_h, new_w


def _resize_and_center_crop(image, new_size: tuple[int, int], image_size: tuple[int, int]):
    new_h, new_w = new_size
    out_h, out_w = image_size
    if (new_h, new_w) != (image.height, image.width):
        image = image.resize((new_w, new_h), _RESAMPLE)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return to_array(image)[top : top + out_h, left : left + out_w]


def eval_preprocess(
    image: PIL.Image.Image, image_size: tuple[int, int], crop_fraction: float
) -> np.ndarray:
    """Resizes the shorter side to image_size / crop_fraction, then center-crops image_size."""
    new_size = _eval_resize_size(image.height, image.width, image_size, crop_fraction)
    return _resize_and_center_crop(image, new_size, image_size)


def _crop_and_resize(
    image: PIL.Image.Image,
    box: tuple[int, int, int, int],
    image_size: tuple[int, int],
    scale: int = 1,
) -> np.ndarray:
    """Crops box (top, left, height, width, in full-size pixels) and resizes it to image_size.

    `scale` > 1: `image` was decoded at 1/scale of the full size; the box is mapped to it
    with fractional pixel coordinates.
    """
    top, left, crop_h, crop_w = box
    out_h, out_w = image_size
    if scale == 1:
        # Crop first so the resize filter sees only the box, as in the reference recipe.
        image = image.crop((left, top, left + crop_w, top + crop_h))
        if image.size != (out_w, out_h):
            image = image.resize((out_w, out_h), _RESAMPLE)
    else:
        scaled = (left / scale, top / scale, (left + crop_w) / scale, (top + crop_h) / scale)
        image = image.resize((out_w, out_h), _RESAMPLE, box=scaled)
    return to_array(image)


def _random_flip(array: np.ndarray, rng: np.random.Generator, flip: bool) -> np.ndarray:
    if flip and rng.random() < 0.5:
        return array[:, ::-1]  # A view: the batch's np.stack makes the copy.
    return array


def train_preprocess(
    image: PIL.Image.Image,
    rng: np.random.Generator,
    *,
    image_size: tuple[int, int],
    crop: str,
    min_area: float,
    flip: bool,
    eval_crop_fraction: float,
) -> np.ndarray:
    """Random-resized crop (or the eval crop) to image_size, then a random flip."""
    if crop == "inception":
        box = sample_crop_box(rng, image.height, image.width, min_area)
        array = _crop_and_resize(image, box, image_size)
    else:
        array = eval_preprocess(image, image_size, eval_crop_fraction)
    return _random_flip(array, rng, flip)


def decode_eval_example(
    data: bytes,
    channels: int,
    image_size: tuple[int, int],
    crop_fraction: float,
    reduced: bool = True,
) -> np.ndarray | None:
    """`eval_preprocess(decode_image(data, channels), ...)`, decoding JPEGs reduced when
    `reduced`; None if the data cannot be decoded."""
    sizes = {}

    def request(full_size):
        sizes["new"] = _eval_resize_size(full_size[1], full_size[0], image_size, crop_fraction)
        return sizes["new"][1], sizes["new"][0]

    decoded = _decode(data, channels, request if reduced else None)
    if decoded is None:
        return None
    image = decoded[0]
    new_size = sizes.get("new") or _eval_resize_size(
        image.height, image.width, image_size, crop_fraction
    )
    return _resize_and_center_crop(image, new_size, image_size)


def decode_train_example(
    data: bytes,
    rng: np.random.Generator,
    *,
    channels: int,
    image_size: tuple[int, int],
    crop: str,
    min_area: float,
    flip: bool,
    eval_crop_fraction: float,
    reduced: bool = True,
) -> np.ndarray | None:
    """`train_preprocess(decode_image(data, channels), rng, ...)`, decoding JPEGs reduced when
    `reduced` (the same random draws, so the same crop box and flip); None if corrupt."""
    if crop != "inception":
        array = decode_eval_example(data, channels, image_size, eval_crop_fraction, reduced)
        return None if array is None else _random_flip(array, rng, flip)
    out_h, out_w = image_size
    boxes = []

    def request(full_size):
        boxes.append(sample_crop_box(rng, full_size[1], full_size[0], min_area))
        _, _, crop_h, crop_w = boxes[0]
        # The box must keep at least out_h x out_w pixels after the reduction.
        keep = max(out_h / crop_h, out_w / crop_w)
        return math.ceil(full_size[0] * keep), math.ceil(full_size[1] * keep)

    decoded = _decode(data, channels, request if reduced else None)
    if decoded is None:
        return None
    image, scale = decoded
    if not boxes:  # Decoded at full size without a request: sample the box now.
        boxes.append(sample_crop_box(rng, image.height, image.width, min_area))
    return _random_flip(_crop_and_resize(image, boxes[0], image_size, scale), rng, flip)
