"""The comparison grid: cells of a large photo keep their sizes relative to the input."""

import numpy as np

from learned_resize.retarget import report


def test_preview_size_scales_by_the_inputs_factor():
    # 1280x720 -> longer side 768: factor 0.6, applied to any size of that photo.
    assert report.preview_size((720, 1280), (720, 1280)) == (432, 768)
    assert report.preview_size((720, 1280), (720, 960)) == (432, 576)
    assert report.preview_size((720, 1280), (1440, 1280)) == (864, 768)
    assert report.preview_size((300, 400), (300, 300)) == (300, 300)  # small: unchanged


def test_grid_of_a_large_photo_draws_every_cell_at_the_inputs_scale():
    # A 1280x720 photo narrowed to 960 wide: the baselines arrive at the preview size
    # (432x576, as `baselines` computes them), ours at full size; every result cell must
    # be 432x576 next to the 432x768 input, each filled with its own colour.
    image = np.zeros((720, 1280, 3), np.float32)
    colours = {"uniform": 0.2, "crop": 0.4, "seam_carving": 0.6, "ours": 0.8}
    columns = {
        name: np.full((720, 960, 3) if name == "ours" else (432, 576, 3), v, np.float32)
        for name, v in colours.items()
    }
    grid = report.comparison_grid(image, columns, pad=6)
    label = 16
    assert grid.shape == (label + 432, 768 + 4 * 576 + 4 * 6, 3)
    x = 768 + 6
    for v in colours.values():
        cell = grid[label:, x : x + 576]
        np.testing.assert_array_equal(cell, round(v * 255))  # the whole cell, one colour
        np.testing.assert_array_equal(grid[label:, x + 576 : x + 582], 255)  # white gap
        x += 582
