"""Size buckets: photos of nearby sizes share every compiled retargeting program.

XLA compiles one program per array shape, and retargeting runs about a hundred of them
(VGG features, mask, seams, plan, the L-BFGS solve), so each new photo size used to
compile for ~11 s at 256 px. With `config.bucket = B` (> 1), `api.retarget_details`
works on the photo resized to its sides rounded to the nearest multiple of B (sides of
at least 8 B px; shorter ones stay exact), asks for the requested output size scaled
the same way (also rounded to a multiple of B) and resizes the result to the requested
size at the end. Photos and outputs whose sides are
already multiples of B are not resampled at all; for the others each side moves by at
most B/2 px before the work and back after it (the rounding can also turn a change of
less than B/2 px into plain scaling).

The two resizes are numpy matrix products, so they compile nothing: the kernel is the
Keys cubic (a = -0.5) that `jax.image.resize(..., 'cubic', antialias=True)` uses, widened
by the reduction when shrinking (`tests/test_retarget_buckets.py` checks the matrices
against that function).
"""

import numpy as np

# Sides shorter than this many buckets are worked on at their exact size, so that
# rounding moves a side by at most 1/16 of it (small photos compile as fast, too).
MIN_BUCKETS = 8


def round_side(n: float, step: int) -> int:
    """n rounded to the nearest multiple of step (halves up), at least step; n if step <= 1."""
    if step <= 1:
        return round(n)
    return max(step, step * int(np.floor(n / step + 0.5)))


def working_sizes(
    in_size: tuple[int, int], out_size: tuple[int, int], step: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(input, output) (h, w) sizes the work is done at for a bucket step.

    An input side of at least MIN_BUCKETS * step px is rounded to a multiple of step and
    the output side is the requested one scaled by the same factor, then rounded (an
    unchanged side stays unchanged); shorter input sides keep both sizes exact.
    """
    work_in, work_out = [], []
    for n_in, n_out in zip(in_size, out_size):
        if step <= 1 or n_in < MIN_BUCKETS * step:
            work_in.append(n_in)
            work_out.append(n_out)
            continue
        work_in.append(round_side(n_in, step))
        work_out.append(
            work_in[-1] if n_out == n_in else round_side(n_out * work_in[-1] / n_in, step)
        )
    return tuple(work_in), tuple(work_out)


def _keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float64 weights resizing one axis (pixel centres aligned).

    Output pixel i samples input position (i + 0.5) * n_in / n_out - 0.5; when shrinking
    the kernel is stretched by n_in / n_out (antialiasing). Rows sum to 1.
    """
    stretch = max(n_in / n_out, 1.0)
    centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    weights = _keys_cubic((np.arange(n_in)[None, :] - centres[:, None]) / stretch)
    return weights / weights.sum(axis=1, keepdims=True)


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """x [H, W] or [H, W, C] resized to size (h, w) with `resize_matrix` on each axis (float32)."""
    x = np.asarray(x, np.float64)
    rows = resize_matrix(x.shape[0], size[0])
    cols = resize_matrix(x.shape[1], size[1])
    y = np.tensordot(rows, x, axes=(1, 0))  # [h, W, ...]
    y = np.moveaxis(np.tensordot(cols, y, axes=(1, 1)), 0, 1)  # [h, w, ...]
    return y.astype(np.float32)


def resize_image(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image in [0, 1] resized to size, clipped back to [0, 1] (cubic overshoots)."""
    if tuple(x.shape[:2]) == tuple(size):
        return np.asarray(x, np.float32)
    return np.clip(resize(x, size), 0.0, 1.0)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A {0, 1} mask [H, W] resized to size and thresholded at 0.5 (float32 {0, 1})."""
    if tuple(mask.shape[:2]) == tuple(size):
        return np.asarray(mask, np.float32)
    return (resize(mask, size) > 0.5).astype(np.float32)
