"""models/resampling.py against PIL, scipy, numpy and hand-written references."""

import inspect
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.ndimage
from flax import nnx
from PIL import Image

from learned_resize.config import defaults as defaults_lib
from learned_resize.models import resampling, resizers

# Float32 resampling vs float64 references: errors are accumulation roundoff (~1e-6).
_F32_TOL = 1e-5


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


# ----------------------------------------------------------------------------------
# Fixed resizers.


def _pil_resize(channel: np.ndarray, hw, method: str) -> np.ndarray:
    pil_method = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,  # Keys a=-0.5, as jax's "cubic".
        "lanczos3": Image.Resampling.LANCZOS,  # radius 3.
    }[method]
    image = Image.fromarray(channel.astype(np.float32))  # mode "F": no uint8 rounding.
    return np.asarray(image.resize((hw[1], hw[0]), pil_method))


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos3"])
@pytest.mark.parametrize("out_hw", [(10, 13), (47, 70), (9, 50)])  # down, up, mixed
def test_fixed_resize_matches_pil(method, out_hw):
    # PIL always widens the kernel when downscaling, i.e. it is jax's antialias=True.
    x = _images((2, 23, 31, 3))
    got = np.asarray(resizers.FixedResizer(out_hw, method, antialias=True)(x))
    assert got.shape == (2, *out_hw, 3)
    for n in range(2):
        for c in range(3):
            want = _pil_resize(np.asarray(x[n, :, :, c]), out_hw, method)
            np.testing.assert_allclose(got[n, :, :, c], want, atol=_F32_TOL)


@pytest.mark.parametrize("out_hw", [(10, 13), (47, 70)])
def test_bilinear_without_antialias_matches_scipy_zoom(out_hw):
    # Plain bilinear interpolation at half-pixel centres, edges clamped.
    x = _images((1, 23, 31, 1))
    got = resampling.resize(x, out_hw, "bilinear", antialias=False)[0, :, :, 0]
    zoom = (out_hw[0] / 23, out_hw[1] / 31)
    want = scipy.ndimage.zoom(
        np.asarray(x[0, :, :, 0], np.float64), zoom, order=1, mode="nearest", grid_mode=True
    )
    np.testing.assert_allclose(got, want, atol=_F32_TOL)


def _weight_matrix(n_in, n_out, kernel, radius, antialias):
    """[n_out, n_in] resampling weights, written from the PIL/TF definition in float64."""
    scale = n_in / n_out
    support = max(scale, 1.0) if antialias else 1.0
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale  # in input pixel units, pixel j's centre at j + 0.5
        for j in range(n_in):
            d = abs(j + 0.5 - centre) / support
            weights[i, j] = kernel(d) if d < radius else 0.0
        weights[i] /= weights[i].sum()
    return weights


def _lanczos(a):
    return lambda d: np.sinc(d) * np.sinc(d / a)


def _keys_cubic(d, a=-0.5):
    if d < 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a


@pytest.mark.parametrize(
    "method,kernel,radius",
    [("lanczos5", _lanczos(5), 5), ("bicubic", _keys_cubic, 2), ("lanczos3", _lanczos(3), 3)],
)
@pytest.mark.parametrize("antialias", [True, False])
def test_separable_kernels_match_numpy_weights(method, kernel, radius, antialias):
    # PIL has no Lanczos-5 and no resize without antialiasing, so these cases use a
    # float64 numpy weight matrix built from the kernel's formula.
    x = _images((1, 29, 12, 1))
    out_hw = (11, 19)  # downscale height, upscale width
    got = resampling.resize(x, out_hw, method, antialias)[0, :, :, 0]
    wh = _weight_matrix(29, out_hw[0], kernel, radius, antialias)
    ww = _weight_matrix(12, out_hw[1], kernel, radius, antialias)
    want = wh @ np.asarray(x[0, :, :, 0], np.float64) @ ww.T
    np.testing.assert_allclose(got, want, atol=_F32_TOL)


