"""Tests for DenseNet, Inception-v2 and EfficientNet (learned_resize.models).

Compile time, not arithmetic, is what these tests spend, so: networks are built
abstractly with `nnx.eval_shape` and filled with numpy values (no initialiser is
compiled); each whole network is compiled once in eval mode (EfficientNet also in
train mode, Inception-v2 also in bf16) with a cheap XLA optimisation level; the
other train-mode and bf16 checks run on single blocks.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize import models
from learned_resize.models import densenet, efficientnet, inception_v2

# Compiling is the cost here; LLVM optimisations would only speed up tiny runs.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_NAMES = ("densenet121", "inception_v2", "efficientnet_b0")


# --------------------------------------------------------------------------- helpers


def _slim_inception_v2_param_count(num_classes: int) -> int:
    """Trainable variables of slim's inception_v2, from its layer shapes.

    Every slim.conv2d is k*k*c_in*c_out weights plus c_out BN betas (no gamma, no
    bias); the separable stem has depthwise [7,7,3,8], pointwise [1,1,24,64] and 64
    biases; the logits are a 1x1 conv with bias.
    """

    def conv(k, c_in, c_out):
        return k * k * c_in * c_out + c_out

    def mixed(c_in, b0, b1, b2, b3):  # 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool-1x1
        return (
            conv(1, c_in, b0)
            + conv(1, c_in, b1[0])
            + conv(3, b1[0], b1[1])
            + conv(1, c_in, b2[0])
            + conv(3, b2[0], b2[1])
            + conv(3, b2[1], b2[2])
            + conv(1, c_in, b3)
        )

    def reduction(c_in, b0, b1):  # 1x1-3x3/2 | 1x1-3x3-3x3/2 | maxpool/2
        return (
            conv(1, c_in, b0[0])
            + conv(3, b0[0], b0[1])
            + conv(1, c_in, b1[0])
            + conv(3, b1[0], b1[1])
            + conv(3, b1[1], b1[2])
        )

    layers = [
        7 * 7 * 3 * 8 + 24 * 64 + 64,  # Conv2d_1a_7x7 (separable)
        conv(1, 64, 64),  # Conv2d_2b_1x1
        conv(3, 64, 192),  # Conv2d_2c_3x3
        mixed(192, 64, (64, 64), (64, 96, 96), 32),  # Mixed_3b -> 256
        mixed(256, 64, (64, 96), (64, 96, 96), 64),  # Mixed_3c -> 320
        reduction(320, (128, 160), (64, 96, 96)),  # Mixed_4a -> 576
        mixed(576, 224, (64, 96), (96, 128, 128), 128),  # Mixed_4b
        mixed(576, 192, (96, 128), (96, 128, 128), 128),  # Mixed_4c
        mixed(576, 160, (128, 160), (128, 160, 160), 96),  # Mixed_4d
        mixed(576, 96, (128, 192), (160, 192, 192), 96),  # Mixed_4e
        reduction(576, (128, 192), (192, 256, 256)),  # Mixed_5a -> 1024
        mixed(1024, 352, (192, 320), (160, 224, 224), 128),  # Mixed_5b
        mixed(1024, 352, (192, 320), (192, 224, 224), 128),  # Mixed_5c
        1024 * num_classes + num_classes,  # Logits/Conv2d_1c_1x1
    ]
    return sum(layers)


@functools.cache
def _abstract(name, num_classes=1000, dtype=jnp.float32, **kwargs):
    return nnx.eval_shape(
        lambda: models.get_classifier(name, num_classes, rngs=nnx.Rngs(0), dtype=dtype, **kwargs)
    )


def _filled_state(abstract_model, seed=0):
    """Concrete state for an abstract model: He-normal kernels, BN identity, zero biases."""
    rng = np.random.default_rng(seed)
    keys = iter(range(10**6))

    def fill(path, leaf):
        name = path[-2].key
        if name == "kernel":
            fan_in = np.prod(leaf.shape[:-1])
            return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        if name in ("scale", "var"):
            return np.ones(leaf.shape, np.float32)
        if name == "key":
            return jax.random.key(next(keys))
        return np.zeros(leaf.shape, leaf.dtype)

    return jax.tree.map_with_path(fill, nnx.state(abstract_model))


@functools.cache
def _run(name, train=False):
    """A compiled forward of `name` on a 2x40x56x3 batch: eval mode, plus train mode if asked.

    Train mode is compiled only where it is checked (it costs several times more).
    """
    graphdef = nnx.graphdef(_abstract(name))
    state = _filled_state(_abstract(name))
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (2, 40, 56, 3)).astype(np.float32)

    def forward(state, x, train):
        # copy=True: without it the train-mode BN updates would leak into `state`.
        model = nnx.merge(graphdef, state, copy=True)
        logits = model(x, train=train)
        return logits, nnx.state(model)

    def step(state, x):
        results = {"eval": forward(state, x, False)}
        if train:
            results["train"] = forward(state, x, True)
        return results

    results = jax.jit(step, compiler_options=_FAST_COMPILE)(state, x)
    run = dict(state=state, x=x)
    for mode, (logits, new_state) in results.items():
        run[f"{mode}_logits"] = np.asarray(logits)
        run[f"{mode}_state"] = new_state
    return run


def _conv_same(x, w, stride=1):
    """TF-style SAME convolution in float64 (pad total//2 before, the rest after)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, h, wd, _ = x.shape
    kh, kw, _, cout = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, cout))
    for i in range(kh):
        for j in range(kw):
            patch = xp[
                :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride
            ]
            out += patch @ w[i, j]
    return out


