"""Plans (`retarget/operators.py`): one plan at every layer's scale, uniform scaling and
center crop against numpy."""

import jax.numpy as jnp
import numpy as np

from learned_resize.retarget import operators, seams


def test_plan_is_consistent_across_layer_scales():
    # Columns constant down each row make every seam a straight column, so the plan
    # decided on the 2x coarser grid removes whole columns of that grid.
    rng = np.random.default_rng(5)
    image = np.repeat(rng.random((1, 24, 3)), 16, axis=0).astype(np.float32)
    plan = seams.seam_plan(jnp.asarray(image), (16, 16), grid=(8, 12))
    cols = np.asarray(plan[0].coords) * 12 - 0.5  # source columns on the coarse grid
    np.testing.assert_allclose(cols, np.round(cols), atol=1e-4)
    cols = np.round(cols[0]).astype(int)
    assert len(set(cols)) == 8 and np.all(np.diff(cols) > 0)

    # A stride-2 "layer": 2x2 block means. At its own scale the plan selects columns.
    coarse_in = image.reshape(8, 2, 12, 2, 3).mean(axis=(1, 3))
    coarse = np.asarray(operators.apply_plan(plan, jnp.asarray(coarse_in)[None], (8, 8))[0])
    np.testing.assert_allclose(coarse, coarse_in[:, cols], atol=1e-5)

    # At stride 1 the same plan keeps the two pixels of every kept block whose
    # neighbours are kept too, so block means of the fine result equal the coarse
    # result there; only next to a removed column is the fine result interpolated.
    fine = np.asarray(operators.apply_plan(plan, jnp.asarray(image)[None], (16, 16))[0])
    inner = [j for j in range(1, 7) if cols[j - 1] == cols[j] - 1 and cols[j + 1] == cols[j] + 1]
    assert inner
    for j in inner:
        np.testing.assert_allclose(
            fine[:, 2 * j : 2 * j + 2], image[:, 2 * cols[j] : 2 * cols[j] + 2], atol=1e-5
        )
    fine_blocks = fine.reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(fine_blocks[:, inner], coarse[:, inner], atol=1e-5)


def test_uniform_plan_is_linear_scaling():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.random((2, 10, 12, 5)), jnp.float32)
    out = operators.apply_plan((), x, (10, 6))
    # Halving the width with a triangle filter: weights (1/8, 3/8, 3/8, 1/8) inside.
    xn = np.asarray(x)
    ref = 0.125 * xn[:, :, 1:-3:2] + 0.375 * (xn[:, :, 2:-2:2] + xn[:, :, 3:-1:2])
    ref += 0.125 * xn[:, :, 4::2]
    np.testing.assert_allclose(np.asarray(out)[:, :, 1:-1], ref[:, :, :4], atol=1e-5)


def test_center_crop_matches_slicing():
    rng = np.random.default_rng(7)
    image = rng.random((10, 15, 3)).astype(np.float32)
    out = np.asarray(operators.center_crop(jnp.asarray(image), (6, 9)))
    np.testing.assert_allclose(out, image[2:8, 3:12], atol=1e-6)
