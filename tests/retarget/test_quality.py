"""The retargeting quality scores (`retarget/quality.py`) on cases whose values are known
by hand or computed independently with numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize.retarget import quality


def _photo(shape, seed=0):
    """A smooth random colour image in [0, 1] (every patch different)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((shape[0] + 4, shape[1] + 4, 3))
    smooth = sum(noise[i : i + shape[0], j : j + shape[1]] for i in range(4) for j in range(4))
    return (smooth / 16.0).astype(np.float32)


# ----------------------------------------------------------------------------- subject NCC


def test_shifted_copy_has_subject_ncc_one():
    image = _photo((40, 50))
    box = (12, 9, 30, 27)  # x0, y0, x1, y1
    out = np.roll(image, shift=(-5, 7), axis=(0, 1))  # the box now starts at (x 19, y 4)
    assert quality.subject_ncc(image, box, out) == pytest.approx(1.0, abs=1e-5)
    # An affine change of intensity keeps a normalised correlation of 1.
    assert quality.subject_ncc(image, box, 0.5 * out + 0.2) == pytest.approx(1.0, abs=1e-5)


def test_single_placement_ncc_is_the_pearson_correlation():
    image = _photo((30, 30), seed=1)
    box = (5, 6, 25, 22)
    template = image[6:22, 5:25]
    other = _photo((16, 20), seed=2)
    out = 0.6 * template + 0.4 * other  # the output is the size of the box: one placement
    t, o = template.ravel() - template.mean(), out.ravel() - out.mean()
    expected = float(t @ o / np.sqrt((t @ t) * (o @ o)))
    assert 0.3 < expected < 0.95
    assert quality.subject_ncc(image, box, out) == pytest.approx(expected, abs=1e-4)


def test_template_larger_than_the_output_is_shrunk_not_refused():
    image = _photo((40, 40), seed=3)
    flat = np.full((10, 10, 3), 0.5, np.float32)  # narrower than the 20-px box
    # A flat output has no variance: skimage reports 0 correlation there.
    assert quality.subject_ncc(image, (10, 10, 30, 30), flat) == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- artifacts


def test_identical_output_has_no_artifact():
    image = _photo((48, 64), seed=4)
    assert quality.artifact_score(image, image) == pytest.approx(0.0, abs=1e-3)


def test_a_copied_part_of_the_input_has_no_artifact_at_any_offset():
    # A crop's patches are the input's at an offset: of either parity, on either axis.
    image = _photo((48, 64), seed=5)
    for dy, dx in [(0, 0), (0, 13), (7, 0), (5, 26), (3, 11)]:
        out = image[dy : dy + 40, dx : dx + 37]
        assert quality.artifact_score(image, out) == pytest.approx(0.0, abs=1e-3), (dy, dx)


@pytest.mark.parametrize("blob_value", [1.0, 0.8])
def test_planted_blob_raises_the_artifact_score_by_its_contrast(blob_value):
    # A flat grey photo (0.5) and the same photo with a 32 x 32 blob. The input's
    # patches (and those of its uniformly scaled copy) are all flat 0.5, so each output
    # patch is 100 x its RMS distance from 0.5; every pixel of the low-passed output lies
    # between 0.5 and blob_value, and an 8 x 8 patch of the low-passed blob's interior
    # (16 x 16 after halving, stride 2) is blob_value everywhere: the worst patch is
    # 100 * |blob_value - 0.5| exactly.
    image = np.full((64, 64, 3), 0.5, np.float32)
    out = image.copy()
    out[16:48, 16:48] = blob_value
    assert quality.artifact_score(image, image) == pytest.approx(0.0, abs=1e-4)
    expected = 100.0 * abs(blob_value - 0.5)
    assert quality.artifact_score(image, out) == pytest.approx(expected, abs=1e-3)


# ----------------------------------------------------------------------------- completeness


class _Pointwise(nnx.Module):
    """A stand-in VGG-16 whose conv3_3 is a per-pixel ReLU(x W + b) with 256 channels."""

    def __init__(self):
        rng = np.random.default_rng(7)
        self.w = nnx.Param(jnp.asarray(rng.normal(size=(3, 256)), jnp.float32))
        self.b = nnx.Param(jnp.asarray(rng.normal(size=(256,)) * 0.1, jnp.float32))

    def __call__(self, x, layers):
        return {name: jax.nn.relu(x @ self.w[...] + self.b[...]) for name in layers}


def _numpy_features(net, image):
    w, b = np.asarray(net.w[...], np.float64), np.asarray(net.b[...], np.float64)
    return np.maximum(image.reshape(-1, 3).astype(np.float64) @ w + b, 0.0)


def test_identical_images_are_complete_and_coherent():
    net = _Pointwise()
    image = _photo((12, 16), seed=5)
    complete, coherent = quality.bidirectional_scores(net, image, image)
    assert complete == pytest.approx(100.0, abs=1e-3)
    assert coherent == pytest.approx(100.0, abs=1e-3)


