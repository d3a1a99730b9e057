"""A stride-1 'SAME' convolution with few output channels, fast on XLA:CPU.

XLA:CPU's convolution costs about the same time per input pixel and kernel tap
whatever the number of output channels, so with 3 of them (the learned resizer's
out_conv: 16 -> 3 channels, 7x7) it runs at under half the FLOP rate of the
resizer's other convs. Written as matmuls with one operand of k*k*c_out columns,
the same sums run at matmul speed; the price is a tensor of k*k*c_out/c_in times
the memory of `x` (~9x for out_conv), alive only inside the forward or backward
pass. That pays under tcmalloc and loses under glibc's malloc, which faults such a
tensor's pages in again at every step (bench/resizer.py, docs/performance.md;
allocator.py).

So the CPU formulation is chosen once, when this module is imported (at start-up:
`main.py` re-executes under tcmalloc before importing anything of JAX's): "taps"
under tcmalloc, "xla" (XLA's own convolution) otherwise, and always "xla" when the
CPU forms are switched off (`models/cpu/__init__.py`). `use_formulation` changes
it for benchmarks and tests; it affects only programs traced afterwards. Other
platforms always run XLA's convolution and its own gradients.
"""

import contextlib

import jax
import jax.numpy as jnp

from learned_resize.models import cpu
from learned_resize.runtime import allocator

FORMULATIONS = ("taps", "xla")


def _start_up_formulation() -> str:
    if not cpu.enabled():
        return "xla"
    return "taps" if allocator.loaded_allocator() == "tcmalloc" else "xla"


_formulation = _start_up_formulation()


def formulation() -> str:
    """The CPU formulation that programs traced now use: 'taps' or 'xla'."""
    return _formulation


@contextlib.contextmanager
def use_formulation(name: str):
    """Traces inside this context use CPU formulation `name` ('taps' or 'xla')."""
    global _formulation
    if name not in FORMULATIONS:
        raise ValueError(f"CPU conv formulation {name!r}; use one of {', '.join(FORMULATIONS)}.")
    previous, _formulation = _formulation, name
    try:
        yield
    finally:
        _formulation = previous


@jax.custom_vjp
def same_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'SAME' convolution of NHWC `x` with an odd HWIO `kernel`.

    On CPU with the 'taps' formulation, forward and backward are `same_conv_by_taps`
    and `same_conv_grads_by_taps`; elsewhere XLA's convolution and its own gradients.
    """
    return _same_conv_forward(x, kernel)


def _same_conv_forward(x, kernel):
    cpu = same_conv_by_taps if _formulation == "taps" else conv_nhwc
    return jax.lax.platform_dependent(x, kernel, cpu=cpu, default=conv_nhwc)


def conv_nhwc(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _same_conv_fwd(x, kernel):
    return _same_conv_forward(x, kernel), (x, kernel)


def _same_conv_bwd(residuals, g):
    x, kernel = residuals
    cpu = same_conv_grads_by_taps if _formulation == "taps" else same_conv_grads_xla
    return jax.lax.platform_dependent(x, kernel, g, cpu=cpu, default=same_conv_grads_xla)


def same_conv_grads_xla(x, kernel, g):
    return jax.vjp(conv_nhwc, x, kernel)[1](g)


def _tap_matrix(kernel):
    """HWIO `kernel` as [c_in, (i, j, o)]: one column per kernel tap and output channel."""
    kh, kw, c_in, c_out = kernel.shape
    return jnp.transpose(kernel, (2, 0, 1, 3)).reshape(c_in, kh * kw * c_out)


def same_conv_by_taps(x, kernel):
    """`conv_nhwc(x, kernel)` as one matmul and a sum of k*k shifted slices.

    u[p, (i, j, o)] = sum_c x[p, c] kernel[i, j, c, o] gives every pixel's
    contribution to each tap; output pixel (y, x) adds up u[(y + i - kh//2,
    x + j - kw//2), (i, j, :)] over the taps, one fused elementwise loop.
    """
    kh, kw, c_in, c_out = kernel.shape
    n, h, w, _ = x.shape
    ph, pw = kh // 2, kw // 2
    taps = _tap_matrix(kernel)
    # Sums in float32 or wider whatever the input dtype: a bfloat16 running sum of the 49
    # taps put the bf16 step outside tests/test_mixed_precision.py's bounds.
    acc = jnp.promote_types(x.dtype, jnp.float32)
    u = jnp.matmul(x.reshape(-1, c_in), taps, preferred_element_type=acc)
    u = jnp.pad(
        u.reshape(n, h, w, kh, kw, c_out), ((0, 0), (ph, ph), (pw, pw), (0, 0), (0, 0), (0, 0))
    )
    out = None
    for i in range(kh):
        for j in range(kw):
            term = u[:, i : i + h, j : j + w, i, j]
            out = term if out is None else out + term
    return out.astype(x.dtype)


def same_conv_grads_by_taps(x, kernel, g):
    """Both gradients of `conv_nhwc` as two matmuls with one im2col of `g`.

    shifted[p, (i, j, o)] = g[p - (i - kh//2, j - kw//2), o] (zero outside) holds,
    for every input pixel, the output gradients that its k*k taps fed; then
    dx = shifted @ taps^T and dkernel = x^T @ shifted.
    """
    kh, kw, c_in, c_out = kernel.shape
    n, h, w, _ = g.shape
    ph, pw = kh // 2, kw // 2
    g = jnp.pad(g, ((0, 0), (ph, ph), (pw, pw), (0, 0)))  # g[t] is now at t + (ph, pw)
    shifted = jnp.concatenate(
        [g[:, 2 * ph - i : 2 * ph - i + h, 2 * pw - j : 2 * pw - j + w]
         for i in range(kh) for j in range(kw)],
        axis=-1,
    ).reshape(n * h * w, kh * kw * c_out)  # fmt: skip
    taps = _tap_matrix(kernel)
    acc = dict(preferred_element_type=jnp.promote_types(g.dtype, jnp.float32))
    dx = jnp.matmul(shifted, taps.astype(g.dtype).T, **acc).reshape(x.shape)
    dk = jnp.matmul(x.reshape(n * h * w, c_in).astype(g.dtype).T, shifted, **acc)
    dk = jnp.transpose(dk.reshape(c_in, kh, kw, c_out), (1, 2, 0, 3))
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


same_conv.defvjp(_same_conv_fwd, _same_conv_bwd)
