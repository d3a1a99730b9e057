"""`nnx.Conv` whose 1x1 convolutions are matrix products.

A 1x1 convolution over NHWC activations is the matrix product
[N*H*W, C_in] @ [C_in, C_out] (after subsampling for a stride). Written as a
convolution, XLA:CPU computes its kernel gradient as another convolution that
wants both the input and the output gradient transposed to channel-major layout
first: two full-size copies per layer per step. As a `dot_general` the same
gradient is x^T @ dy on the arrays as they are. The module keeps `nnx.Conv`'s
parameters, names and initialisers (a [1, 1, C_in, C_out] kernel), so parameter
counts and checkpoints are unchanged; every other convolution (larger kernels,
groups, dilation, masks, 1-D or 3-D inputs) is `nnx.Conv` itself.
"""

import jax
from flax import nnx


def _pairs(value, default):
    if value is None:
        return (default, default)
    return (value, value) if isinstance(value, int) else tuple(value)


def _unpadded(padding) -> bool:
    if isinstance(padding, str):
        return padding in ("SAME", "VALID")  # Both pad nothing for a 1x1 kernel.
    if isinstance(padding, int):
        return padding == 0
    return all((p == 0) if isinstance(p, int) else tuple(p) == (0, 0) for p in padding)


class Conv(nnx.Conv):
    """`nnx.Conv`, with 2-D 1x1 convolutions computed as a matrix product."""

    def _is_pointwise(self, inputs) -> bool:
        return (
            inputs.ndim == 4
            and tuple(self.kernel_size) == (1, 1)
            and self.feature_group_count == 1
            and self.mask is None
            and _pairs(self.input_dilation, 1) == (1, 1)
            and _unpadded(self.padding)
        )

    def __call__(self, inputs, out_sharding=None):
        if out_sharding is not None:  # (flax < 0.12.3's Conv has no such argument)
            return super().__call__(inputs, out_sharding=out_sharding)
        if not self._is_pointwise(inputs):
            return super().__call__(inputs)
        sh, sw = _pairs(self.strides, 1)
        if (sh, sw) != (1, 1):
            inputs = inputs[:, ::sh, ::sw, :]  # ceil(H / s) rows, as SAME / VALID give for k=1.
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = self.promote_dtype(
            (inputs, self.kernel[...][0, 0], bias), dtype=self.dtype
        )
        y = jax.lax.dot_general(
            x,
            kernel,
            (((3,), (0,)), ((), ())),
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        return y if bias is None else y + bias
