"""The importance mask (`retarget/mask.py`) against scipy and numpy references."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from learned_resize.retarget import mask as mask_lib


@pytest.mark.parametrize("size", [3, 5])
def test_morphology_matches_scipy(size):
    rng = np.random.default_rng(size)
    x = (rng.random((2, 13, 11)) > 0.6).astype(np.float32)
    ndi = scipy.ndimage
    cases = (
        # Replicated edges: the border never counts as a neighbour.
        (mask_lib.erode, lambda a: ndi.grey_erosion(a, size=size, mode="nearest")),
        (mask_lib.dilate, lambda a: ndi.grey_dilation(a, size=size, mode="nearest")),
        (mask_lib.closing, lambda a: ndi.grey_closing(a, size=size, mode="nearest")),
        # The opening treats the outside as background (0).
        (mask_lib.opening, lambda a: ndi.grey_opening(a, size=size, mode="constant", cval=0)),
    )
    for ours, ref in cases:
        expected = np.stack([ref(xi) for xi in x])
        np.testing.assert_array_equal(np.asarray(ours(jnp.asarray(x), size)), expected)


def test_importance_mask_finds_the_strong_blob_and_drops_specks():
    feats = np.zeros((1, 12, 12, 4), np.float32)
    feats[0, 3:8, 4:9] = 2.0  # object
    feats[0, 10, 1] = 3.0  # one-cell speck at the border: removed by the opening
    feats[0, 1, 10] = 1.0  # a weak one: below the threshold
    feats[0, 5, 6] = 0.0  # hole inside the object: filled by the closing
    mask = np.asarray(mask_lib.importance_mask({"conv5_4": jnp.asarray(feats)}, ("conv5_4",), 0.3))[
        0
    ]
    expected = np.zeros((12, 12), np.float32)
    expected[3:8, 4:9] = 1.0
    np.testing.assert_array_equal(mask, expected)


def test_activation_energy_is_normalised_l1_norm():
    rng = np.random.default_rng(9)
    f = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    e = np.abs(f).sum(-1)
    ref = e / e.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(np.asarray(mask_lib.activation_energy(jnp.asarray(f))), ref, 1e-5)


def test_overlay_tints_only_the_mask():
    image = np.full((8, 8, 3), 0.5, np.float32)
    m = np.zeros((8, 8), np.float32)
    m[2:6, 2:6] = 1.0
    out = mask_lib.overlay(image, m)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out[0, 0], [128, 128, 128])
    assert out[4, 4, 0] > 180 and out[4, 4, 1] < 100
