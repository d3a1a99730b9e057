"""The learned resizer as an ONNX graph, written with the `onnx` package's helper API.

`onnx_model` builds it from the folded weights (`resizers.fold_batch_norm`): `Conv`
(each conv + BatchNorm pair as one conv with a bias), `LeakyRelu`, and each fixed resize
as two `MatMul`s whose weight matrices are computed in the graph from the input's
`Shape` with `Range`/integer arithmetic, the same formula as `resampling.resize_matrix`,
so one file takes any batch, height and width. Layout NCHW. `tools/export.py
--format=onnx` writes it with its settings; why not a converter: see that module.
"""

import numpy as np

ONNX_OPSET = 17


class _Graph:
    """Nodes and constants of an ONNX graph under construction, named in order."""

    def __init__(self):
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attributes) -> str:
        from onnx import helper

        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attributes))
        return out

    def int64(self, value: int) -> str:
        return self.const(value, "i", np.int64)


def _onnx_dimension(g: _Graph, x: str, axis: int) -> str:
    """x.shape[axis] as an int64 scalar."""
    return g.op("Gather", g.op("Shape", x), g.int64(axis), axis=0, hint="size")


def _onnx_resize_matrix(g: _Graph, n_in: str, n_out: int, method: str, antialias: bool) -> str:
    """`resampling.resize_matrix(n_in, n_out, method, antialias)` as ONNX ops of n_in."""
    zero, one, two = g.int64(0), g.int64(1), g.int64(2)
    i = g.op("Unsqueeze", g.op("Range", zero, g.int64(n_out), one), one, hint="i")  # [out, 1]
    j = g.op("Unsqueeze", g.op("Range", zero, n_in, one), zero, hint="j")  # [1, in]
    out = g.int64(n_out)
    odd_i = g.op("Add", g.op("Mul", two, i), one)  # 2i + 1
    odd_j = g.op("Add", g.op("Mul", two, j), one)
    f32 = dict(to=1)  # onnx.TensorProto.FLOAT
    if method == "nearest":
        source = g.op("Div", g.op("Mul", odd_i, n_in), g.op("Mul", two, out))  # floor: >= 0
        weights = g.op("Cast", g.op("Equal", j, source), **f32)
    elif method == "area":
        low = g.op("Max", g.op("Mul", i, n_in), g.op("Mul", j, out))
        i_end, j_end = g.op("Add", i, one), g.op("Add", j, one)
        high = g.op("Min", g.op("Mul", i_end, n_in), g.op("Mul", j_end, out))
        overlap = g.op("Cast", g.op("Max", g.op("Sub", high, low), zero), **f32)
        weights = g.op("Div", overlap, g.op("Cast", n_in, **f32))
    else:
        widen = g.op("Max", n_in, out) if antialias else out
        distance = g.op("Abs", g.op("Sub", g.op("Mul", odd_i, n_in), g.op("Mul", odd_j, out)))
        d = g.op("Div", g.op("Cast", distance, **f32), g.op("Cast", g.op("Mul", two, widen), **f32))
        weights = _ONNX_KERNELS[method](g, d)
        total = g.op("ReduceSum", weights, g.const([1], "axes", np.int64), keepdims=1)
        weights = g.op("Div", weights, total)
    identity = g.op("Cast", g.op("Equal", i, j), **f32)
    return g.op("Where", g.op("Equal", n_in, out), identity, weights, hint="weights")


def _onnx_triangle(g: _Graph, d: str) -> str:
    return g.op("Max", g.op("Sub", g.const(1.0), d), g.const(0.0))


def _onnx_keys_cubic(g: _Graph, d: str) -> str:
    c = g.const

    def mul_add(t, a, b):  # (t * a) + b, or t * a with b None
        product = g.op("Mul", t, a)
        return product if b is None else g.op("Add", product, b)

    # As resampling._keys_cubic: ((1.5 d - 2.5) d) d + 1 and ((-0.5 d + 2.5) d - 4) d + 2.
    near = mul_add(mul_add(mul_add(d, c(1.5), c(-2.5)), d, None), d, c(1.0))
    far = mul_add(mul_add(mul_add(d, c(-0.5), c(2.5)), d, c(-4.0)), d, c(2.0))
    inner = g.op("Where", g.op("GreaterOrEqual", d, c(1.0)), far, near)
    return g.op("Where", g.op("GreaterOrEqual", d, c(2.0)), c(0.0), inner)


def _onnx_lanczos(radius: float):
    def kernel(g: _Graph, d: str) -> str:
        c = g.const
        y = g.op("Mul", g.op("Mul", c(radius), g.op("Sin", g.op("Mul", c(np.pi), d))),
                 g.op("Sin", g.op("Div", g.op("Mul", c(np.pi), d), c(radius))))  # fmt: skip
        square = g.op("Mul", c(np.pi**2), g.op("Mul", d, d))
        safe = g.op("Where", g.op("Equal", d, c(0.0)), c(1.0), square)
        out = g.op("Where", g.op("Greater", d, c(1e-3)), g.op("Div", y, safe), c(1.0))
        return g.op("Where", g.op("Greater", d, c(radius)), c(0.0), out)

    return kernel


_ONNX_KERNELS = {
    "bilinear": _onnx_triangle,
    "bicubic": _onnx_keys_cubic,
    "lanczos3": _onnx_lanczos(3.0),
    "lanczos5": _onnx_lanczos(5.0),
}


