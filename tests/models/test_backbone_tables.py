"""MobileNet-v2, EfficientNet-B0 and Inception-v2 against their published architecture tables.

Output shape and parameter count (tests/models/test_registry.py and test_backbones.py)
do not see where a network downsamples: a block's stride moved to the next block, or a
pool moved, keeps both. Here every block's (or stage's) output size and channels at
224x224 are recorded from the model's own forward pass (each block class's `__call__`
wrapped to log its output shape, under `jax.eval_shape`) and compared with tables typed
in by hand from the papers, and the multiply-adds of the convolutions and dense layers
are counted from the traced program and compared with the papers' totals.
"""

import math

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from learned_resize import models
from learned_resize.models import efficientnet, inception_v2, mobilenet_v2
from learned_resize.models.cpu import conv_forms

SIZE = 224


def _record(monkeypatch, methods):
    """Wraps each (class, method name) to append (module, output shape) to the list returned."""
    calls = []
    for cls, name in methods:
        original = getattr(cls, name)

        def wrapper(self, *args, _original=original, **kwargs):
            y = _original(self, *args, **kwargs)
            calls.append((self, tuple(y.shape)))
            return y

        monkeypatch.setattr(cls, name, wrapper)
    return calls


def _run(model):
    """The eval-mode forward pass of one 224x224 RGB image, shapes only."""
    jax.eval_shape(
        lambda x: model(x, train=False), jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32)
    )


def _outputs(calls, modules):
    """Output shapes (H, W, C) of `modules`, in the order the forward pass called them."""
    ids = {id(m) for m in modules}
    return [shape[1:] for module, shape in calls if id(module) in ids]


def _macs(model) -> float:
    """Multiply-adds of every convolution and dense layer of the forward pass, from the jaxpr.

    Traced with `conv_forms.plain()`, so every convolution is one `conv_general_dilated`
    (on CPU the depthwise ones are otherwise elementwise taps). Each output value of a
    convolution costs kh * kw * in_channels / groups multiply-adds (padded taps included,
    the papers' convention); each of a matrix product the contracted length.
    """

    def count(jaxpr) -> float:
        total = 0.0
        for eqn in jaxpr.eqns:
            assert eqn.primitive.name != "cond"  # one branch would run: not summed here
            if eqn.primitive.name == "conv_general_dilated":
                rhs = eqn.invars[1].aval
                out_features = rhs.shape[eqn.params["dimension_numbers"].rhs_spec[0]]
                total += math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs.shape) / out_features
            elif eqn.primitive.name == "dot_general":
                (contract, _), _ = eqn.params["dimension_numbers"]
                depth = math.prod(eqn.invars[0].aval.shape[d] for d in contract)
                total += math.prod(eqn.outvars[0].aval.shape) * depth
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        total += count(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        total += count(sub)
        return total

    with conv_forms.plain():
        x = jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32)
        return count(jax.make_jaxpr(lambda x: model(x, train=False))(x).jaxpr)


# --------------------------------------------------------------------------- MobileNet-v2

# Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", Table 2:
# input (H = W, channels), operator, expansion t, output channels c, repeats n, stride s.
MOBILENET_V2_TABLE_2 = (
    (224, 3, "conv2d", None, 32, 1, 2),
    (112, 32, "bottleneck", 1, 16, 1, 1),
    (112, 16, "bottleneck", 6, 24, 2, 2),
    (56, 24, "bottleneck", 6, 32, 3, 2),
    (28, 32, "bottleneck", 6, 64, 4, 2),
    (14, 64, "bottleneck", 6, 96, 3, 1),
    (14, 96, "bottleneck", 6, 160, 3, 2),
    (7, 160, "bottleneck", 6, 320, 1, 1),
    (7, 320, "conv2d 1x1", None, 1280, 1, 1),
    (7, 1280, "avgpool 7x7", None, None, 1, None),
)
# Section 6.1 / Table 4: 300M multiply-adds at 224x224 (width 1.0).
MOBILENET_V2_MACS = 300e6


def _expected_layers(table):
    """[(H, W, C) of each layer's output, expansion width or None], row by row: a row's
    layers keep its input size but the first, which ends at the next row's input size."""
    layers = []
    for row, following in zip(table, table[1:]):
        (_, c_in, _, t, c, n, _), out_size = row, following[0]
        for i in range(n):
            hidden = None if t is None else t * (c_in if i == 0 else c)
            layers.append(((out_size, out_size, c), hidden))
    return layers


