"""3x3 SAME convolution by Winograd's minimal filtering F(2x2, 3x3), for CPU.

A direct 3x3 convolution spends 9 multiply-adds per output pixel, input channel and
output channel; F(2x2, 3x3) computes each 2x2 block of outputs from a 4x4 block of input
with 16 (2.25x fewer), as 16 independent matrix products (one per position in the 4x4
block) between transformed input tiles and a transformed kernel:

    Y = A^T [ (G g G^T) * (B^T d B) ] A      per tile d (4x4) and kernel g (3x3)

(Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks"). The tile
transforms are additions only and run once per tile; the matrix products carry the
work. On XLA:CPU this pays where channels are many and pixels few: VGG's 256- and
512-channel layers take ~0.6x the time of `lax.conv_general_dilated`; at 64-128
channels the transforms' memory traffic costs more than the saved products do
(`bench/winograd.py`), so `use_for` picks the layers. Results match the direct
convolution to ~1e-6 relative (float32; `tests/test_winograd.py`).
"""

import jax
import jax.numpy as jnp
import numpy as np

# B^T (input tile), G (kernel) and A^T (output tile) of F(2x2, 3x3).
_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
_AT = ((1, 1, 1, 0), (0, 1, -1, -1))

# Both channel counts at least this: where the bench measured Winograd ahead on CPU.
MIN_CHANNELS = 256


def use_for(kernel_shape) -> bool:
    """Whether a [3, 3, C_in, C_out] kernel's layer is faster by Winograd on CPU."""
    kh, kw, c_in, c_out = kernel_shape
    return (kh, kw) == (3, 3) and min(c_in, c_out) >= MIN_CHANNELS


def transform_kernel(kernel: jax.Array) -> jax.Array:
    """[3, 3, C, K] HWIO kernel -> [16, C, K]: G g G^T for every (C, K) pair."""
    u = jnp.einsum("ai,ijck,bj->abck", _G, kernel.astype(jnp.float32), _G)
    return u.reshape(16, *kernel.shape[2:])


def _combine(matrix, parts):
    """[sum_j matrix[i][j] * parts[j] for each row i], for coefficients in {0, 1, -1}."""
    rows = []
    for row in matrix:
        terms = [(c, p) for c, p in zip(row, parts) if c]
        acc = terms[0][1] if terms[0][0] == 1 else -terms[0][1]
        for c, p in terms[1:]:
            acc = acc + p if c == 1 else acc - p
        rows.append(acc)
    return rows


def conv3x3(x: jax.Array, u: jax.Array) -> jax.Array:
    """SAME 3x3 convolution (stride 1, no bias) of x [N, H, W, C] with `transform_kernel`
    output u [16, C, K] -> [N, H, W, K]. Odd sizes are padded to whole tiles and cropped."""
    n, h, w, c = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    # One pixel of SAME padding before, and after it enough for whole 2x2 output tiles.
    xp = jnp.pad(x, ((0, 0), (1, 2 * th - h + 1), (1, 2 * tw - w + 1), (0, 0)))
    # d[a][b]: pixel (a, b) of every 4x4 input tile (tiles overlap by 2), [N, th, tw, C].
    d = [[xp[:, a : a + 2 * th : 2, b : b + 2 * tw : 2] for b in range(4)] for a in range(4)]
    cols = [_combine(_BT, [d[a][b] for a in range(4)]) for b in range(4)]  # B^T d
    v = [_combine(_BT, [cols[b][i] for b in range(4)]) for i in range(4)]  # (B^T d) B
    v = jnp.stack([v[i][j] for i in range(4) for j in range(4)]).reshape(16, n * th * tw, c)
    m = jnp.einsum("tpc,tck->tpk", v, u, preferred_element_type=jnp.float32)
    m = m.reshape(4, 4, n, th, tw, -1)
    cols = [_combine(_AT, [m[a, b] for a in range(4)]) for b in range(4)]  # A^T m
    y = [_combine(_AT, [cols[b][i] for b in range(4)]) for i in range(2)]  # (A^T m) A
    # y[i][j] is output pixel (2 t_h + i, 2 t_w + j): interleave the four phases.
    out = jnp.stack([jnp.stack([y[i][j] for j in range(2)], axis=3) for i in range(2)], axis=2)
    return out.reshape(n, 2 * th, 2 * tw, -1)[:, :h, :w].astype(x.dtype)
