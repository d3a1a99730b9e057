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


def exact_output(
    in_size: tuple[int, int], out_size: tuple[int, int], work_in: tuple[int, int]
) -> tuple[int, int]:
    """The working output (h, w): out_size scaled by work_in / in_size on each axis and
    rounded (an unchanged side stays work_in's), so that the plan, applied at full size,
    copies runs of pixels 1:1 (a bucket-rounded output could scale them by up to 8%)."""
    return tuple(
        w if n_out == n_in else max(1, round(n_out * w / n_in))
        for n_in, n_out, w in zip(in_size, out_size, work_in)
    )


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


def resize(x: np.ndarray, size: tuple[int, int], matrix=resize_matrix) -> np.ndarray:
    """x [H, W] or [H, W, C] resized to size (h, w) with `matrix(n_in, n_out)` on each
    axis (float32): `resize_matrix` (cubic) by default, or `linear_matrix` (no overshoot)."""
    x = np.asarray(x, np.float64)
    rows = matrix(x.shape[0], size[0])
    cols = matrix(x.shape[1], size[1])
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


# ----------------------------------------------------------------------------------
# The working size: any photo size in bounded time and memory.


def scaled_sizes(
    in_size: tuple[int, int], out_size: tuple[int, int], work_side: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(input, output) (h, w) scaled so the input's longer side is at most work_side.

    Both are scaled by the same factor (an unchanged side stays equal to the input's);
    work_side 0 (or a photo already that small) leaves both as they are.
    """
    factor = 1.0 if work_side <= 0 else min(1.0, work_side / max(in_size))
    if factor == 1.0:
        return tuple(in_size), tuple(out_size)
    work_in = tuple(max(1, round(n * factor)) for n in in_size)
    work_out = tuple(
        w_in if n_out == n_in else max(1, round(n_out * factor))
        for n_in, n_out, w_in in zip(in_size, out_size, work_in)
    )
    return work_in, work_out


def linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of `jax.image.resize(..., 'linear', antialias=True)` on one
    axis: the triangle kernel, widened by the reduction when shrinking; rows sum to 1."""
    stretch = max(n_in / n_out, 1.0)
    centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / stretch)
    return weights / weights.sum(axis=1, keepdims=True)


def _coords_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights bringing one axis of stage coords to n_out samples: linear
    interpolation, extrapolated past the outer sample centres (a crop's or a copied run's
    coords are linear, so they stay exact up to the border), antialiased when shrinking."""
    if n_out < n_in or n_in == 1:
        return linear_matrix(n_in, n_out)
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    left = np.clip(np.floor(pos), 0, n_in - 2).astype(np.int64)
    frac = pos - left
    weights = np.zeros((n_out, n_in))
    weights[np.arange(n_out), left] = 1.0 - frac
    weights[np.arange(n_out), left + 1] = frac
    return weights


def _stage_coords(coords: np.ndarray, rows: int, out_len: int) -> np.ndarray:
    """A stage's normalised coords [r, c] brought to a grid of rows x out_len."""
    if coords.shape != (rows, out_len):
        coords = _coords_matrix(coords.shape[0], rows) @ coords
        coords = coords @ _coords_matrix(coords.shape[1], out_len).T
    return coords


def copy_plan(plan, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The plan applied to image [H, W, C] at any resolution by copying pixels.

    Each stage's normalised coords are brought to the image's grid and rounded to the
    nearest source pixel, so every output pixel is one of the input's (pixel seam
    carving and cropping at full resolution, with the detail of the photo); an empty
    plan (uniform scaling) is a cubic resize.
    """
    x = np.asarray(image)
    for stage in plan:
        if stage.axis == 0:
            x = np.swapaxes(x, 0, 1)
        rows, n = x.shape[:2]
        out_len = size[stage.axis]
        coords = _stage_coords(np.asarray(stage.coords, np.float64), rows, out_len)
        # Halves round up, all alike: rint's half-to-even would alternate along a run
        # whose offset is a half pixel and drop every other pixel of it.
        index = np.clip(np.floor(coords * n + 1e-9), 0, n - 1).astype(np.int64)
        x = np.take_along_axis(x, index[..., None] if x.ndim == 3 else index, axis=1)
        if stage.axis == 0:
            x = np.swapaxes(x, 0, 1)
    if tuple(x.shape[:2]) != tuple(size):
        x = resize(x, size)
    return np.array(x, np.float32)  # a new array, never the caller's image


def changed_weight(plan, in_size: tuple[int, int], size: tuple[int, int], margin: float):
    """[h, w] weight in [0, 1] of the reconstruction at each output pixel: 0 where the
    plan copies a block of input pixels (the pixel and its 4 neighbours come from one
    rigidly shifted neighbourhood of the input), 1 within margin px of a pixel it does
    not copy (a seam, a scaled axis), falling linearly to 0 over the next margin px."""
    if not plan:  # uniform scaling copies nothing (or everything, at the same size)
        return np.full(size, float(tuple(size) != tuple(in_size)), np.float32)
    ys, xs = np.mgrid[0 : in_size[0], 0 : in_size[1]].astype(np.float32)
    where = copy_plan(plan, np.stack([ys, xs], -1), size)  # source (y, x) per output pixel
    whole = np.all(np.abs(where - np.rint(where)) < 1e-3, axis=-1)
    copied = whole.copy()
    step_x = np.all(np.abs(np.diff(where, axis=1) - (0.0, 1.0)) < 1e-3, axis=-1)  # [h, w-1]
    step_y = np.all(np.abs(np.diff(where, axis=0) - (1.0, 0.0)) < 1e-3, axis=-1)  # [h-1, w]
    copied[:, 1:] &= step_x
    copied[:, :-1] &= step_x
    copied[1:] &= step_y
    copied[:-1] &= step_y
    if copied.all():
        return np.zeros(size, np.float32)
    if not copied.any():
        return np.ones(size, np.float32)
    import scipy.ndimage

    distance = scipy.ndimage.distance_transform_edt(copied)
    return np.clip(2.0 - distance / max(margin, 1e-6), 0.0, 1.0).astype(np.float32)


CARRIES = ("blend", "change", "detail")


def carry_to_full(
    plan,
    image: np.ndarray,
    size: tuple[int, int],
    work_image: np.ndarray,
    reconstruction: np.ndarray,
    weight: np.ndarray,
    mode: str = "change",
) -> np.ndarray:
    """The full-resolution result of a reconstruction at the working size.

    The plan is applied to image [H, W, 3] by copying pixels; where weight [h_w, w_w]
    (upsampled) is above 0 the reconstruction enters:
      'blend': the reconstruction itself, upsampled, weighted by the weight;
      'change': the reconstruction's change (minus the plan applied the same way to
        work_image), weighted and upsampled, added to the full-resolution copy (keeps the
        copy's detail, but the copy's seams sit where the full-size grid puts them, not
        where the working grid did, so the change can draw a second edge beside them);
      'detail': the reconstruction minus the full-resolution copy brought down to the
        working size, weighted and upsampled, added to the copy: the result's coarse
        content is the reconstruction's, its fine detail the copy's.
    Where the weight is 0 the result is exactly the photo's own pixels.
    """
    out = copy_plan(plan, image, size)
    if reconstruction is None:  # nothing reconstructed: the plan copies every pixel
        return out
    work_size = reconstruction.shape[:2]
    same = tuple(work_size) == tuple(size)
    if mode == "blend":
        w = weight if same else np.clip(resize(weight, size, linear_matrix), 0.0, 1.0)
        if np.any(w):
            rec = reconstruction if same else resize(reconstruction, size)
            out += (rec - out) * w[..., None]
        return np.clip(out, 0.0, 1.0)
    if mode == "detail" and not same:
        base = resize(out, work_size)
    else:
        base = copy_plan(plan, work_image, work_size)
    change = (reconstruction - base) * weight[..., None]
    if np.any(change):
        out += change if same else resize(change, size)
    return np.clip(out, 0.0, 1.0)