class _Pooled(_Pointwise):
    """A stand-in on conv3_3's 4-px grid: _Pointwise of the first pixel of each whole
    4x4 cell."""

    def __call__(self, x, layers):
        n, h, w, c = x.shape
        return super().__call__(x[:, : h // 4 * 4 : 4, : w // 4 * 4 : 4], layers)


def _brute_force(net, image, out):
    """(complete, coherent) by loops over every 4x4 cell of image at each x offset 0-3."""

    def cell(img, i, x):
        return _numpy_features(net, img[4 * i, x])[0]

    rows, cols = image.shape[0] // 4, image.shape[1] // 4
    f_out = np.array(
        [cell(out, i, 4 * j) for i in range(out.shape[0] // 4) for j in range(out.shape[1] // 4)]
    )
    # Input cell (i, j) at offset dx covers columns 4j+dx .. 4j+dx+3, if inside the image.
    f_in = {
        (i, j, dx): cell(image, i, 4 * j + dx)
        for i in range(rows)
        for j in range(cols)
        for dx in range(4)
        if 4 * j + dx + 4 <= image.shape[1]
    }
    near_out = [min(((f - g) ** 2).sum() for g in f_in.values()) for f in f_out]
    near_in = [
        min(((f_in[i, j, dx] - f_out) ** 2).sum(1).min() for dx in range(4) if (i, j, dx) in f_in)
        for i in range(rows)
        for j in range(cols)
    ]
    sq_in = np.mean([(f_in[i, j, 0] ** 2).sum() for i in range(rows) for j in range(cols)])
    sq_out = (f_out**2).sum(1).mean()
    return 100.0 * (1.0 - np.mean(near_in) / sq_in), 100.0 * (1.0 - np.mean(near_out) / sq_out)


def test_a_crop_at_any_offset_is_coherent_on_a_4_px_grid():
    # Off the grid, the crop's cells are the input's cells at another offset: found only
    # because the input is also taken shifted by 1-3 px.
    net = _Pooled()
    rng = np.random.default_rng(8)
    image = rng.random((16, 48, 3)).astype(np.float32)
    image[:, :24] *= 0.4  # a dark left half, a bright right half
    image[:, 24:] = 1.0 - 0.3 * image[:, 24:]
    for dx in (0, 1, 2, 3, 7):
        out = image[:, dx : dx + 20]
        complete, coherent = quality.bidirectional_scores(net, image, out)
        expected_complete, expected_coherent = _brute_force(net, image, out)
        assert expected_coherent == pytest.approx(100.0, abs=1e-6)
        assert 40.0 < expected_complete < 99.0  # what the crop lost shows
        assert coherent == pytest.approx(100.0, abs=1e-3), dx
        assert complete == pytest.approx(expected_complete, abs=1e-2), dx
    # Taken only on the grid, as before, the crop at offset 2 is not coherent (95.3).
    out = image[:, 2:22]
    f_in = _Pooled.__call__(net, jnp.asarray(image)[None], ["x"])["x"].reshape(-1, 256)
    f_out = _Pooled.__call__(net, jnp.asarray(out)[None], ["x"])["x"].reshape(-1, 256)
    dist = ((np.asarray(f_in)[:, None] - np.asarray(f_out)[None]) ** 2).sum(-1)
    assert 100.0 * (1.0 - dist.min(0).mean() / (np.asarray(f_out) ** 2).sum(1).mean()) < 98.0


def test_an_output_not_found_in_the_input_matches_the_brute_force():
    net = _Pooled()
    rng = np.random.default_rng(9)
    image = 0.4 * rng.random((16, 40, 3)).astype(np.float32)  # dark
    bright = 1.0 - 0.3 * rng.random((16, 12, 3)).astype(np.float32)
    out = np.concatenate([image[:, 3:15], bright], 1)  # part copied, part new
    complete, coherent = quality.bidirectional_scores(net, image, out)
    expected = _brute_force(net, image, out)
    assert expected[0] < 99.5 and 0.0 < expected[1] < 80.0  # the bright half is new
    assert (complete, coherent) == pytest.approx(expected, abs=1e-2)


# ----------------------------------------------------------------------------- mask agreement


def test_identical_mask_agrees_fully_and_disjoint_not_at_all():
    size = (32, 48)
    box = (8, 4, 24, 20)  # x0, y0, x1, y1: on the 4-px grid below
    inside = np.zeros(size, np.float32)
    inside[4:20, 8:24] = 1.0
    assert quality.mask_box_agreement(inside, box, size) == pytest.approx((1.0, 1.0))
    # The same mask on a grid 4 times coarser (as the deep layers give it), upsampled
    # linearly: a pixel half a pixel inside an edge is 1 - 1.5/4 = 0.625 (kept), one half
    # a pixel outside 0.375 (dropped), but a corner pixel is 0.625^2 = 0.39: the four
    # corners are lost, recall 252/256, precision 1.
    coarse = np.zeros((8, 12), np.float32)
    coarse[1:5, 2:6] = 1.0
    assert quality.mask_box_agreement(coarse, box, size) == pytest.approx((252 / 256, 1.0))
    disjoint = np.zeros(size, np.float32)
    disjoint[24:, 30:] = 1.0
    assert quality.mask_box_agreement(disjoint, box, size) == pytest.approx((0.0, 0.0))


def test_partial_masks_by_hand():
    size = (32, 48)
    box = (8, 4, 24, 20)  # 16 x 16 = 256 pixels
    left_half = np.zeros(size, np.float32)
    left_half[4:20, 8:16] = 1.0  # half the box, nothing outside it
    assert quality.mask_box_agreement(left_half, box, size) == pytest.approx((0.5, 1.0))
    spill = np.zeros(size, np.float32)
    spill[4:20, 8:40] = 1.0  # the whole box and as much again outside
    assert quality.mask_box_agreement(spill, box, size) == pytest.approx((1.0, 0.5))
    recall, precision = quality.mask_box_agreement(np.zeros(size, np.float32), box, size)
    assert recall == 0.0 and np.isnan(precision)  # an empty mask has no precision
