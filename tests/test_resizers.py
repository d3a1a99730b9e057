"""Tests for learned_resize.resizers against PIL, scipy, numpy and hand-written references."""

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

from learned_resize import config_lib, cpu_conv, resampling, resizers

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
    got = resizers.resize(x, out_hw, "bilinear", antialias=False)[0, :, :, 0]
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
    got = resizers.resize(x, out_hw, method, antialias)[0, :, :, 0]
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
    got = resizers.resize(x, out_hw, "area")[0, :, :, 0]
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
# Learned resizer.


@pytest.mark.parametrize(
    "n,r,thousands",
    [(16, 1, 11.87), (16, 2, 16.48), (16, 3, 21.08), (16, 4, 25.69),
     (32, 1, 38.08), (32, 2, 56.51), (32, 3, 74.94), (32, 4, 93.37)],
)  # fmt: skip
def test_conv_kernel_count_matches_paper_table2(n, r, thousands):
    model = nnx.eval_shape(lambda: resizers.LearnedResizer((8, 8), n, r, rngs=nnx.Rngs(0)))
    params = nnx.to_flat_state(nnx.state(model, nnx.Param))
    kernels = sum(int(np.prod(v.shape)) for path, v in params if path[-1] == "kernel")
    # The paper truncates to two decimals (25,696 kernels print as 25.69).
    assert kernels // 10 == round(thousands * 100)
    # Exactly: 7x7 in/out convs, the 1x1, r blocks of two 3x3 convs and the tail 3x3.
    assert kernels == 2 * 49 * 3 * n + n * n + (2 * r + 1) * 9 * n * n


# Most tests share one small configuration and input shape so that they share
# compiled code: compiling, not computing, is what costs time here.
_SMALL = dict(output_size=(6, 5), num_filters=4, num_res_blocks=2)
_X_SHAPE = (3, 11, 9, 3)


