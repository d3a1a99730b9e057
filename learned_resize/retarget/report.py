"""What the CLI and the benches show: classical baselines and the comparison grid."""

import jax
import numpy as np

from learned_resize.retarget import api, buckets, operators, seams
from learned_resize.retarget import mask as mask_lib

# The comparison is drawn at most this many px on a side: the baselines of a larger photo
# are computed on it scaled to this (pixel seam carving a 12-megapixel photo takes
# hours), and every cell is drawn at the scale that brings the input to it.
PREVIEW_SIDE = 768


def preview_size(in_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """size (h, w) scaled by the factor that brings in_size's longer side to
    PREVIEW_SIDE (unchanged for a photo no larger than that)."""
    factor = min(1.0, PREVIEW_SIDE / max(in_size))
    return tuple(max(1, round(n * factor)) for n in size)


def _resized(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x if x.shape[:2] == tuple(size) else buckets.resize_image(x, size)


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
    size = preview_size(image.shape[:2], size)
    image = _resized(image, preview_size(image.shape[:2], image.shape[:2]))
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

    For a photo longer than PREVIEW_SIDE, every cell is scaled by the one factor that
    brings the input to it, so the cells keep their sizes relative to the input.

    Args:
      image: [H, W, 3] input in [0, 1].
      columns: name -> [h, w, 3] results of one output size in [0, 1] (names as in
        `baselines`, plus 'ours'), each at that size or already at its preview size
        (as `baselines` returns them).
      mask: importance mask [h_m, w_m] drawn over the input as the last column.
      pad: white gap between columns.

    Returns:
      uint8 [label + max height, total width, 3], a label above every column.
    """
    from PIL import Image, ImageDraw  # only the grid needs PIL drawing

    in_size = np.shape(image)[:2]
    image = _resized(image, preview_size(in_size, in_size))
    out_size = max((np.shape(x)[:2] for x in columns.values()), default=in_size)
    out_size = preview_size(in_size, out_size)
    cells = [("input", to_uint8(image))]
    cells += [(name, to_uint8(_resized(x, out_size))) for name, x in columns.items()]
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