def test_area_4x4_to_2x2_is_block_means():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    got = resizers.FixedResizer((2, 2), "area")(x)[0, :, :, 0]
    want = np.array([[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4], [(8 + 9 + 12 + 13) / 4, 12.5]])
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("in_hw,out_hw", [((6, 9), (4, 6)), ((4, 6), (6, 9)), ((10, 7), (4, 3))])
def test_area_is_exact_overlap_average(in_hw, out_hw):
    # Replicating every pixel to a common multiple of both sizes and averaging blocks
    # is the exact area (overlap) average, for any ratio, up or down.
    x = _images((1, *in_hw, 1))
    img = np.asarray(x[0, :, :, 0], np.float64)
    for axis, (n_in, n_out) in enumerate(zip(in_hw, out_hw)):
        lcm = math.lcm(n_in, n_out)
        fine = np.moveaxis(np.repeat(img, lcm // n_in, axis=axis), axis, 0)
        img = np.moveaxis(fine.reshape(n_out, lcm // n_out, -1).mean(axis=1), 0, axis)
    got = resampling.resize(x, out_hw, "area")[0, :, :, 0]
    np.testing.assert_allclose(got, img, atol=_F32_TOL)


@pytest.mark.parametrize("out_hw", [(3, 11), (14, 4)])
def test_nearest_matches_index_arithmetic(out_hw):
    x = _images((2, 7, 8, 3))
    rows = [(2 * i + 1) * 7 // (2 * out_hw[0]) for i in range(out_hw[0])]  # floor((i+.5)*in/out)
    cols = [(2 * j + 1) * 8 // (2 * out_hw[1]) for j in range(out_hw[1])]
    got = resizers.FixedResizer(out_hw, "nearest")(x)
    np.testing.assert_array_equal(got, np.asarray(x)[:, rows][:, :, cols])


def test_fixed_resizer_has_no_params_and_same_size_is_identity():
    resizer = resizers.FixedResizer((5, 6), "bicubic")
    assert not jax.tree.leaves(nnx.state(resizer))
    x = _images((1, 5, 6, 2))
    np.testing.assert_array_equal(resizer(x, train=True), x)


# ----------------------------------------------------------------------------------
# The fast formulations against the straightforward ones (bench/resizer.py times them).

# (input, output) sizes: the default config's 28 -> 8 (two residues), integer factors,
# upscaling with 23 residues (slices for bilinear, the dense matrix for the wider
# kernels) and 53 -> 26 (dense) next to an axis that keeps its size.
_RESIZE_PAIRS = [((28, 28), (8, 8)), ((24, 30), (12, 10)), ((10, 13), (23, 31)), ((53, 7), (26, 7))]


# Every method and antialias setting; the slow-marked ones only add kernels whose
# forward pass the PIL and numpy tests above already check.
_FAST_RESIZE_SETTINGS = {
    ("bilinear", False),
    ("bilinear", True),
    ("lanczos3", True),
    ("area", True),
}
_EVERY_SETTING = pytest.mark.parametrize(
    "method,antialias",
    [
        pytest.param(m, a, marks=() if (m, a) in _FAST_RESIZE_SETTINGS else pytest.mark.slow)
        for m in resampling.FIXED_METHODS
        for a in (True, False)
    ],
)


@_EVERY_SETTING
def test_resize_and_its_gradient_equal_jax_image_resize(method, antialias):
    xs = [_images((2, *hw, 3), seed=i) for i, (hw, _) in enumerate(_RESIZE_PAIRS)]
    gs = [_images((2, *hw, 3), seed=9 + i) for i, (_, hw) in enumerate(_RESIZE_PAIRS)]

    def both(resize_fn):
        outs, vjps = zip(*(jax.vjp(resize_fn(hw), x) for x, (_, hw) in zip(xs, _RESIZE_PAIRS)))
        return outs, [vjp(g)[0] for vjp, g in zip(vjps, gs)]

    jax_method = resampling.JAX_METHODS[method]
    want = jax.jit(lambda: both(lambda hw: lambda x: jax.image.resize(
        x, (2, *hw, 3), jax_method, antialias=antialias)))()  # fmt: skip
    got = jax.jit(lambda: both(lambda hw: lambda x: resampling.resize(x, hw, method, antialias)))()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, atol=_F32_TOL)


def _reference_matrix(n_in, n_out, method, antialias):
    """[n_out, n_in] float64 weights of each method, from its definition (PIL/TF)."""
    if method == "nearest":  # input floor((i + 0.5) * n_in / n_out)
        weights = np.zeros((n_out, n_in))
        weights[np.arange(n_out), (2 * np.arange(n_out) + 1) * n_in // (2 * n_out)] = 1
        return weights
    if method == "area":  # exact overlap: replicate to a common multiple, average blocks
        lcm = math.lcm(n_in, n_out)
        fine = np.repeat(np.eye(n_in), lcm // n_in, axis=0)
        return fine.reshape(n_out, lcm // n_out, n_in).mean(1)
    kernel, radius = {
        "bilinear": (lambda d: np.maximum(0.0, 1 - d), 1),
        "bicubic": (np.vectorize(_keys_cubic), 2),
        "lanczos3": (_lanczos(3), 3),
        "lanczos5": (_lanczos(5), 5),
    }[method]
    scale = n_in / n_out
    support = max(scale, 1.0) if antialias else 1.0
    centres = (np.arange(n_out) + 0.5) * scale
    d = np.abs(np.arange(n_in)[None] + 0.5 - centres[:, None]) / support
    weights = np.where(d < radius, kernel(np.minimum(d, radius)), 0.0)
    return weights / weights.sum(1, keepdims=True)


@_EVERY_SETTING
def test_imagenet_sizes_equal_float64_definition(method, antialias):
    """448 -> 224 and 320 -> 224 (the paper's learned-stage inputs), forward and backward.

    Tolerances (inputs and cotangents in [0, 1]): at 448 -> 224 the sample positions
    are exact binary fractions, so only float32 accumulation roundoff remains (1e-6).
    At 320 -> 224 jax.image.resize, whose weights `resize` uses, computes positions
    (i + 0.5) * 320 / 224 in float32; 10/7 is not a binary fraction, so positions near
    320 are off by up to an ulp there (3.05e-5) and a weight by up to the kernel's
    slope times that: 2 ulps of 320 allows it for every kernel (max seen: 3.4e-5,
    lanczos5). jax.image.resize itself differs from the definition by the same amount.
    """
    rng = np.random.default_rng(0)
    for n_in, tol in ((448, 1e-6), (320, 2 * float(np.spacing(np.float32(320))))):
        x = rng.uniform(0, 1, (1, n_in, n_in, 1)).astype(np.float32)
        g = rng.uniform(0, 1, (1, 224, 224, 1)).astype(np.float32)
        out, vjp = jax.vjp(lambda x: resampling.resize(x, (224, 224), method, antialias), x)
        weights = _reference_matrix(n_in, 224, method, antialias)
        want = weights @ x[0, :, :, 0].astype(np.float64) @ weights.T
        want_grad = weights.T @ g[0, :, :, 0].astype(np.float64) @ weights
        np.testing.assert_allclose(out[0, :, :, 0], want, atol=tol, err_msg=f"{n_in}")
        np.testing.assert_allclose(vjp(g)[0][0, :, :, 0], want_grad, atol=tol, err_msg=f"{n_in}")
        jax_out = jax.image.resize(x, (1, 224, 224, 1), resampling.JAX_METHODS[method],
                                   antialias=antialias)  # fmt: skip
        np.testing.assert_allclose(out, jax_out, atol=2 * tol)


def test_one_antialias_default_everywhere_the_configs_one():
    """Library defaults build the same skip path as the experiments (and the README example)."""
    want = defaults_lib.base_config().resizer.antialias
    assert want is False and resampling.ANTIALIAS is want
    for fn in (resampling.resize, resizers.FixedResizer.__init__, resizers.LearnedResizer.__init__):
        assert inspect.signature(fn).parameters["antialias"].default is want, fn
    minimal = ml_collections.ConfigDict(dict(kind="learned", output_size=(8, 6)))
    for kind in ("learned", "bilinear"):
        minimal.kind = kind
        built = nnx.eval_shape(
            lambda: resizers.make_resizer(minimal, in_channels=3, rngs=nnx.Rngs(0))
        )
        assert built.antialias is want
    # As the README's library example builds it.
    example = nnx.eval_shape(lambda: resizers.LearnedResizer((224, 224), 16, 1, rngs=nnx.Rngs(0)))
    assert (example.antialias, example.interpolation, example.norm) == (False, "bilinear", "batch")


@pytest.mark.parametrize("method", resampling.FIXED_METHODS)
def test_resize_weights_sum_to_one(method):
    # What lets LearnedResizer normalise after the resize instead of before it.
    for antialias in (True, False):
        for n_in, n_out in [(28, 8), (10, 23), (53, 26)]:
            matrix = resampling._resize_matrix(n_in, n_out, method, antialias, np.float32)
            np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-6)


# ----------------------------------------------------------------------------------
# Any input size: the exported formulation (tools/export.py).

_ANY_SIZE_PAIRS = [(28, 8), (40, 8), (57, 8), (31, 8), (8, 8), (5, 8), (320, 224), (13, 29)]


@pytest.mark.parametrize("method", resampling.FIXED_METHODS)
@pytest.mark.parametrize("antialias", [True, False])
def test_resize_matrix_equals_float64_definition(method, antialias):
    # Distances from integers: each weight is rounded once, so float32 roundoff only,
    # also at 320 -> 224 where jax.image's float32 positions are off by an ulp of 320.
    for n_in, n_out in _ANY_SIZE_PAIRS:
        got = np.asarray(resampling.resize_matrix(n_in, n_out, method, antialias))
        want = np.eye(n_in) if n_in == n_out else _reference_matrix(n_in, n_out, method, antialias)
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"{n_in} -> {n_out}")


_POLYMORPHIC_SETTINGS = [
    ("bilinear", False),
    ("bicubic", True),
    ("area", True),
    ("nearest", False),
    ("lanczos3", False),
]


@pytest.mark.parametrize("method,antialias", _POLYMORPHIC_SETTINGS)
def test_shape_polymorphic_export_equals_resize_at_each_size(method, antialias):
    """One artifact with symbolic batch, height and width; the slice plan at each size."""

    def fn(x):
        return resampling.resize(x, (8, 7), method, antialias)

    spec = jax.ShapeDtypeStruct((*jax.export.symbolic_shape("b, h, w"), 2), jnp.float32)
    with resampling.shape_polymorphic():
        exported = jax.export.export(jax.jit(fn))(spec)
    assert not resampling.polymorphic()  # the context is left as it was found
    for shape in ((3, 28, 28), (1, 40, 31), (2, 57, 45), (1, 8, 7), (1, 5, 3)):
        x = _images((*shape, 2))
        want = resampling.resize(x, (8, 7), method, antialias)
        np.testing.assert_allclose(exported.call(x), want, atol=_F32_TOL, err_msg=f"{shape}")


def test_shape_polymorphic_context_leaves_other_traces_alone():
    x = jax.ShapeDtypeStruct((2, 28, 28, 3), jnp.float32)

    def lowered():
        return jax.jit(lambda x: resampling.resize(x, (8, 8))).lower(x).as_text()

    before = lowered()
    with resampling.shape_polymorphic():
        inside = lowered()
    assert lowered() == before
    # The slice plan (strided slices, no matmul) outside; two dot_generals inside.
    assert "dot_general" not in before and inside.count("dot_general") == 2