def _small_resizer(seed=0, **overrides):
    """A LearnedResizer with numpy-drawn parameters.

    The module's own initialisers are not under test, and compiling JAX's random
    number generators costs seconds per parameter shape on CPU. Biases and BN
    shifts are non-zero so that every term shows up in the comparisons.
    """
    abstract = nnx.eval_shape(
        lambda: resizers.LearnedResizer(**{**_SMALL, **overrides}, rngs=nnx.Rngs(0))
    )
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)
    flat = []
    for path, var in nnx.to_flat_state(state):
        shape, name = var.shape, path[-1]
        if name == "kernel":
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif name == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "bias":
            value = 0.3 * rng.normal(size=shape)
        else:  # BN running statistics start at mean 0, variance 1.
            value = np.zeros(shape) if name == "mean" else np.ones(shape)
        flat.append((path, var.replace(jnp.asarray(value, jnp.float32))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


@nnx.jit(static_argnums=2)
def _apply(model, x, train):
    return model(x, train=train)


def _conv(x, conv):
    y = jax.lax.conv_general_dilated(
        x, conv.kernel[...], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )  # fmt: skip
    return y + conv.bias[...] if conv.bias is not None else y


def _bn(x, bn, train, batch_stats):
    if train:
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
        batch_stats.append((mean, var))
    else:
        mean, var = bn.mean[...], bn.var[...]
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * bn.scale[...] + bn.bias[...]


def _reference(model, x, train, chained=True):
    """The paper's equations written out with lax.conv on the module's own parameters.

    With chained=False every residual block reads y, the bug of a public port.
    Returns the output and the per-BN batch (mean, var) in call order.
    """
    stats = []
    lrelu = lambda t: jnp.where(t > 0, t, 0.2 * t)
    size = (x.shape[0], *model.output_size, x.shape[-1])
    skip = jax.image.resize(x, size, "linear", antialias=model.antialias)
    y = _bn(lrelu(_conv(lrelu(_conv(x, model.head_conv7)), model.head_conv1)), model.head_bn,
            train, stats)  # fmt: skip
    y = jax.image.resize(y, (*size[:3], y.shape[-1]), "linear", antialias=model.antialias)
    z = y
    for block in model.blocks:
        inp = z if chained else y
        h = lrelu(_bn(_conv(inp, block.first.conv), block.first.bn, train, stats))
        z = inp + _bn(_conv(h, block.second.conv), block.second.bn, train, stats)
    z = _bn(_conv(z, model.tail.conv), model.tail.bn, train, stats) + y
    return _conv(z, model.out_conv) + skip, stats


_reference_forward = nnx.jit(_reference, static_argnums=(2, 3))


@pytest.mark.parametrize("train", [True, False])
def test_forward_matches_reference_and_blocks_are_chained(train):
    model = _small_resizer()
    if not train:  # Running statistics different from their initial values.
        _apply(model, _images(_X_SHAPE, seed=5), True)
    x = _images(_X_SHAPE)
    want, _ = _reference_forward(model, x, train, True)
    unchained, _ = _reference_forward(model, x, train, False)
    np.testing.assert_allclose(_apply(model, x, train), want, atol=1e-4, rtol=1e-4)
    assert np.abs(np.asarray(unchained - want)).max() > 1e-1  # the check can see the bug


def test_batchnorm_running_averages_and_eval_mode():
    model = _small_resizer()
    x = _images(_X_SHAPE) * 2.0 + 1.0
    _, stats = _reference_forward(model, x, True, True)
    train_out = _apply(model, x, True)
    # Running averages: momentum 0.9 from the initial mean 0 and variance 1.
    bns = [model.head_bn]
    bns += [bn for block in model.blocks for bn in (block.first.bn, block.second.bn)]
    bns += [model.tail.bn]
    for bn, (mean, var) in zip(bns, stats, strict=True):
        np.testing.assert_allclose(bn.mean[...], 0.1 * mean, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * var, atol=1e-5, rtol=1e-4)
    # Eval uses those running averages, does not change them and differs from train.
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    eval_out = _apply(model, x, False)
    want, _ = _reference_forward(model, x, False, True)
    np.testing.assert_allclose(eval_out, want, atol=1e-4, rtol=1e-4)
    jax.tree.map(np.testing.assert_array_equal, before, nnx.state(model, nnx.BatchStat))
    assert np.abs(np.asarray(eval_out - train_out)).max() > 1e-2


@pytest.mark.parametrize(
    "in_hw,out_hw,method",
    [((37, 23), (16, 40), "bilinear"), ((5, 4), (9, 12), "bicubic"), ((12, 9), (4, 3), "area")],
)
def test_zero_correction_is_the_fixed_resize(in_hw, out_hw, method):
    # Any input size to any output size and aspect ratio, down or up.
    model = _small_resizer(output_size=out_hw, interpolation=method)
    model.out_conv.kernel[...] = jnp.zeros_like(model.out_conv.kernel[...])
    model.out_conv.bias[...] = jnp.zeros_like(model.out_conv.bias[...])
    x = _images((2, *in_hw, 3))
    got = _apply(model, x, True)
    assert got.shape == (2, *out_hw, 3)
    np.testing.assert_allclose(got, resizers.resize(x, out_hw, method), atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_stats():
    x = _images(_X_SHAPE)
    low = _small_resizer(dtype=jnp.bfloat16)
    out = _apply(low, x, True)
    assert out.dtype == jnp.float32  # cast back to the input dtype
    dtypes = {v.dtype for v in jax.tree.leaves(nnx.state(low, nnx.Param, nnx.BatchStat))}
    assert dtypes == {jnp.dtype(jnp.float32)}
    # Same parameters, so only bfloat16 rounding (8 mantissa bits) separates the two.
    np.testing.assert_allclose(out, _apply(_small_resizer(), x, True), atol=0.1, rtol=0.05)
    assert _apply(low, x.astype(jnp.bfloat16), False).dtype == jnp.bfloat16


def test_gradients_flow_to_params_and_input():
    graphdef, params, rest = nnx.split(_small_resizer(), nnx.Param, ...)
    x = _images(_X_SHAPE)
    w = _images((_X_SHAPE[0], *_SMALL["output_size"], 3), seed=3)

    @jax.jit
    @jax.grad
    def grads(inputs, rest):
        params, x = inputs
        return jnp.sum(w * nnx.merge(graphdef, params, rest, copy=True)(x, train=True))

    grad_params, grad_x = grads((params, x), rest)
    for path, g in nnx.to_flat_state(grad_params):
        g = np.asarray(g[...])
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, path
    assert np.all(np.isfinite(grad_x)) and np.abs(np.asarray(grad_x)).max() > 0


def test_gradient_matches_finite_differences_in_float64():
    graphdef, state = nnx.split(_small_resizer(dtype=jnp.float64))
    rng = np.random.default_rng(0)
    x = rng.normal(size=_X_SHAPE)
    w = rng.normal(size=(_X_SHAPE[0], *_SMALL["output_size"], 3))
    kernel_path = ("blocks", 1, "first", "conv", "kernel")  # reached through block 0
    state = jax.tree.map(lambda a: np.asarray(a, np.float64), state)
    kernel = dict(nnx.to_flat_state(state))[kernel_path][...]

    @jax.jit
    @jax.value_and_grad
    def loss_and_grad(inputs, state):
        kernel, x = inputs
        flat = dict(nnx.to_flat_state(state))
        flat[kernel_path] = flat[kernel_path].replace(kernel)
        module = nnx.merge(graphdef, nnx.from_flat_state(flat), copy=True)
        return jnp.sum(w * module(x, train=True))

    def central_difference(index, wrt_kernel, eps=1e-6):
        d = np.zeros_like(kernel if wrt_kernel else x)
        d[index] = eps
        shifted = [(kernel + s * d, x) if wrt_kernel else (kernel, x + s * d) for s in (1, -1)]
        plus, minus = (loss_and_grad(inputs, state)[0] for inputs in shifted)
        return (plus - minus) / (2 * eps)

    with jax.enable_x64(True):  # float32 differences would be too noisy to compare
        _, (g_kernel, g_x) = loss_and_grad((kernel, x), state)
        assert g_kernel.dtype == g_x.dtype == jnp.float64
        for index in [(0, 0, 0, 0), (1, 2, 3, 1)]:
            want = central_difference(index, wrt_kernel=True)
            np.testing.assert_allclose(g_kernel[index], want, rtol=1e-6, atol=1e-9)
        for index in [(0, 0, 0, 0), (2, 10, 8, 2)]:
            want = central_difference(index, wrt_kernel=False)
            np.testing.assert_allclose(g_x[index], want, rtol=1e-6, atol=1e-9)


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


@pytest.mark.parametrize(
    "method,antialias",
    [
        pytest.param(m, a, marks=() if (m, a) in _FAST_RESIZE_SETTINGS else pytest.mark.slow)
        for m in resizers.FIXED_METHODS
        for a in (True, False)
    ],
)
def test_resize_and_its_gradient_equal_jax_image_resize(method, antialias):
    xs = [_images((2, *hw, 3), seed=i) for i, (hw, _) in enumerate(_RESIZE_PAIRS)]
    gs = [_images((2, *hw, 3), seed=9 + i) for i, (_, hw) in enumerate(_RESIZE_PAIRS)]

    def both(resize_fn):
        outs, vjps = zip(*(jax.vjp(resize_fn(hw), x) for x, (_, hw) in zip(xs, _RESIZE_PAIRS)))
        return outs, [vjp(g)[0] for vjp, g in zip(vjps, gs)]

    jax_method = resampling.JAX_METHODS[method]
    want = jax.jit(lambda: both(lambda hw: lambda x: jax.image.resize(
        x, (2, *hw, 3), jax_method, antialias=antialias)))()  # fmt: skip
    got = jax.jit(lambda: both(lambda hw: lambda x: resizers.resize(x, hw, method, antialias)))()
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


@pytest.mark.parametrize(
    "method,antialias",
    [
        pytest.param(m, a, marks=() if (m, a) in _FAST_RESIZE_SETTINGS else pytest.mark.slow)
        for m in resizers.FIXED_METHODS
        for a in (True, False)
    ],
)
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
        out, vjp = jax.vjp(lambda x: resizers.resize(x, (224, 224), method, antialias), x)
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
    want = config_lib.base_config().resizer.antialias
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


@pytest.mark.parametrize("method", resizers.FIXED_METHODS)
def test_resize_weights_sum_to_one(method):
    # What lets LearnedResizer normalise after the resize instead of before it.
    for antialias in (True, False):
        for n_in, n_out in [(28, 8), (10, 23), (53, 26)]:
            matrix = resampling._resize_matrix(n_in, n_out, method, antialias, np.float32)
            np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("kernel_shape", [(7, 7, 4, 3), (3, 5, 2, 1)])
def test_same_conv_and_both_backward_passes_equal_lax_conv(kernel_shape):
    x = _images((2, 9, 8, kernel_shape[2]))
    kernel = _images(kernel_shape, seed=1)
    g = _images((2, 9, 8, kernel_shape[3]), seed=2)
    lax_conv = lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )  # fmt: skip
    want = jax.jit(lambda x, k, g: (lax_conv(x, k), jax.vjp(lax_conv, x, k)[1](g)))(x, kernel, g)
    got = jax.jit(lambda x, k, g: (
        jax.vjp(cpu_conv.same_conv, x, k)[0],  # what this process runs
        jax.vjp(cpu_conv.same_conv, x, k)[1](g),
        cpu_conv.same_conv_by_taps(x, k),  # the CPU formulation (under tcmalloc)
        cpu_conv.same_conv_grads_by_taps(x, k, g),
        cpu_conv.conv_nhwc(x, k),  # the other platforms' (and glibc's)
        cpu_conv.same_conv_grads_xla(x, k, g),
    ))(x, kernel, g)  # fmt: skip
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves((*want,) * 3), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_gradients_equal_the_reference():
    graphdef, params, rest = nnx.split(_small_resizer(), nnx.Param, ...)
    x = _images(_X_SHAPE)
    w = _images((_X_SHAPE[0], *_SMALL["output_size"], 3), seed=3)

    def loss(forward):
        def f(params, x):
            out = forward(nnx.merge(graphdef, params, rest, copy=True), x)
            return jnp.sum(w * out)

        return jax.jit(jax.grad(f, argnums=(0, 1)))

    got = loss(lambda m, x: m(x, train=True))(params, x)
    want = loss(lambda m, x: _reference(m, x, True)[0])(params, x)
    flat_got, flat_want = nnx.to_flat_state(got[0]), nnx.to_flat_state(want[0])
    for (path, a), (_, b) in zip(flat_got, flat_want, strict=True):
        a, b = np.asarray(a[...]), np.asarray(b[...])
        np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(b).max(), err_msg=str(path))
    np.testing.assert_allclose(got[1], want[1], atol=1e-4 * np.abs(want[1]).max())


# ----------------------------------------------------------------------------------
# Factory and errors.


def _config(**overrides):
    defaults = dict(kind="learned", output_size=(8, 6), num_filters=8, num_res_blocks=3,
                    interpolation="bicubic", antialias=False)  # fmt: skip
    return ml_collections.ConfigDict({**defaults, **overrides})


def test_make_resizer_builds_what_the_config_says():
    # Shapes only (eval_shape, nothing compiled): values are tested above.
    build = lambda config, channels: nnx.eval_shape(
        lambda: resizers.make_resizer(config, in_channels=channels, rngs=nnx.Rngs(0))
    )
    learned = build(_config(), 1)
    assert isinstance(learned, resizers.LearnedResizer)
    assert len(learned.blocks) == 3 and learned.head_conv7.kernel.shape == (7, 7, 1, 8)
    assert learned.out_conv.kernel.shape == (7, 7, 8, 1)
    assert (learned.interpolation, learned.antialias) == ("bicubic", False)
    out = nnx.eval_shape(lambda m, x: m(x, train=False), learned, jnp.zeros((2, 12, 12, 1)))
    assert out.shape == (2, 8, 6, 1)
    for method in resizers.FIXED_METHODS:
        fixed = build(_config(kind=method), 3)
        assert isinstance(fixed, resizers.FixedResizer)
        assert (fixed.method, fixed.output_size, fixed.antialias) == (method, (8, 6), False)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (dict(kind="bilinaer"), "config.resizer.kind"),
        (dict(output_size=(0, 8)), "config.resizer.output_size"),
        (dict(output_size=(-4, 8)), "config.resizer.output_size"),
        (dict(output_size=(224,)), "config.resizer.output_size"),
        (dict(output_size=(224, 22.5)), "config.resizer.output_size"),
        (dict(output_size="224"), "config.resizer.output_size"),
        (dict(interpolation="cubic"), "config.resizer.interpolation"),
    ],
)
def test_make_resizer_rejects_bad_config_with_one_sentence(overrides, key):
    with pytest.raises(ValueError, match=key) as info:
        resizers.make_resizer(_config(**overrides), in_channels=3, rngs=nnx.Rngs(0))
    message = str(info.value)
    assert message.count(". ") == 0 and message.endswith(".")


