"""Large photos: planned and reconstructed at a bounded working size, carried to full size.

The full-resolution output must be the photo's own pixels wherever the plan copies
them; checked on noise (every value unique in its row, so an exact match names its
source column) against numpy, not against the code's own index arithmetic.
"""

import numpy as np
import pytest

from learned_resize.retarget import api, buckets, validation
from tests.helpers.stand_in_vgg import nets, small_config

FULL = (1500, 2000)  # h, w: a large synthetic photo (a 12-megapixel one is in the bench)
OUT = (1500, 1500)  # 3/4 width


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(11)
    # Dark faint noise (unique values) around a bright block the stand-in's mask marks:
    # seams take the background.
    image = 0.02 * rng.random(FULL + (3,), dtype=np.float32)
    image[500:1000, 800:1200] = 0.5 + 0.5 * rng.random((500, 400, 3), dtype=np.float32)
    return image


def _run(photo, operator):
    cfg = small_config(api)
    cfg.operator = operator
    cfg.work_side = 256
    net19, net16 = nets()
    return api.retarget_details(photo, OUT, config=cfg, vgg19=net19, vgg16=net16, log=None)


def _source_columns(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """[h, w] column of the same input row holding exactly out's pixel (all 3 channels),
    -1 where no input pixel of that row equals it."""
    found = np.full(out.shape[:2], -1)
    for y in range(out.shape[0]):
        order = np.argsort(image[y, :, 0], kind="stable")
        keys = image[y, order, 0]
        first = np.searchsorted(keys, out[y, :, 0])
        for k in range(2):  # a rare equal first channel: try the next key too
            cols = order[np.clip(first + k, 0, len(keys) - 1)]
            same = np.all(image[y, cols] == out[y], axis=-1) & (found[y] < 0)
            found[y] = np.where(same, cols, found[y])
    return found


def test_a_crop_is_the_full_resolution_crop_and_solves_nothing(photo):
    result = _run(photo, "crop")
    assert result.work_size == ((192, 256), (192, 192))
    assert result.solves == []  # a crop copies every pixel: nothing to reconstruct
    x0 = (FULL[1] - OUT[1]) // 2
    np.testing.assert_array_equal(np.asarray(result.image), photo[:, x0 : x0 + OUT[1]])


def test_multi_copies_full_resolution_pixels_away_from_its_seams(photo):
    result = _run(photo, "multi")
    out = np.asarray(result.image)
    assert out.shape == OUT + (3,)
    (h_w, w_w), (h_o, w_o) = result.work_size
    assert max(h_w, w_w) <= 256 and (h_o, w_o) == (192, 192)
    assert result.solves  # seams were reconstructed
    # Where the working-size reconstruction weight is 0 (rows and columns a few working
    # px inside those regions, so the upsampling kernel does not reach them), every
    # output pixel is the input pixel of its row, in runs of consecutive columns.
    weight = buckets.changed_weight(result.plan, (h_w, w_w), (h_o, w_o), 8)
    assert 0 < np.mean(weight > 0) < 1
    cold = weight == 0
    cold[:, 2:-2] &= cold[:, :-4] & cold[:, 4:]  # 2 working px clear on every side
    cold[2:-2] &= cold[:-4] & cold[4:]
    cold[:, :2] = cold[:, -2:] = cold[:2] = cold[-2:] = False
    rows = np.arange(OUT[0]) * h_o // OUT[0]
    cols = np.arange(OUT[1]) * w_o // OUT[1]
    copied = cold[rows][:, cols]
    assert copied.mean() > 0.1  # the subject and the background between the seams
    source = _source_columns(photo, out)
    assert np.all(source[copied] >= 0)
    both = copied[:, 1:] & copied[:, :-1]
    steps = np.diff(source, axis=1)[both]
    assert np.mean(steps == 1) > 0.99  # runs of neighbours (a few run ends meet a seam)
    # The subject block, which the mask protects, is in the output pixel for pixel.
    centre = out[700:800]
    assert np.all(_source_columns(photo[700:800], centre)[:, 600:900] >= 0)


def test_the_working_size_keeps_the_aspect_ratio_and_bounds_the_longer_side():
    assert buckets.scaled_sizes((3024, 4032), (3024, 3024), 256) == ((192, 256), (192, 192))
    assert buckets.scaled_sizes((427, 640), (427, 480), 256) == ((171, 256), (171, 192))
    assert buckets.scaled_sizes((200, 100), (200, 50), 256) == ((200, 100), (200, 50))
    assert buckets.scaled_sizes((3024, 4032), (3024, 3024), 0) == ((3024, 4032), (3024, 3024))
    # Rounded to the bucket afterwards, as any photo.
    assert buckets.working_sizes((171, 256), (171, 192), 16) == ((176, 256), (176, 192))


def test_copy_plan_of_a_width_stage_takes_the_nearest_source_pixel():
    from learned_resize.retarget import operators

    # Working grid 4 wide -> 3 wide dropping column 1; on an 8-wide image each kept
    # working column covers two full-resolution pixels.
    coords = np.array([[0.5, 2.5, 3.5]]) / 4
    plan = (operators.Stage(np.tile(coords, (2, 1)).astype(np.float32), axis=1),)
    image = np.arange(8, dtype=np.float32)[None, :, None].repeat(2, 0)
    out = buckets.copy_plan(plan, image, (2, 6))[0, :, 0]
    # Output pixel j sits at p = (j + 0.5) / 2 - 0.5 on the coords' grid; the working
    # source position there (linear through 0.5, 2.5, 3.5, extrapolated past the ends)
    # times 2, less 0.5, is the full-resolution one: p = -0.25, 0.25, ..., 2.25 give
    # -0.5, 1.5, 3.5, 5.0, 6.0, 7.0; halves round up (and -0.5 is clipped to 0).
    assert list(out) == [0, 2, 4, 5, 6, 7]


def test_a_bad_working_side_is_refused_in_one_sentence():
    cfg = api.get_config()
    cfg.work_side = 10
    with pytest.raises(ValueError, match=r"config.work_side must be 0 .* \[64, 4096\]"):
        validation.check_config(cfg)


def test_the_three_carries_by_hand():
    # No stage (uniform scaling): the plan applied is a cubic resize. A 2x2 working
    # result carried to 4x4. A constant photo makes every resize of it that constant,
    # and the linear/cubic upsampling of a constant weight or change that constant.
    photo = np.full((4, 4, 1), 0.5, np.float32)
    work = np.full((2, 2, 1), 0.5, np.float32)
    rec = np.full((2, 2, 1), 0.7, np.float32)
    half = np.full((2, 2), 0.5, np.float32)
    for mode in ("blend", "change", "detail"):
        out = buckets.carry_to_full((), photo, (4, 4), work, rec, half, mode)
        # blend: 0.5 + (0.7 - 0.5) * 0.5; change: 0.5 + (0.7 - 0.5) * 0.5 upsampled;
        # detail: 0.5 + (0.7 - resize(0.5)) * 0.5 upsampled. All 0.6.
        np.testing.assert_allclose(out, 0.6, atol=1e-6, err_msg=mode)
    # Where the work image differs from the full photo brought down, change and detail
    # part: detail's reference is the full photo's own copy, not work.
    other_work = np.full((2, 2, 1), 0.4, np.float32)
    change = buckets.carry_to_full((), photo, (4, 4), other_work, rec, half, "change")
    detail = buckets.carry_to_full((), photo, (4, 4), other_work, rec, half, "detail")
    np.testing.assert_allclose(change, 0.5 + 0.3 * 0.5, atol=1e-6)
    np.testing.assert_allclose(detail, 0.6, atol=1e-6)
    # A zero weight leaves the photo's pixels, bit for bit, in every mode.
    rng = np.random.default_rng(0)
    photo = rng.random((4, 4, 3), dtype=np.float32)
    for mode in ("blend", "change", "detail"):
        out = buckets.carry_to_full((), photo, (4, 4), work, rec, np.zeros((2, 2)), mode)
        np.testing.assert_array_equal(out, photo)
