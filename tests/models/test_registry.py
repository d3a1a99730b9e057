"""The classifier registry (`models.get_classifier`, `models.count_params`): every
backbone built by name has the parameter count of its published reference
(torchvision's counts; TF-slim's layer shapes for Inception-v2, summed here), and the
headless form (num_classes=0) returns the pooled features the head sees.

Networks are built abstractly (`nnx.eval_shape`): counting needs shapes only.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize import models
from learned_resize.models import (
    inception_v2,
)

# ------------------------------------------- SmallCNN, ResNet, MobileNetV2

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


def test_resnet50_is_v1_5():
    first = abstract_classifier("resnet50").layer2[0]
    assert first.conv1.strides in (1, (1, 1)) and first.conv2.strides in (2, (2, 2))


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


# ------------------------------------------- DenseNet, Inception-v2, EfficientNet


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