def test_learned_resizer_rejects_wrong_channels():
    model = nnx.eval_shape(_small_resizer)
    with pytest.raises(ValueError, match="in_channels=3"):
        model(jnp.zeros((1, 8, 8, 1)), train=False)


def test_group_and_no_norm_resizers():
    """norm='group' has no running statistics (train mode = eval mode); 'none' has biases."""
    x = _images(_X_SHAPE)
    group = _small_resizer(norm="group")
    assert not jax.tree.leaves(nnx.state(group, nnx.BatchStat))
    assert group.head_bn.num_groups == 1  # 4 channels: one group of 4
    np.testing.assert_array_equal(_apply(group, x, True), _apply(group, x, False))
    # Per-image statistics: an image's output does not depend on the rest of the batch.
    np.testing.assert_allclose(_apply(group, x[:1], True), _apply(group, x, True)[:1], atol=1e-5)
    plain = _small_resizer(norm="none")
    assert plain.head_bn is None and plain.tail.bn is None
    assert plain.tail.conv.bias is not None and not jax.tree.leaves(nnx.state(plain, nnx.BatchStat))
    with pytest.raises(ValueError, match="config.resizer.norm"):
        resizers.make_resizer(_config(norm="layer"), in_channels=3, rngs=nnx.Rngs(0))
