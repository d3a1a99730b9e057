"""Winograd F(2x2, 3x3) convolution (`retarget/winograd.py`) against a numpy loop."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize.models.cpu import winograd
from learned_resize.retarget import api, coarse_to_fine, operators, validation, vgg


def _numpy_conv(x, kernel):
    """SAME 3x3 convolution, NHWC x HWIO, stride 1, in float64 numpy."""
    p = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    return sum(
        np.einsum("nhwi,io->nhwo", p[:, i : i + h, j : j + w], kernel[i, j])
        for i in range(3)
        for j in range(3)
    )


@pytest.mark.parametrize(
    "shape", [(2, 8, 10, 5, 7), (1, 7, 9, 4, 3), (1, 1, 1, 3, 2), (1, 2, 5, 16, 8)]
)
def test_winograd_equals_a_direct_convolution(shape):
    n, h, w, c, k = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, c, k)).astype(np.float32)
    got = np.asarray(winograd.conv3x3(x, winograd.transform_kernel(kernel)))
    expected = _numpy_conv(x, kernel)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_kernel_transform_by_hand():
    # G g G^T for a kernel of ones: G's rows sum to 1, 1.5, 0.5, 1 -> outer product.
    u = np.asarray(winograd.transform_kernel(np.ones((3, 3, 1, 1), np.float32)))
    rows = np.array([1.0, 1.5, 0.5, 1.0])
    np.testing.assert_allclose(u.reshape(4, 4), np.outer(rows, rows))


def test_only_wide_3x3_layers_take_winograd():
    assert winograd.use_for((3, 3, 256, 512)) and winograd.use_for((3, 3, 512, 256))
    assert not winograd.use_for((3, 3, 128, 256))  # conv3_1: measured slower
    assert not winograd.use_for((3, 3, 64, 64))
    assert not winograd.use_for((1, 1, 512, 512))


@pytest.mark.parametrize("min_pixels, expected_ndim", [(0, 3), (32 * 32, 3), (32 * 32 + 1, 4)])
def test_scale_problem_takes_winograd_from_the_configured_output_size(min_pixels, expected_ndim):
    # config.winograd_min_pixels: the 32x32 output's scale uses Winograd kernels
    # ([16, C, K]) for conv3_2 when it has at least that many pixels, HWIO otherwise.
    net19, net16 = vgg.VGG(19, rngs=nnx.Rngs(0)), vgg.VGG(16, rngs=nnx.Rngs(1))
    cfg = api.get_config()
    cfg.winograd_min_pixels = min_pixels
    image = jnp.full((32, 40, 3), 0.5)
    plan = operators.crop_plan((32, 40), (32, 32))
    _, aux, _ = coarse_to_fine.scale_problem(cfg, image, (32, 32), plan, 1.0, net19, net16)
    assert aux["rec_params"]["conv3_2"]["fwd"].ndim == expected_ndim
    assert aux["perc_params"]["conv3_2"]["bwd"].ndim == expected_ndim


@pytest.mark.parametrize("value", [-1, True])
def test_bad_winograd_min_pixels_is_refused_in_one_sentence(value):
    cfg = api.get_config()
    with cfg.ignore_type():
        cfg.winograd_min_pixels = value
    with pytest.raises(ValueError, match="config.winograd_min_pixels must be a whole number"):
        validation.check_config(cfg)
