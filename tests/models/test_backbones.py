"""Each backbone against independent references: SmallCNN, ResNet, MobileNetV2,
DenseNet, Inception-v2 and EfficientNet.

The references re-implement convolution (sum over kernel taps), batch norm and the
block wiring in float64 numpy from each module's own parameters, with the
architecture (strides, padding, residual rules) written down independently of the
module code. Also here: the initialisers, batch statistics in train and eval mode,
bf16 against float32, and the constructors' user errors.

Speed: on XLA:CPU every distinct program costs a compile (0.1-0.5 s on a busy
2-core machine), so networks are built abstractly (`nnx.eval_shape`) and filled
with numpy values (`materialize`, `_filled_state`) instead of running one
jax.random program per parameter shape, forward passes are jitted whole with a
cheap XLA optimisation level, and the big networks are built once per module (each
of DenseNet, Inception-v2 and EfficientNet compiled once in eval mode, EfficientNet
also in train mode); the real initialisers, and the other train-mode and bf16
checks, run on small modules or single blocks.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize import models
from learned_resize.config import defaults
from learned_resize.models import (
    densenet,
    efficientnet,
    inception_v2,
    mobilenet_v2,
    resnet,
    small_cnn,
)

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


@functools.cache
def abstract_classifier(name, num_classes=1000):
    """The registry's network as shapes only (no allocation, no initialisation)."""
    return nnx.eval_shape(lambda: models.get_classifier(name, num_classes, rngs=nnx.Rngs(0)))


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
    assert defaults.MIN_INPUT_SIZE["small_cnn"] == 4
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
    size = defaults.MIN_INPUT_SIZE["resnet18"]
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


# ------------------------------------------- DenseNet, Inception-v2, EfficientNet

# Compiling is the cost here; LLVM optimisations would only speed up tiny runs.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_NAMES = ("densenet121", "inception_v2", "efficientnet_b0")


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