def test_mobilenet_v2_block_outputs_match_the_papers_table(monkeypatch):
    model = models.get_classifier("mobilenet_v2", 1000, rngs=nnx.Rngs(0))
    calls = _record(
        monkeypatch,
        [(mobilenet_v2.ConvBN, "__call__"), (mobilenet_v2.InvertedResidual, "__call__")],
    )
    _run(model)
    units = [model.stem, *model.blocks, model.last_conv]
    expected = _expected_layers(MOBILENET_V2_TABLE_2)
    assert len(units) == len(expected) == 1 + 17 + 1
    assert _outputs(calls, units) == [shape for shape, _ in expected]
    # Each bottleneck's 3x3 depthwise layer is t times its input width (Table 1).
    widths = [block.depthwise.conv.out_features for block in model.blocks]
    assert widths == [hidden for _, hidden in expected[1:-1]]


def test_mobilenet_v2_multiply_adds_match_the_paper():
    model = models.get_classifier("mobilenet_v2", 1000, rngs=nnx.Rngs(0))
    # 300.8M counted; the paper's figure is given to two digits: within 2%. A stride of 2
    # moved one stage later, or left out, changes the count by far more.
    assert _macs(model) == pytest.approx(MOBILENET_V2_MACS, rel=0.02)


# ------------------------------------------------------------------------ EfficientNet-B0

# Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs", Table 1: stage,
# operator, kernel, input resolution (H = W), output channels, layers.
EFFICIENTNET_B0_TABLE_1 = (
    (1, "Conv3x3", 3, 224, 32, 1),
    (2, "MBConv1", 3, 112, 16, 1),
    (3, "MBConv6", 3, 112, 24, 2),
    (4, "MBConv6", 5, 56, 40, 2),
    (5, "MBConv6", 3, 28, 80, 3),
    (6, "MBConv6", 5, 14, 112, 3),
    (7, "MBConv6", 5, 14, 192, 4),
    (8, "MBConv6", 3, 7, 320, 1),
    (9, "Conv1x1 & Pooling & FC", 1, 7, 1280, 1),
)
# Table 2: 0.39B FLOPS, which the paper counts as multiply-adds.
EFFICIENTNET_B0_MACS = 0.39e9


def test_efficientnet_b0_stage_outputs_match_the_papers_table(monkeypatch):
    model = models.get_classifier("efficientnet_b0", 1000, rngs=nnx.Rngs(0))
    calls = _record(
        monkeypatch, [(efficientnet.ConvBN, "__call__"), (efficientnet.MBConv, "__call__")]
    )
    _run(model)
    units = [model.stem, *model.blocks, model.head]
    # A stage's input resolution is the table's; its output resolution the next stage's
    # input (the head keeps 7x7 and pools after).
    expected, kernels, expansions = [], [], []
    table = EFFICIENTNET_B0_TABLE_1
    for row, following in zip(table, table[1:] + (table[-1],)):
        _, operator, kernel, _, channels, layers = row
        expected += [(following[3], following[3], channels)] * layers
        if operator.startswith("MBConv"):
            kernels += [kernel] * layers
            expansions += [int(operator[len("MBConv") :])] * layers
    assert len(units) == len(expected) == 1 + 16 + 1
    assert _outputs(calls, units) == expected
    # Per layer: the depthwise kernel and the expansion of the block input's width.
    assert [block.depthwise.conv.kernel_size for block in model.blocks] == [(k, k) for k in kernels]
    block_inputs = [32] + [shape[-1] for shape in expected[1:-2]]
    widths = [block.depthwise.conv.out_features for block in model.blocks]
    assert widths == [t * c for t, c in zip(expansions, block_inputs)]


def test_efficientnet_b0_multiply_adds_match_the_paper():
    model = models.get_classifier("efficientnet_b0", 1000, rngs=nnx.Rngs(0))
    # 385.8M counted; "0.39B" is given to two digits: within 2%.
    assert _macs(model) == pytest.approx(EFFICIENTNET_B0_MACS, rel=0.02)


# --------------------------------------------------------------------------- Inception-v2