def _bn_eval(x, bn):
    scale = 1.0 if bn.scale is None else np.asarray(bn.scale[...])
    bias = np.asarray(bn.bias[...])
    return (x - np.asarray(bn.mean[...])) / np.sqrt(
        np.asarray(bn.var[...]) + bn.epsilon
    ) * scale + bias


def _randomize_batch_norms(module, seed):
    """Gives every BatchNorm of `module` random affine parameters and running statistics."""
    rng = np.random.default_rng(seed)
    for _, sub in nnx.iter_modules(module):
        if isinstance(sub, nnx.BatchNorm):
            shape = sub.mean[...].shape
            sub.mean[...] = jnp.asarray(rng.normal(0.0, 0.5, shape), jnp.float32)
            sub.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, shape), jnp.float32)
            sub.bias[...] = jnp.asarray(rng.normal(0.0, 0.5, shape), jnp.float32)
            if sub.scale is not None:
                sub.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, shape), jnp.float32)


def _silu(x):
    return x / (1.0 + np.exp(-x))


# ----------------------------------------------------------------- parameter counts


def test_slim_inception_v2_reference_count():
    # The documented reference equals the independent per-layer sum (1000 and 1001 classes).
    assert _slim_inception_v2_param_count(1000) == inception_v2.REFERENCE_PARAMS_1000_CLASSES
    assert _slim_inception_v2_param_count(1001) == 11_179_361


@pytest.mark.parametrize(
    "name, expected",
    [
        ("densenet121", 7_978_856),  # torchvision densenet121
        ("efficientnet_b0", 5_288_548),  # torchvision efficientnet_b0
        ("efficientnet_b1", 7_794_184),  # torchvision efficientnet_b1
        ("inception_v2", _slim_inception_v2_param_count(1000)),  # slim, summed above
    ],
)
def test_param_counts(name, expected):
    assert models.count_params(_abstract(name)) == expected


@pytest.mark.parametrize(
    "name, rgb_stem, gray_stem",
    [
        ("densenet121", 7 * 7 * 3 * 64, 7 * 7 * 1 * 64),
        # slim's rule keeps the depthwise multiplier at 8 for one channel: 1 -> 8 -> 64.
        ("inception_v2", 7 * 7 * 3 * 8 + 24 * 64, 7 * 7 * 1 * 8 + 8 * 64),
        ("efficientnet_b0", 3 * 3 * 3 * 32, 3 * 3 * 1 * 32),
    ],
)
def test_headless_single_channel_backbone(name, rgb_stem, gray_stem):
    # num_classes=0 (the trainer's IQA backbone) drops the head and returns pooled
    # features; in_channels=1 only changes the stem's kernels.
    model = _abstract(name, num_classes=0, in_channels=1)
    head = model.num_features * 1000 + 1000
    expected = models.count_params(_abstract(name)) - head - rgb_stem + gray_stem
    assert models.count_params(model) == expected
    out = nnx.eval_shape(lambda m, x: m(x, train=False), model, jnp.zeros((2, 32, 40, 1)))
    assert out.shape == (2, model.num_features) and out.dtype == jnp.float32


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant, expected",
    # torchvision's EfficientNet_B*_Weights num_params.
    [
        (2, 9_109_994),  # width x1.1 (channel rounding), depth x1.2
        (4, 19_341_616),  # the paper's backbone
        # B3 12,233,232, B5 30,389,784, B6 43,040,704 and B7 66,347,960 match too,
        # but tracing them takes minutes on a small CPU.
    ],
)
def test_efficientnet_larger_variant_counts(variant, expected):
    assert models.count_params(_abstract(f"efficientnet_b{variant}")) == expected


