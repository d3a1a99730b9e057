"""The 'multi' operator (crop around the mask, then protected seams) against numpy."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from learned_resize.retarget import __main__ as cli
from learned_resize.retarget import api, multi, operators, plans, seams


def _image(h, w, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random((h, w, 3)), jnp.float32)


def _best_start(weight, length):
    """Brute force: the start of the window of length with the largest sum."""
    sums = [weight[s : s + length].sum() for s in range(len(weight) - length + 1)]
    return int(np.argmax(sums))


def _graded_mask(h, w, seed=1):
    """A blob plus small random weights everywhere: the best window is unique."""
    rng = np.random.default_rng(seed)
    mask = 0.2 * rng.random((h, w))
    mask[6:14, 20:28] = 1.0
    return mask.astype(np.float32)


def _apply(plan, image, size):
    return np.asarray(operators.apply_plan(plan, image[None], size)[0])


def test_crop_fraction_one_is_the_crop_keeping_the_most_mask():
    image, mask = _image(20, 32), _graded_mask(20, 32)
    plan, note = multi.multi_plan(image, (20, 16), jnp.asarray(mask), crop_fraction=1.0)
    x0 = _best_start(mask.sum(axis=0), 16)
    assert note == "" and len(plan) == 1 and plan[0].axis == 1
    expected = (x0 + np.arange(16) + 0.5) / 32
    np.testing.assert_allclose(np.asarray(plan[0].coords), np.tile(expected, (20, 1)), atol=1e-6)
    np.testing.assert_allclose(_apply(plan, image, (20, 16)), np.asarray(image)[:, x0 : x0 + 16])


def test_both_axes_crop_the_best_rectangle_then_enlarge_by_seams():
    image, mask = _image(20, 32), _graded_mask(20, 32)
    plan, _ = multi.multi_plan(image, (12, 16), jnp.asarray(mask), crop_fraction=1.0)
    x0 = _best_start(mask.sum(axis=0), 16)
    y0 = _best_start(mask[:, x0 : x0 + 16].sum(axis=1), 12)
    assert [s.axis for s in plan] == [1, 0]
    ref = np.asarray(image)[y0 : y0 + 12, x0 : x0 + 16]
    np.testing.assert_allclose(_apply(plan, image, (12, 16)), ref, atol=1e-6)
    # Enlarging is left to the seams (no crop): the plan is the seam plan itself.
    big, _ = multi.multi_plan(image, (24, 40), jnp.asarray(mask), crop_fraction=0.75)
    ref_plan = seams.seam_plan(image, (24, 40), mask=jnp.asarray(mask), grid=(20, 32))
    assert len(big) == len(ref_plan) == 2
    for a, b in zip(big, ref_plan):
        assert a.axis == b.axis
        np.testing.assert_array_equal(np.asarray(a.coords), np.asarray(b.coords))


def test_crop_fraction_zero_is_the_seam_plan():
    image, mask = _image(16, 24, 2), jnp.asarray(_graded_mask(16, 24, 3))
    for fallback in (False, True):
        got, note = multi.multi_plan(image, (16, 17), mask, crop_fraction=0.0, fallback=fallback)
        ref, ref_note = multi.seam_plan_for(image, (16, 17), mask, 1, fallback=fallback)
        assert note == ref_note and len(got) == len(ref) == 1
        np.testing.assert_array_equal(np.asarray(got[0].coords), np.asarray(ref[0].coords))
    ref = seams.seam_plan(image, (16, 17), mask=mask)
    np.testing.assert_array_equal(np.asarray(got[0].coords), np.asarray(ref[0].coords))


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_source_columns_are_increasing_and_inside_the_crop_window(fraction):
    image, mask = _image(24, 40, 4), _graded_mask(24, 40, 5)
    plan, _ = multi.multi_plan(image, (24, 20), jnp.asarray(mask), crop_fraction=fraction)
    y0, x0, h_c, w_c = multi.crop_window(mask, (24, 40), (24, 20), fraction)
    assert (y0, h_c) == (0, 24) and w_c == 40 - round(fraction * 20)
    cols = np.asarray(plan[0].coords) * 40 - 0.5  # pixel positions
    assert cols.shape == (24, 20)
    assert (np.diff(cols, axis=1) > 0.5).all()  # strictly increasing, no pixel twice
    assert cols.min() >= x0 - 1e-4 and cols.max() <= x0 + w_c - 1 + 1e-4
    # Whole pixels only (the plan is decided on the image's own grid).
    np.testing.assert_allclose(cols, np.round(cols), atol=1e-4)


def test_the_masked_subject_is_kept_pixel_for_pixel():
    # Smooth background, a textured subject off centre; the mask covers the subject.
    h, w = 32, 48
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx / w, yy / h, 0.5 + 0 * xx], -1).astype(np.float32)
    subject = np.random.default_rng(6).random((16, 12, 3)).astype(np.float32)
    image[8:24, 30:42] = subject
    mask = np.zeros((h, w), np.float32)
    mask[8:24, 30:42] = 1.0
    for size in ((32, 24), (28, 20)):
        plan, _ = multi.multi_plan(
            jnp.asarray(image), size, jnp.asarray(mask), crop_fraction=0.75, fallback=True
        )
        out = _apply(plan, jnp.asarray(image), size)
        windows = np.lib.stride_tricks.sliding_window_view(out, (16, 12, 3))[..., 0, :, :, :]
        best = np.abs(windows - subject).max(axis=(-3, -2, -1)).min()
        assert best < 1e-5, (size, best)


def test_remove_and_bad_values():
    image, mask = _image(16, 32, 7), jnp.zeros((1, 16, 32))
    remove = jnp.zeros((16, 32)).at[:, 4:8].set(1.0)
    plan, _ = plans.make_plan("multi", image, (16, 24), mask, 1, fallback=True, remove=remove)
    cols = np.round(np.asarray(plan[0].coords) * 32 - 0.5).astype(int)
    assert not np.isin(cols, np.arange(4, 8)).any()  # the object is gone from every row
    with pytest.raises(ValueError, match="multi or config.operator=seam"):
        plans.make_plan("crop", image, (16, 24), mask, remove=remove)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        multi.multi_plan(image, (16, 24), None, crop_fraction=1.5)
    cfg = api.get_config()
    assert cfg.operator == "multi" and cfg.crop_fraction == 0.75
    cfg.crop_fraction = -0.1
    with pytest.raises(ValueError, match="crop_fraction"):  # before any weights load
        cli.run(None, (None, None, None), "out.png", cfg, False)
    cfg.crop_fraction, cfg.operator = 0.5, "magic"
    with pytest.raises(ValueError, match="Unknown operator 'magic'"):
        cli.run(None, (None, None, None), "out.png", cfg, False)


def test_cli_reports_a_bad_crop_fraction_in_one_line():
    cmd = [sys.executable, "-m", "learned_resize.retarget", "--config.crop_fraction=2.0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: config.crop_fraction must be a number in [0, 1], got 2.0."]