# TF-slim's inception_v2 end points at 224x224 (its inception_v2_test.py), which are the
# output sizes of Ioffe & Szegedy 2015, Figure 5 (the table of the Inception network with
# BatchNorm; slim names its rows 3a..5b Mixed_3b..Mixed_5c, the stride-2 rows 3c and 4e
# Mixed_4a and Mixed_5a).
INCEPTION_V2_END_POINTS = (
    ("Conv2d_1a_7x7", (112, 112, 64)),
    ("MaxPool_2a_3x3", (56, 56, 64)),
    ("Conv2d_2b_1x1", (56, 56, 64)),
    ("Conv2d_2c_3x3", (56, 56, 192)),
    ("MaxPool_3a_3x3", (28, 28, 192)),
    ("Mixed_3b", (28, 28, 256)),
    ("Mixed_3c", (28, 28, 320)),
    ("Mixed_4a", (14, 14, 576)),
    ("Mixed_4b", (14, 14, 576)),
    ("Mixed_4c", (14, 14, 576)),
    ("Mixed_4d", (14, 14, 576)),
    ("Mixed_4e", (14, 14, 576)),
    ("Mixed_5a", (7, 7, 1024)),
    ("Mixed_5b", (7, 7, 1024)),
    ("Mixed_5c", (7, 7, 1024)),
)
# Figure 5's branch widths of the resolution-keeping blocks: #1x1, #3x3 reduce, #3x3,
# double #3x3 reduce, double #3x3, pool projection. Row 4c's pool projection is 96 as in
# slim: the figure prints 128, which would not sum to the 576 channels it gives.
INCEPTION_V2_FIGURE_5 = {
    "Mixed_3b": (64, 64, 64, 64, 96, 32),
    "Mixed_3c": (64, 64, 96, 64, 96, 64),
    "Mixed_4b": (224, 64, 96, 96, 128, 128),
    "Mixed_4c": (192, 96, 128, 96, 128, 128),
    "Mixed_4d": (160, 128, 160, 128, 160, 96),
    "Mixed_4e": (96, 128, 192, 160, 192, 96),
    "Mixed_5b": (352, 192, 320, 160, 224, 128),
    "Mixed_5c": (352, 192, 320, 192, 224, 128),
}


def test_inception_v2_end_points_match_the_papers_table(monkeypatch):
    model = models.get_classifier("inception_v2", 1000, rngs=nnx.Rngs(0))
    calls = _record(
        monkeypatch,
        [
            (inception_v2.InceptionV2, "stem"),
            (inception_v2.InceptionBlock, "__call__"),
            (inception_v2.ReductionBlock, "__call__"),
            (inception_v2.ConvBN, "__call__"),
        ],
    )
    inputs = []  # The max pools are no modules: their outputs are the next layers' inputs.
    for module in (model.conv2b, model.blocks[0]):
        original = type(module).__call__

        def wrapper(self, x, *args, _original=original, _module=module, **kwargs):
            if self is _module:
                inputs.append(tuple(x.shape[1:]))
            return _original(self, x, *args, **kwargs)

        monkeypatch.setattr(type(module), "__call__", wrapper)
    _run(model)
    names = [name for name, *_ in inception_v2._BLOCKS]
    assert names == [name for name, _ in INCEPTION_V2_END_POINTS[5:]]
    conv_layers = _outputs(calls, [model, model.conv2b, model.conv2c])
    blocks = _outputs(calls, model.blocks)
    recorded = [conv_layers[0], inputs[0], *conv_layers[1:], inputs[1], *blocks]
    assert list(zip([name for name, _ in INCEPTION_V2_END_POINTS], recorded)) == list(
        INCEPTION_V2_END_POINTS
    )
    for name, block in zip(names, model.blocks):
        if name in INCEPTION_V2_FIGURE_5:
            widths = (
                block.branch0.conv.out_features,
                *(layer.conv.out_features for layer in block.branch1),
                *(layer.conv.out_features for layer in block.branch2[:2]),
                block.branch3.conv.out_features,
            )
            assert widths == INCEPTION_V2_FIGURE_5[name], name
            # Both 3x3 layers of the double-3x3 branch have the figure's width.
            assert block.branch2[2].conv.out_features == widths[4], name
