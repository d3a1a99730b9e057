"""Any-aspect-ratio preprocessing: fit the whole image into the canvas, pad the rest.

`config.data.aspect` selects how the input pipeline brings an image to the
resizer's input size (`config.input_size`, the canvas):

  'square'  the paper's: resize the shorter side (eval) or a random box (train)
            and crop to the canvas, stretching the train box to its shape;
  'pad'     keep the aspect ratio: scale the image (eval: after the central
            `eval_crop_fraction` of each side; train: the random box) so that its
            LONGER side fits the canvas, centre it and fill the rest with black,
            like a letterboxed video. Nothing is cropped away or stretched.

The learned resizer then maps the padded canvas to the classifier's square input;
it sees every pixel of the image and learns what the black bars are. `fit_and_pad`
also returns the mask of real pixels, for code that wants to weight or ignore the
padding; the trainer does not use it. `input_pipeline` calls `decode_train_pad` and
`decode_eval_pad` in place of `preprocessing`'s decoders when the mode is 'pad' (full
decodes: JPEG draft decoding is for the square crops).
"""

import numpy as np
import PIL.Image

from learned_resize.data import preprocessing

MODES = ("square", "pad")
# As the square pipeline: bilinear, antialiased when shrinking (PIL's behaviour).
_RESAMPLE = PIL.Image.Resampling.BILINEAR


def fit_size(height: int, width: int, canvas: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a height x width image scaled, aspect ratio kept, to fit in `canvas`."""
    scale = min(canvas[0] / height, canvas[1] / width)
    return (
        min(canvas[0], max(1, round(height * scale))),
        min(canvas[1], max(1, round(width * scale))),
    )


def fit_and_pad(image: PIL.Image.Image, canvas: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Scales `image` to fit `canvas` (h, w) and centres it on a black canvas.

    Returns:
      (uint8 [h, w, C] canvas, bool [h, w] mask of the pixels that come from the image).
    """
    h, w = fit_size(image.height, image.width, canvas)
    if (h, w) != (image.height, image.width):
        image = image.resize((w, h), _RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    top, left = (canvas[0] - h) // 2, (canvas[1] - w) // 2
    out = np.zeros((*canvas, array.shape[-1]), np.uint8)
    out[top : top + h, left : left + w] = array
    mask = np.zeros(canvas, bool)
    mask[top : top + h, left : left + w] = True
    return out, mask


def central_crop(image: PIL.Image.Image, fraction: float) -> PIL.Image.Image:
    """The central `fraction` of each side of `image` (all of it for fraction 1)."""
    if fraction >= 1:
        return image
    h = max(1, round(image.height * fraction))
    w = max(1, round(image.width * fraction))
    top, left = (image.height - h) // 2, (image.width - w) // 2
    return image.crop((left, top, left + w, top + h))


def eval_pad(image: PIL.Image.Image, canvas: tuple[int, int], crop_fraction: float) -> np.ndarray:
    """The eval preprocessing of the 'pad' mode: central crop fraction, fit, pad."""
    return fit_and_pad(central_crop(image, crop_fraction), canvas)[0]


def train_pad(
    image: PIL.Image.Image,
    rng: np.random.Generator,
    *,
    image_size: tuple[int, int],
    crop: str,
    min_area: float,
    flip: bool,
    eval_crop_fraction: float,
) -> np.ndarray:
    """The 'pad' mode's train preprocessing: random box (or central crop), fit, pad, flip."""
    if crop == "inception":
        top, left, h, w = preprocessing.sample_crop_box(rng, image.height, image.width, min_area)
        image = image.crop((left, top, left + w, top + h))
    else:
        image = central_crop(image, eval_crop_fraction)
    array = fit_and_pad(image, image_size)[0]
    if flip and rng.random() < 0.5:  # The same draw order as the square mode.
        array = array[:, ::-1]
    return array


def decode_train_pad(data: bytes, rng: np.random.Generator, *, channels: int, reduced=True, **kw):
    """`train_pad` of the decoded bytes; None if they cannot be decoded."""
    del reduced  # Always a full decode.
    image = preprocessing.decode_image(data, channels)
    return None if image is None else train_pad(image, rng, **kw)


def decode_eval_pad(data: bytes, channels: int, image_size, crop_fraction, reduced=True):
    """`eval_pad` of the decoded bytes; None if they cannot be decoded."""
    del reduced
    image = preprocessing.decode_image(data, channels)
    return None if image is None else eval_pad(image, image_size, crop_fraction)