# ------------------------------------------------------------------ whole networks


def _batch_stats(state):
    return nnx.filter_state(state, nnx.BatchStat)


@pytest.mark.parametrize("name", _NAMES)
def test_forward_shapes(name):
    # EfficientNet's train mode is checked below; share that one compilation.
    run = _run(name, train=name == "efficientnet_b0")
    logits = run["eval_logits"]
    assert logits.shape == (2, 1000) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    # Evaluation leaves the running averages alone.
    jax.tree.map(
        np.testing.assert_array_equal, _batch_stats(run["state"]), _batch_stats(run["eval_state"])
    )
    # The square minimum size traces to the same logits shape.
    out = nnx.eval_shape(lambda m, x: m(x, train=False), _abstract(name), jnp.zeros((2, 32, 32, 3)))
    assert out.shape == (2, 1000) and out.dtype == jnp.float32


def test_efficientnet_train_mode_uses_and_updates_batch_statistics():
    run = _run("efficientnet_b0", train=True)
    logits = run["train_logits"]
    assert logits.shape == (2, 1000) and np.all(np.isfinite(logits))
    # Batch statistics (and dropout) make train-mode logits differ from eval-mode ones.
    assert np.max(np.abs(logits - run["eval_logits"])) > 1e-3
    # Every BN's running averages move in train mode.
    before, after = _batch_stats(run["state"]), _batch_stats(run["train_state"])
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after)))
    # The stem BN sees the stem conv of the input (TF SAME padding, stride 2): its
    # running mean/var move from (0, 1) by 1 - 0.99 towards the batch's mean and
    # biased variance.
    kernel = np.asarray(run["state"]["stem"]["conv"]["kernel"][...])
    y = _conv_same(run["x"], kernel, stride=2)
    norm = run["train_state"]["stem"]["norm"]
    np.testing.assert_allclose(norm["mean"][...], 0.01 * y.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(norm["var"][...], 0.99 + 0.01 * y.var(axis=(0, 1, 2)), rtol=1e-5)


def test_bfloat16_network_close_to_float32():
    # One whole network in bf16 (the cheapest to compile); the blocks of the other
    # two are checked in bf16 below.
    run = _run("inception_v2")
    abstract = _abstract("inception_v2", dtype=jnp.bfloat16)
    features = nnx.eval_shape(lambda m, x: m.features(x, False), abstract, run["x"])
    assert features.dtype == jnp.bfloat16  # the body really computes in bf16
    graphdef = nnx.graphdef(abstract)
    logits = jax.jit(
        lambda state, x: nnx.merge(graphdef, state)(x, train=False),
        compiler_options=_FAST_COMPILE,
    )(run["state"], run["x"])
    logits = np.asarray(logits)
    assert logits.dtype == np.float32 and np.all(np.isfinite(logits))
    reference = run["eval_logits"]
    error = np.linalg.norm(logits - reference) / np.linalg.norm(reference)
    assert error < 0.05, error


# ------------------------------------------------------------------ building blocks


def _small(constructor, seed=0):
    """Builds a module abstractly and fills it (no initialiser compiles), BN randomised."""
    abstract = nnx.eval_shape(constructor)
    module = nnx.merge(nnx.graphdef(abstract), _filled_state(abstract, seed))
    _randomize_batch_norms(module, seed + 1)
    return module


def _jit_apply(module, fn, *args, with_state=False):
    """fn(module, *args) compiled once on a copy of `module` (which stays unchanged).

    With `with_state`, also returns the copy's state afterwards (e.g. updated BN averages).
    """
    graphdef, state = nnx.split(module)

    def apply(state, *args):
        copy = nnx.merge(graphdef, state, copy=True)
        out = fn(copy, *args)
        return (out, nnx.state(copy)) if with_state else out

    return jax.jit(apply, compiler_options=_FAST_COMPILE)(state, *args)


def _densenet_blocks(dtype):
    kw = dict(dtype=dtype, bn_momentum=0.9, bn_epsilon=1e-5)
    layer = _small(
        lambda: densenet.DenseLayer(8, growth_rate=4, bn_size=2, **kw, rngs=nnx.Rngs(0)), seed=1
    )
    transition = _small(lambda: densenet.Transition(12, 6, **kw, rngs=nnx.Rngs(0)), seed=3)
    return layer, transition


def test_dense_layer_and_transition_match_numpy():
    layer, transition = _densenet_blocks(jnp.float32)
    x = np.random.default_rng(3).normal(size=(2, 5, 7, 8)).astype(np.float32)
    out, pooled = _jit_apply(
        nnx.List([layer, transition]),
        lambda m, x: (m[0](x, False), m[1](m[0](x, False), False)),
        x,
    )

    y = np.maximum(_bn_eval(x, layer.norm1), 0)
    y = _conv_same(y, layer.conv1.kernel[...])
    y = np.maximum(_bn_eval(y, layer.norm2), 0)
    y = _conv_same(y, layer.conv2.kernel[...])
    expected = np.concatenate([x, y], axis=-1)  # new features after the old ones
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)

    t = _conv_same(np.maximum(_bn_eval(expected, transition.norm), 0), transition.conv.kernel[...])
    t = t[:, :4, :6].reshape(2, 2, 2, 3, 2, 6).mean(axis=(2, 4))  # 2x2 pool, odd edge dropped
    np.testing.assert_allclose(pooled, t, rtol=1e-4, atol=1e-4)