def _onnx_resize(g: _Graph, x: str, size, method: str, antialias: bool) -> str:
    """NCHW x -> [N, C, h, w]: Wh @ x @ Ww^T, weights computed from x's shape."""
    rows = _onnx_resize_matrix(g, _onnx_dimension(g, x, 2), size[0], method, antialias)
    cols = _onnx_resize_matrix(g, _onnx_dimension(g, x, 3), size[1], method, antialias)
    y = g.op("MatMul", rows, x)  # [h, H] @ [N, C, H, W] -> [N, C, h, W]
    return g.op("MatMul", y, g.op("Transpose", cols, perm=[1, 0]), hint="resized")


def _channel(value) -> np.ndarray:
    """A per-channel vector as a [1, C, 1, 1] float32 constant (NCHW broadcasting)."""
    return np.asarray(value, np.float32).reshape(1, -1, 1, 1)


def _onnx_conv(g: _Graph, x: str, conv, bn=None) -> str:
    """nnx.Conv (stride 1, 'SAME', odd kernel), with a following BatchNorm folded in."""
    kernel = np.asarray(conv.kernel[...], np.float64)  # HWIO
    bias = np.zeros(kernel.shape[-1]) if conv.bias is None else np.asarray(conv.bias[...])
    if bn is not None:  # eval mode: (y - mean) * scale / sqrt(var + eps) + bias
        mean, var, scale, shift = (
            np.asarray(v[...], np.float64) for v in (bn.mean, bn.var, bn.scale, bn.bias)
        )
        mul = scale / np.sqrt(var + bn.epsilon)
        kernel, bias = kernel * mul, (bias - mean) * mul + shift
    k = kernel.shape[0]
    weights = g.const(np.transpose(kernel, (3, 2, 0, 1)), "kernel")  # OIHW
    return g.op(
        "Conv", x, weights, g.const(bias, "bias"), kernel_shape=[k, k], pads=[k // 2] * 4,
        hint="conv",
    )  # fmt: skip


def _onnx_group_norm(g: _Graph, x: str, gn) -> str:
    """nnx.GroupNorm on NCHW x: statistics per image and group of channels (fast variance)."""
    groups = int(gn.num_groups)
    grouped = g.op("Reshape", x, g.const([0, groups, -1], "shape", np.int64))
    mean = g.op("ReduceMean", grouped, axes=[2], keepdims=1)
    mean_sq = g.op("ReduceMean", g.op("Mul", grouped, grouped), axes=[2], keepdims=1)
    var = g.op("Max", g.op("Sub", mean_sq, g.op("Mul", mean, mean)), g.const(0.0))
    mul = g.op("Reciprocal", g.op("Sqrt", g.op("Add", var, g.const(gn.epsilon))))
    normed = g.op("Mul", g.op("Sub", grouped, mean), mul)
    y = g.op("Reshape", normed, g.op("Shape", x))
    scale, bias = np.asarray(gn.scale[...]), np.asarray(gn.bias[...])
    return g.op("Add", g.op("Mul", y, g.const(_channel(scale))), g.const(_channel(bias)))


def _onnx_conv_norm(g: _Graph, x: str, layer, norm: str) -> str:
    """A `resizers._ConvBN` (conv, then its BatchNorm folded in or its GroupNorm)."""
    if norm == "batch":
        return _onnx_conv(g, x, layer.conv, layer.bn)
    y = _onnx_conv(g, x, layer.conv)
    return _onnx_group_norm(g, y, layer.bn) if norm == "group" else y


def onnx_model(resizer, mean, std, channels: int):
    """The ONNX model of `resizer` (eval mode) behind the run's normalisation (per-channel
    `mean`, `std`), NCHW."""
    import onnx
    from onnx import helper

    from learned_resize.models import resizers

    folded = resizers.fold_batch_norm(resizer)
    size, method, antialias = folded.output_size, folded.interpolation, folded.antialias
    norm = folded.norm
    g = _Graph()

    def lrelu(t):
        return g.op("LeakyRelu", t, alpha=resizers._LEAKY_SLOPE)

    x = g.op("Div", g.op("Sub", "images", g.const(_channel(mean))), g.const(_channel(std)))
    skip = _onnx_resize(g, x, size, method, antialias)
    y = lrelu(_onnx_conv(g, x, folded.head_conv7))
    y = lrelu(_onnx_conv(g, y, folded.head_conv1))
    if norm == "batch":  # After the resize, as the module computes it (a per-channel map).
        bn = folded.head_bn
        mul = np.asarray(bn.scale[...], np.float64) / np.sqrt(
            np.asarray(bn.var[...], np.float64) + bn.epsilon
        )
        y = _onnx_resize(g, y, size, method, antialias)
        y = g.op("Mul", g.op("Sub", y, g.const(_channel(bn.mean[...]))), g.const(_channel(mul)))
        y = g.op("Add", y, g.const(_channel(bn.bias[...])))
    elif norm == "group":
        y = _onnx_resize(g, _onnx_group_norm(g, y, folded.head_bn), size, method, antialias)
    else:
        y = _onnx_resize(g, y, size, method, antialias)
    z = y
    for block in folded.blocks:
        inner = lrelu(_onnx_conv_norm(g, z, block.first, norm))
        z = g.op("Add", z, _onnx_conv_norm(g, inner, block.second, norm))
    z = g.op("Add", _onnx_conv_norm(g, z, folded.tail, norm), y)
    out = g.op("Add", _onnx_conv(g, z, folded.out_conv), skip)
    g.nodes.append(
        helper.make_node(
            "Add", [g.op("Mul", out, g.const(_channel(std))), g.const(_channel(mean))], ["resized"]
        )
    )
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes,
        "learned_resizer",
        [helper.make_tensor_value_info("images", f32, ["batch", channels, "height", "width"])],
        [helper.make_tensor_value_info("resized", f32, ["batch", channels, *size])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="learned_resize",
        ir_version=8,  # opset 17's, readable by onnxruntime >= 1.13
    )
    onnx.checker.check_model(model, full_check=True)
    return model
