"""Tests for learned_resize.models.resizers (and cpu_conv) against hand-written references."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from learned_resize.models import resampling, resizers
from learned_resize.models.cpu import narrow_conv


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


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
    np.testing.assert_allclose(got, resampling.resize(x, out_hw, method), atol=1e-6)


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
        jax.vjp(narrow_conv.same_conv, x, k)[0],  # what this process runs
        jax.vjp(narrow_conv.same_conv, x, k)[1](g),
        narrow_conv.same_conv_by_taps(x, k),  # the CPU formulation (under tcmalloc)
        narrow_conv.same_conv_grads_by_taps(x, k, g),
        narrow_conv.conv_nhwc(x, k),  # the other platforms' (and glibc's)
        narrow_conv.same_conv_grads_xla(x, k, g),
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
    for method in resampling.FIXED_METHODS:
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