def test_dense_layer_train_mode_uses_and_updates_batch_statistics():
    layer, _ = _densenet_blocks(jnp.float32)
    x = np.random.default_rng(4).normal(1.0, 2.0, size=(3, 5, 7, 8)).astype(np.float32)
    out, new_state = _jit_apply(layer, lambda m, x: m(x, True), x, with_state=True)

    def bn_train(v, bn):  # normalise with the batch's mean and biased variance
        mean, var = v.mean(axis=(0, 1, 2)), v.var(axis=(0, 1, 2))
        y = (v - mean) / np.sqrt(var + bn.epsilon) * np.asarray(bn.scale[...])
        return y + np.asarray(bn.bias[...]), mean, var

    h, mean1, var1 = bn_train(x.astype(np.float64), layer.norm1)
    h = _conv_same(np.maximum(h, 0), layer.conv1.kernel[...])
    h, mean2, var2 = bn_train(h, layer.norm2)
    h = _conv_same(np.maximum(h, 0), layer.conv2.kernel[...])
    np.testing.assert_allclose(out, np.concatenate([x, h], axis=-1), rtol=1e-4, atol=1e-4)
    # Running averages: 0.9 * old + 0.1 * batch statistic.
    for name, mean, var in (("norm1", mean1, var1), ("norm2", mean2, var2)):
        old, new = getattr(layer, name), new_state[name]
        np.testing.assert_allclose(new["mean"][...], 0.9 * old.mean[...] + 0.1 * mean, rtol=1e-4)
        np.testing.assert_allclose(new["var"][...], 0.9 * old.var[...] + 0.1 * var, rtol=1e-4)


def test_squeeze_excite_matches_numpy():
    se = _small(lambda: efficientnet.SqueezeExcite(12, 3, dtype=jnp.float32, rngs=nnx.Rngs(0)))
    se.reduce.bias[...] = jnp.linspace(-0.3, 0.3, 3)
    se.expand.bias[...] = jnp.linspace(-0.5, 0.5, 12)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 12)).astype(np.float32)
    out = _jit_apply(se, lambda m, x: m(x), x)

    s = x.astype(np.float64).mean(axis=(1, 2))  # squeeze
    s = _silu(s @ np.asarray(se.reduce.kernel[...]) + np.asarray(se.reduce.bias[...]))
    s = s @ np.asarray(se.expand.kernel[...]) + np.asarray(se.expand.bias[...])
    expected = x * (1.0 / (1.0 + np.exp(-s)))[:, None, None, :]  # excite
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def _mbconv(dtype):
    return _small(
        lambda: efficientnet.MBConv(
            16,
            16,
            expand_ratio=2,
            kernel_size=3,
            strides=1,
            stochastic_depth_rate=0.5,
            dtype=dtype,
            bn_momentum=0.99,
            bn_epsilon=1e-3,
            rngs=nnx.Rngs(params=0, dropout=1),
        )
    )


def test_stochastic_depth_drops_whole_residual_branch_per_example():
    block = _mbconv(jnp.float32)
    x = np.random.default_rng(0).normal(size=(16, 4, 4, 16)).astype(np.float32)
    eval_out, eval_branch, train_out, train_branch = _jit_apply(
        block,
        lambda m, x: (m(x, False), m.branch(x, False), m(x, True), m.branch(x, True)),
        x,
    )
    np.testing.assert_allclose(eval_out, x + eval_branch, atol=1e-5)  # no dropping in eval
    delta = np.asarray(train_out) - x
    kept = [np.allclose(d, 2.0 * b, atol=1e-4) for d, b in zip(delta, np.asarray(train_branch))]
    dropped = [np.allclose(d, 0.0) for d in delta]
    assert all(k != d for k, d in zip(kept, dropped))  # each example: all (x 1/0.5) or nothing
    assert 0 < sum(kept) < len(kept)


