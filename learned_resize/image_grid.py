"""PNG grids of resizer outputs, like the paper's figures: input | bilinear | learned."""

import numpy as np
from PIL import Image


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats (any channel count) -> HxWx3 uint8."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.round(x * 255.0).astype(np.uint8)


def _fit(img: np.ndarray, height: int) -> np.ndarray:
    """Scales `img` to `height` rows with nearest neighbour, so resized pixels stay visible."""
    h, w = img.shape[:2]
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.NEAREST))


def resizer_grid(columns: list[np.ndarray], cell: int = 96, pad: int = 4) -> np.ndarray:
    """Lays out examples in rows and `columns` side by side.

    Args:
      columns: arrays [N, h_i, w_i, C] of floats in [0, 1], one per column
        (e.g. input image, bilinear output, learned-resizer output).
      cell: display height of every cell in pixels.
      pad: white border between cells.

    Returns:
      One uint8 RGB image.
    """
    n = columns[0].shape[0]
    rows = []
    for i in range(n):
        cells = [_fit(_to_uint8(col[i]), cell) for col in columns]
        widths = [c.shape[1] for c in cells]
        row = np.full((cell, sum(widths) + pad * (len(cells) - 1), 3), 255, np.uint8)
        x = 0
        for c in cells:
            row[:, x : x + c.shape[1]] = c
            x += c.shape[1] + pad
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    grid = np.full((n * cell + pad * (n - 1), width, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        grid[i * (cell + pad) : i * (cell + pad) + cell, : r.shape[1]] = r
    return grid
