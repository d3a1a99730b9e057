"""What the CLI and the benches show: classical baselines and the comparison grid."""

import jax
import numpy as np

from learned_resize.retarget import api, buckets, operators, seams
from learned_resize.retarget import mask as mask_lib

# The comparison is drawn at most this many px on a side: the baselines of a larger photo
# are computed on it scaled to this (pixel seam carving a 12-megapixel photo takes
# hours), and larger cells are scaled down.
PREVIEW_SIDE = 768


def _preview(x: np.ndarray) -> np.ndarray:
    factor = PREVIEW_SIDE / max(x.shape[:2])
    if factor >= 1:
        return x
    size = tuple(max(1, round(n * factor)) for n in x.shape[:2])
    return buckets.resize_image(np.asarray(x, np.float32), size)


def baselines(image, size: tuple[int, int], mask: jax.Array | None = None) -> dict[str, np.ndarray]:
    """The classical comparisons: uniform scaling, center crop, pixel seam carving.

    Args:
      image: [H, W, 3] uint8 or float in [0, 1].
      size: output (height, width).
      mask: optional importance mask [h_m, w_m]; pixel seam carving then avoids it too
        (the classical operator, as in Avidan & Shamir, uses only gradient energy).

    Returns:
      name -> [h, w, 3] float32 arrays in [0, 1]; for a photo larger than PREVIEW_SIDE,
      computed on it and size scaled to that longer side.
    """
    image = api.as_float_image(image)
    size = api.check_size(size, image.shape[:2])
    factor = PREVIEW_SIDE / max(image.shape[:2])
    if factor < 1:
        image = _preview(image)
        size = tuple(max(1, round(n * factor)) for n in size)
    return {
        "uniform": np.asarray(operators.uniform_scale(image[None], size)[0]),
        "crop": np.asarray(operators.center_crop(image, size)),
        "seam_carving": np.asarray(seams.seam_carve(image, size, mask)),
    }


def to_uint8(image) -> np.ndarray:
    """[H, W, 3] floats in [0, 1] -> uint8."""
    return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


_LABELS = {
    "input": "input",
    "uniform": "uniform scaling",
    "crop": "center crop",
    "seam_carving": "pixel seam carving",
    "seam_carving+mask": "pixel seams + mask",
    "ours": "ours (deep features)",
    "mask": "importance mask",
}


def comparison_grid(
    image: jax.Array, columns: dict[str, np.ndarray], mask: jax.Array | None = None, pad: int = 6
) -> np.ndarray:
    """One row: the input, each retargeted result at its true size, the mask overlay.

    Args:
      image: [H, W, 3] input in [0, 1].
      columns: name -> [h, w, 3] result in [0, 1] (names as in `baselines`, plus 'ours').
      mask: importance mask [h_m, w_m] drawn over the input as the last column.
      pad: white gap between columns.

    Returns:
      uint8 [label + max height, total width, 3], a label above every column; cells
      longer than PREVIEW_SIDE are scaled down to it.
    """
    from PIL import Image, ImageDraw  # only the grid needs PIL drawing

    image = _preview(np.asarray(image))
    cells = [("input", to_uint8(image))]
    cells += [(name, to_uint8(_preview(np.asarray(x)))) for name, x in columns.items()]
    if mask is not None:
        cells.append(("mask", mask_lib.overlay(image, np.asarray(mask))))
    label_h = 16
    height = max(c.shape[0] for _, c in cells)
    width = sum(c.shape[1] for _, c in cells) + pad * (len(cells) - 1)
    canvas = Image.new("RGB", (width, height + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for name, cell in cells:
        canvas.paste(Image.fromarray(cell), (x, label_h))
        draw.text((x + 2, 2), _LABELS.get(name, name), fill="black")
        x += cell.shape[1] + pad
    return np.asarray(canvas)