def test_bfloat16_blocks_close_to_float32():
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 8)).astype(np.float32)
    (layer32, _), (layer16, _) = _densenet_blocks(jnp.float32), _densenet_blocks(jnp.bfloat16)
    block32, block16 = _mbconv(jnp.float32), _mbconv(jnp.bfloat16)
    y = np.random.default_rng(1).normal(size=(2, 4, 4, 16)).astype(np.float32)
    for m32, m16, inputs in ((layer32, layer16, x), (block32, block16, y)):
        reference = np.asarray(_jit_apply(m32, lambda m, v: m(v, False), inputs))
        # In a network the stem has already cast the activations to bf16.
        out = _jit_apply(m16, lambda m, v: m(v, False), inputs.astype(jnp.bfloat16))
        assert out.dtype == jnp.bfloat16
        out = np.asarray(out, np.float32)
        error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
        assert np.all(np.isfinite(out)) and error < 0.02, error


def test_inception_stem_is_tf_separable_conv():
    # Depthwise output channel c * multiplier + m filters input channel c (TF layout),
    # then the pointwise conv, bias and ReLU; SAME padding with stride 2.
    abstract = _abstract("inception_v2")
    model = nnx.merge(nnx.graphdef(abstract), _filled_state(abstract))
    model.stem_pointwise.bias[...] = jnp.linspace(-0.5, 0.5, 64)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 9, 12, 3)).astype(np.float32)
    depthwise = np.asarray(model.stem_depthwise.kernel[...]).reshape(7, 7, 3, 8)  # [kh,kw,c,m]
    mid = np.concatenate(
        [_conv_same(x[..., c : c + 1], depthwise[:, :, c : c + 1, :], stride=2) for c in range(3)],
        axis=-1,
    )
    expected = np.maximum(
        _conv_same(mid, model.stem_pointwise.kernel[...]) + model.stem_pointwise.bias[...], 0
    )
    np.testing.assert_allclose(model.stem(jnp.asarray(x)), expected, rtol=1e-4, atol=1e-4)


def test_inception_conv_bn_has_no_gamma_and_uses_batch_statistics():
    block = _small(
        lambda: inception_v2.ConvBN(
            4, 6, 3, dtype=jnp.float32, bn_momentum=0.9997, bn_epsilon=1e-3, rngs=nnx.Rngs(0)
        )
    )
    assert block.norm.scale is None and block.conv.bias is None  # slim: beta only
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 4)).astype(np.float32)
    # Eval first: the train call updates the running averages.
    eval_out, train_out = _jit_apply(block, lambda m, x: (m(x, False), m(x, True)), x)
    y = _conv_same(x, block.conv.kernel[...])
    mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
    beta = np.asarray(block.norm.bias[...])
    np.testing.assert_allclose(
        train_out, np.maximum((y - mean) / np.sqrt(var + 1e-3) + beta, 0), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(eval_out, np.maximum(_bn_eval(y, block.norm), 0), atol=1e-4)


def test_inception_average_pool_ignores_padding():
    x = np.random.default_rng(0).normal(size=(1, 4, 5, 2)).astype(np.float32)
    expected = np.zeros_like(x, dtype=np.float64)
    for i in range(4):
        for j in range(5):
            window = x[0, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            expected[0, i, j] = window.reshape(-1, 2).mean(axis=0)  # real pixels only (TF)
    np.testing.assert_allclose(inception_v2.avg_pool_same(jnp.asarray(x)), expected, rtol=1e-5)


# ------------------------------------------------------------------------- errors


def test_user_errors_are_value_errors():
    with pytest.raises(ValueError, match="depth"):
        densenet.DenseNet(10, rngs=nnx.Rngs(0), depth=100)
    with pytest.raises(ValueError, match="variant"):
        efficientnet.EfficientNet(10, rngs=nnx.Rngs(0), variant=8)
    with pytest.raises(ValueError, match="dropout"):
        efficientnet.EfficientNet(10, rngs=nnx.Rngs(params=0))
    with pytest.raises(ValueError, match="dropout"):
        inception_v2.InceptionV2(10, rngs=nnx.Rngs(params=0))
    dense = _abstract("densenet121")
    with pytest.raises(ValueError, match="at least 32"):
        dense(jnp.zeros((1, 16, 48, 3)), train=False)
    with pytest.raises(ValueError, match="channels"):
        dense(jnp.zeros((1, 32, 32, 1)), train=False)
