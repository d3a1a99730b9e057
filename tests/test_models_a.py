"""Tests for SmallCNN, ResNet and MobileNetV2 against numpy references.

The references below re-implement convolution (sum over kernel taps), batch norm
and the block wiring in float64 numpy from each module's own parameters, with the
architecture (strides, padding, residual rules) written down independently of the
module code.

Speed: on XLA:CPU every distinct program costs a compile (0.1-0.5 s on a busy
2-core machine), so networks are built abstractly (`nnx.eval_shape`) and filled
with numpy values (`materialize`) instead of running one jax.random program per
parameter shape, forward passes are jitted whole, and the big networks are built
once per module. The real initialisers are checked separately on small modules.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize import models
from learned_resize.models import mobilenet_v2, resnet, small_cnn

# ---------------------------------------------------------------- numpy references


def np_conv(x, kernel, stride=1, pad=None, groups=1):
    """NHWC x HWIO convolution; `pad` is (top, bottom, left, right), default k // 2 each side."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    kh, kw, cin_g, cout = kernel.shape
    if pad is None:
        pad = (kh // 2, kh // 2, kw // 2, kw // 2)
    xp = np.pad(x, ((0, 0), pad[:2], pad[2:], (0, 0)))
    ho = (xp.shape[1] - kh) // stride + 1
    wo = (xp.shape[2] - kw) // stride + 1
    cout_g = cout // groups
    out = np.zeros((x.shape[0], ho, wo, cout))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                taps = xp[
                    :,
                    i : i + stride * (ho - 1) + 1 : stride,
                    j : j + stride * (wo - 1) + 1 : stride,
                    g * cin_g : (g + 1) * cin_g,
                ]
                out[..., g * cout_g : (g + 1) * cout_g] += (
                    taps @ kernel[i, j, :, g * cout_g : (g + 1) * cout_g]
                )
    return out


def np_same_pad(size, kernel, stride):
    """TensorFlow/XLA 'SAME' padding: the odd pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def np_bn(x, bn, train, eps=1e-5):
    """Batch norm with batch statistics (train) or the running ones (eval)."""
    if train:
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    else:
        mean, var = np.asarray(bn.mean[...], np.float64), np.asarray(bn.var[...], np.float64)
    scale, bias = np.asarray(bn.scale[...], np.float64), np.asarray(bn.bias[...], np.float64)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def relu(x):
    return np.maximum(x, 0.0)


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def materialize(ctor, seed=0, fresh_bn=False):
    """Builds `ctor()` with numpy-drawn variables instead of its initialisers.

    `ctor` may also be an abstract module (from `nnx.eval_shape`); a copy is filled.

    Kernels are He-normal (fan_in, so activations stay O(1)). BN scale, bias and
    running statistics are random too, so eval-mode checks are not trivial, unless
    `fresh_bn`: then they hold a new network's values (1, 0, 0, 1).
    """
    module = nnx.clone(ctor) if isinstance(ctor, nnx.Module) else nnx.eval_shape(ctor)
    rng = np.random.default_rng(seed)
    for path, var in nnx.iter_graph(module):
        if not isinstance(var, nnx.Variable):
            continue
        spec = var.get_value()
        if isinstance(var, nnx.RngKey):
            var.set_value(jax.random.key(seed))
            continue
        if path[-1] == "kernel":
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(spec.shape[:-1])), spec.shape)
        elif path[-1] in ("scale", "var"):
            value = np.ones(spec.shape) if fresh_bn else rng.uniform(0.5, 1.5, spec.shape)
        elif path[-1] in ("bias", "mean"):
            value = np.zeros(spec.shape) if fresh_bn else rng.normal(0.0, 0.2, spec.shape)
        else:  # RNG counters
            value = np.zeros(spec.shape)
        # Cast in numpy and device_put: jnp.asarray/astype compile one program per shape.
        var.set_value(jax.device_put(value.astype(spec.dtype)))
    return module


# Tiny inputs run in microseconds, so compile time is what matters: XLA's backend
# optimisations would more than double it here and buy nothing.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@functools.partial(jax.jit, static_argnums=(0, 3), compiler_options=FAST_COMPILE)
def _apply(graphdef, state, x, train):
    model = nnx.merge(graphdef, state)
    return model(x, train=train), nnx.state(model)


def apply(model, x, train):
    """model(x, train) as one compiled program; BN statistics and RNG counts flow back."""
    graphdef, state = nnx.split(model)
    out, state = _apply(graphdef, state, x, train)
    nnx.update(model, state)
    return out


def np_basic_block(block, x, stride, train):
    """ResNet basic block, torchvision layout."""
    y = relu(np_bn(np_conv(x, block.conv1.kernel[...], stride), block.bn1, train))
    y = np_bn(np_conv(y, block.conv2.kernel[...]), block.bn2, train)
    return relu(y + np_shortcut(block, x, stride, y.shape[-1], train))


def np_bottleneck(block, x, stride, train):
    """ResNet v1.5 bottleneck: the stride is on the 3x3 conv."""
    y = relu(np_bn(np_conv(x, block.conv1.kernel[...]), block.bn1, train))
    y = relu(np_bn(np_conv(y, block.conv2.kernel[...], stride), block.bn2, train))
    y = np_bn(np_conv(y, block.conv3.kernel[...]), block.bn3, train)
    return relu(y + np_shortcut(block, x, stride, y.shape[-1], train))


def np_shortcut(block, x, stride, out_ch, train):
    if stride == 1 and x.shape[-1] == out_ch:
        return x
    ds = block.downsample
    return np_bn(np_conv(x, ds.conv.kernel[...], stride), ds.bn, train)


def np_resnet18(model, x):
    """Eval-mode ResNet-18 forward written from the paper/torchvision description."""
    y = relu(np_bn(np_conv(x, model.conv1.kernel[...], 2), model.bn1, False))
    # 3x3 / 2 max pool with one pixel of -inf padding.
    yp = np.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    ho, wo = (yp.shape[1] - 3) // 2 + 1, (yp.shape[2] - 3) // 2 + 1
    y = np.max(
        [
            yp[:, i : i + 2 * (ho - 1) + 1 : 2, j : j + 2 * (wo - 1) + 1 : 2]
            for i in range(3)
            for j in range(3)
        ],
        axis=0,
    )
    for s, stage in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        for b, block in enumerate(stage):
            y = np_basic_block(block, y, 2 if (s > 0 and b == 0) else 1, False)
    pooled = y.mean(axis=(1, 2))
    return pooled @ np.asarray(model.fc.kernel[...], np.float64) + np.asarray(model.fc.bias[...])


def np_inverted_residual(block, x, stride, expand_ratio, train):
    """MobileNetV2 block; the depthwise conv is a per-channel loop (groups = channels)."""
    y = x
    if expand_ratio != 1:
        y = relu6(np_bn(np_conv(y, block.expand.conv.kernel[...]), block.expand.bn, train))
    dw = np.asarray(block.depthwise.conv.kernel[...])
    assert dw.shape[2] == 1  # [3, 3, 1, C]: one filter per channel
    y = relu6(np_bn(np_conv(y, dw, stride, groups=y.shape[-1]), block.depthwise.bn, train))
    y = np_bn(np_conv(y, block.project.conv.kernel[...]), block.project.bn, train)
    if stride == 1 and x.shape[-1] == y.shape[-1]:
        y = y + x
    return y


def np_small_cnn(model, x, train):
    """SmallCNN: conv3x3 (strides 1, 2, 2, SAME) + BN + ReLU, average pool, dense."""
    y = np.asarray(x, np.float64)
    for conv, norm, stride in zip(model.convs, model.norms, (1, 2, 2)):
        pad = np_same_pad(y.shape[1], 3, stride) + np_same_pad(y.shape[2], 3, stride)
        y = relu(np_bn(np_conv(y, conv.kernel[...], stride, pad), norm, train))
    pooled = y.mean(axis=(1, 2))
    return pooled @ np.asarray(model.head.kernel[...], np.float64) + np.asarray(
        model.head.bias[...]
    )


def rand(shape, seed=0, scale=1.0, offset=0.0):
    """Standard normal float32 input (drawn in numpy: no per-shape jax.random compile)."""
    x = np.random.default_rng(seed).standard_normal(shape) * scale + offset
    return jax.device_put(x.astype(np.float32))


# ---------------------------------------------------------------- parameter counts

# torchvision's published counts for a 1000-way head.
REFERENCE_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "mobilenet_v2": 3_504_872,
}


@functools.cache
def abstract_classifier(name, num_classes=1000):
    """The registry's network as shapes only (no allocation, no initialisation)."""
    return nnx.eval_shape(lambda: models.get_classifier(name, num_classes, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_parameter_count_matches_torchvision(name):
    assert models.count_params(abstract_classifier(name)) == REFERENCE_COUNTS[name]


def test_small_cnn_parameter_count_by_hand():
    # conv kernels (no bias) + BN scale/bias per layer + dense kernel and bias.
    c = (1, 16, 32, 64)
    expected = sum(9 * c[i] * c[i + 1] + 2 * c[i + 1] for i in range(3)) + 64 * 10 + 10
    abstract = nnx.eval_shape(
        lambda: models.get_classifier("small_cnn", 10, rngs=nnx.Rngs(0), in_channels=1)
    )
    assert models.count_params(abstract) == expected == 24_058


def test_make_divisible_hand_values():
    # Round to the nearest multiple of 8, never below 8, never more than 10% below.
    cases = [(32.0, 32), (16.0, 16), (12.0, 16), (11.2, 16), (4.0, 8), (44.8, 48), (1792.0, 1792)]
    for value, expected in cases:
        assert mobilenet_v2.make_divisible(value) == expected, value


def test_mobilenet_width_scales_channels_and_dropout_is_optional():
    abstract = nnx.eval_shape(
        lambda: mobilenet_v2.MobileNetV2(10, rngs=nnx.Rngs(0), width=0.5, dropout_rate=0.0)
    )
    # Without dropout the module holds no RNG state (nothing extra to carry or checkpoint).
    assert not jax.tree.leaves(nnx.state(abstract, nnx.RngState))
    assert abstract.stem.conv.kernel.shape == (3, 3, 3, 16)
    assert abstract.blocks[0].project.conv.kernel.shape == (1, 1, 16, 8)
    assert abstract.blocks[-1].project.conv.kernel.shape[-1] == 160
    assert abstract.classifier.kernel.shape == (1280, 10)  # the head never shrinks below 1280


def test_resnet50_is_v1_5():
    first = abstract_classifier("resnet50").layer2[0]
    assert first.conv1.strides in (1, (1, 1)) and first.conv2.strides in (2, (2, 2))


# ---------------------------------------------------------------- initialisers


def init_rngs():
    # The distribution under test does not depend on the PRNG; XLA's RngBitGenerator
    # compiles faster than threefry, and every new parameter shape costs a compile.
    return nnx.Rngs(jax.random.key(0, impl="rbg"))


def test_initialisers_follow_torchvision():
    block = resnet.BasicBlock(32, 32, 1, dtype=jnp.float32, rngs=init_rngs())
    # He normal with fan_out = 3 * 3 * 32.
    kernel = np.asarray(block.conv1.kernel[...])
    assert abs(kernel.std() / np.sqrt(2.0 / (9 * 32)) - 1.0) < 0.05
    assert abs(kernel.mean()) < 0.01
    np.testing.assert_array_equal(block.bn2.scale[...], 1.0)
    np.testing.assert_array_equal(block.bn2.bias[...], 0.0)
    np.testing.assert_array_equal(block.bn2.mean[...], 0.0)
    np.testing.assert_array_equal(block.bn2.var[...], 1.0)

    # torchvision's fan_out for a depthwise [C, 1, 3, 3] weight is 9 * C.
    depthwise = mobilenet_v2.ConvBN(
        192, 192, 3, groups=192, dtype=jnp.float32, rngs=init_rngs()
    ).conv.kernel[...]
    assert depthwise.shape == (3, 3, 1, 192)
    assert abs(np.std(depthwise) / np.sqrt(2.0 / (9 * 192)) - 1.0) < 0.1


def test_zero_init_residual_makes_blocks_start_as_identity():
    block = resnet.BasicBlock(
        32, 32, 1, zero_init_residual=True, dtype=jnp.float32, rngs=init_rngs()
    )
    np.testing.assert_array_equal(block.bn2.scale[...], 0.0)
    np.testing.assert_array_equal(block.bn1.scale[...], 1.0)
    x = rand((2, 5, 5, 32))
    np.testing.assert_allclose(apply(block, x, train=False), np.maximum(x, 0.0), atol=1e-6)


# ---------------------------------------------------------------- SmallCNN


@pytest.mark.parametrize("train", [False, True])
def test_small_cnn_forward_matches_numpy(train):
    model = materialize(lambda: small_cnn.SmallCNN(5, rngs=nnx.Rngs(0), in_channels=2), seed=1)
    x = rand((4, 8, 7, 2), seed=1)  # odd width: exercises SAME's asymmetric padding
    expected = np_small_cnn(model, np.asarray(x), train)
    np.testing.assert_allclose(apply(model, x, train=train), expected, rtol=1e-4, atol=1e-4)


def test_small_cnn_shapes_down_to_min_size():
    model = materialize(
        lambda: models.get_classifier("small_cnn", 7, rngs=nnx.Rngs(0), in_channels=1)
    )
    assert models.MIN_INPUT_SIZE["small_cnn"] == 4
    for shape in [(2, 4, 4, 1), (3, 9, 14, 1)]:
        logits = apply(model, rand(shape), train=False)
        assert logits.shape == (shape[0], 7) and logits.dtype == jnp.float32
        assert np.all(np.isfinite(logits))


def test_batch_norm_train_updates_running_stats_eval_does_not():
    model = materialize(lambda: small_cnn.SmallCNN(10, rngs=nnx.Rngs(0), in_channels=1))
    x = rand((8, 8, 8, 1), offset=1.0)
    bn = model.norms[0]
    old_mean, old_var = np.asarray(bn.mean[...]), np.asarray(bn.var[...])
    eval_logits = apply(model, x, train=False)
    np.testing.assert_array_equal(bn.mean[...], old_mean)  # eval leaves the stats alone
    np.testing.assert_array_equal(bn.var[...], old_var)
    train_logits = apply(model, x, train=True)
    assert not np.allclose(eval_logits, train_logits, atol=1e-3)

    # momentum 0.9: new = 0.9 * old + 0.1 * batch statistic (flax uses the biased variance).
    h = np_conv(np.asarray(x), model.convs[0].kernel[...], 1)
    expected_mean = 0.9 * old_mean + 0.1 * h.mean(axis=(0, 1, 2))
    expected_var = 0.9 * old_var + 0.1 * h.var(axis=(0, 1, 2))
    np.testing.assert_allclose(bn.mean[...], expected_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.var[...], expected_var, rtol=1e-4)
    # Eval now uses the updated running statistics.
    np.testing.assert_allclose(
        apply(model, x, train=False),
        np_small_cnn(model, np.asarray(x), False),
        rtol=1e-4,
        atol=1e-4,
    )


def test_small_cnn_every_parameter_gets_a_gradient():
    model = materialize(lambda: small_cnn.SmallCNN(10, rngs=nnx.Rngs(0), in_channels=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x, labels = rand((16, 8, 8, 1)), jax.device_put(np.arange(16) % 10)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    @jax.grad
    def grads(params):
        logits = nnx.merge(graphdef, params, rest, copy=True)(x, train=True)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    for path, g in jax.tree.leaves_with_path(grads(params)):
        assert np.all(np.isfinite(g)) and np.any(g != 0), path


def test_wrong_channels_and_bad_arguments_raise_value_error():
    model = materialize(lambda: small_cnn.SmallCNN(10, rngs=nnx.Rngs(0), in_channels=1))
    with pytest.raises(ValueError, match="in_channels"):
        model(np.zeros((2, 8, 8, 3), np.float32), train=False)
    with pytest.raises(ValueError, match="depth"):
        resnet.ResNet(10, rngs=nnx.Rngs(0), depth=19)
    with pytest.raises(ValueError, match="width"):
        mobilenet_v2.MobileNetV2(10, rngs=nnx.Rngs(0), width=0.0)
    with pytest.raises(ValueError, match="widths"):
        small_cnn.SmallCNN(10, rngs=nnx.Rngs(0), widths=(8, 8))


# ---------------------------------------------------------------- ResNet


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(
    "cls, in_ch, width, stride",
    [
        (resnet.BasicBlock, 4, 8, 2),  # projection shortcut
        (resnet.BasicBlock, 8, 8, 1),  # identity shortcut
        (resnet.Bottleneck, 8, 4, 2),  # v1.5: stride on the 3x3
        (resnet.Bottleneck, 16, 4, 1),
    ],
)
def test_resnet_blocks_match_numpy(cls, in_ch, width, stride, train):
    block = materialize(lambda: cls(in_ch, width, stride, dtype=jnp.float32, rngs=nnx.Rngs(0)), 2)
    x = rand((2, 7, 6, in_ch), seed=2)
    ref = np_basic_block if cls is resnet.BasicBlock else np_bottleneck
    expected = ref(block, np.asarray(x), stride, train)
    assert expected.shape == (2, -(-7 // stride), -(-6 // stride), width * cls.expansion)
    np.testing.assert_allclose(apply(block, x, train=train), expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def resnet18():
    return materialize(abstract_classifier("resnet18"), seed=3)


RESNET18_INPUT = (2, 37, 32, 3)  # non-square, odd


def test_resnet18_forward_matches_numpy(resnet18):
    x = rand(RESNET18_INPUT, seed=3)
    logits = apply(resnet18, x, train=False)
    assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, np_resnet18(resnet18, np.asarray(x)), rtol=1e-3, atol=1e-3)


def test_resnet18_min_size(resnet18):
    size = models.MIN_INPUT_SIZE["resnet18"]
    logits = apply(resnet18, rand((1, size, size, 3)), train=False)
    assert logits.shape == (1, 1000) and np.all(np.isfinite(logits))


def test_resnet50_runs_at_min_size_non_square():
    model = materialize(abstract_classifier("resnet50"), seed=7)
    logits = apply(model, rand((1, 32, 40, 3)), train=False)
    assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits)) and np.std(logits) > 0


# ---------------------------------------------------------------- MobileNetV2


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(
    "in_ch, out_ch, stride, expand_ratio",
    [(8, 8, 1, 6), (8, 12, 2, 6), (8, 16, 1, 1)],
)
def test_inverted_residual_matches_numpy(in_ch, out_ch, stride, expand_ratio, train):
    block = materialize(
        lambda: mobilenet_v2.InvertedResidual(
            in_ch, out_ch, stride, expand_ratio, dtype=jnp.float32, rngs=nnx.Rngs(0)
        ),
        seed=4,
    )
    x = rand((2, 6, 5, in_ch), seed=4, scale=3.0)  # large enough that ReLU6 clips
    expected = np_inverted_residual(block, np.asarray(x), stride, expand_ratio, train)
    np.testing.assert_allclose(apply(block, x, train=train), expected, rtol=1e-4, atol=1e-4)


MOBILENET_INPUT = (2, 32, 45, 3)  # min size, non-square


@pytest.fixture(scope="module")
def mobilenet():
    # A new network's BN values: see test_bfloat16_mobilenet_v2, which reuses this model.
    return materialize(abstract_classifier("mobilenet_v2"), seed=6, fresh_bn=True)


def test_mobilenet_shapes_and_dropout_only_in_training(mobilenet):
    model = nnx.clone(mobilenet)  # training moves BN statistics; keep the fixture fresh
    x = rand(MOBILENET_INPUT)
    a, b = apply(model, x, train=True), apply(model, x, train=True)
    assert a.shape == (2, 1000) and a.dtype == jnp.float32 and np.all(np.isfinite(a))
    assert not np.allclose(a, b)  # fresh dropout masks (BN batch stats are the same)
    c, d = apply(model, x, train=False), apply(model, x, train=False)
    np.testing.assert_array_equal(c, d)


# ---------------------------------------------------------------- bfloat16


def assert_bf16_close(f32, bf16, x, modes, tol=0.06):
    """bf16 compute vs float32 on the same float32 parameters."""
    pairs = zip(*(jax.tree.leaves(nnx.state(m, nnx.Param, nnx.BatchStat)) for m in (f32, bf16)))
    for p, q in pairs:
        assert q.dtype == p.dtype == jnp.float32 and np.array_equal(p, q)
    for train in modes:
        ref, low = apply(f32, x, train=train), apply(bf16, x, train=train)
        assert low.dtype == jnp.float32 and np.all(np.isfinite(low))
        rel = np.linalg.norm(low - ref) / np.linalg.norm(ref)
        assert rel < tol, (train, rel)
    for _, node in nnx.iter_graph(bf16):  # BN statistics stay float32
        if isinstance(node, nnx.BatchNorm):
            assert node.mean[...].dtype == jnp.float32


def test_bfloat16_small_cnn():
    ctor = lambda dtype: (
        lambda: small_cnn.SmallCNN(10, rngs=nnx.Rngs(0), in_channels=1, dtype=dtype)
    )
    f32, bf16 = (materialize(ctor(dtype), seed=5) for dtype in (jnp.float32, jnp.bfloat16))
    assert_bf16_close(f32, bf16, rand((16, 8, 8, 1)), modes=(False, True))


# The big networks in eval mode only: their last maps are 1x1 or 1x2 at these
# sizes, and train-mode BN over two or four values per channel amplifies any
# rounding; that says nothing about bf16.


def bf16_classifier(name):
    return lambda: models.get_classifier(name, 1000, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)


def test_bfloat16_resnet18(resnet18):
    bf16 = materialize(bf16_classifier("resnet18"), seed=3)
    assert_bf16_close(resnet18, bf16, rand(RESNET18_INPUT, seed=3), modes=(False,))


def test_bfloat16_mobilenet_v2(mobilenet):
    # With random running statistics this untrained network amplifies small errors
    # layer by layer: bf16 compute ends ~0.16 from float32, and merely rounding the
    # float32 input to bf16 precision moves the logits ~0.07. So it keeps a new
    # network's BN values, with which bf16 ends ~0.03 away.
    bf16 = materialize(bf16_classifier("mobilenet_v2"), seed=6, fresh_bn=True)
    assert_bf16_close(mobilenet, bf16, rand(MOBILENET_INPUT), modes=(False,))


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "mobilenet_v2"])
def test_headless_backbone_returns_the_pooled_features_the_head_sees(name):
    """num_classes=0 drops the head; the headed model's logits are head(those features)."""
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
    headed = models.get_classifier(name, 5, rngs=nnx.Rngs(0))
    headless = models.get_classifier(name, 0, rngs=nnx.Rngs(0))
    feats = headless(x, train=False)
    assert feats.shape == (2, headless.num_features) and feats.dtype == jnp.float32
    head = {"small_cnn": "head", "resnet18": "fc", "mobilenet_v2": "classifier"}[name]
    layer = getattr(headed, head)
    np.testing.assert_allclose(
        headed(x, train=False), feats @ layer.kernel[...] + layer.bias[...], rtol=1e-4, atol=1e-5
    )
    assert models.count_params(headed) - models.count_params(headless) == (
        headless.num_features * 5 + 5
    )
