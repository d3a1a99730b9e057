"""Seam carving (Avidan & Shamir 2007) as a retargeting plan (`operators.Plan`).

Seams are found by dynamic programming (`lax.scan` over rows) on gradient energy (or,
with energy='forward', the forward energy of Rubinstein et al. 2008: the cost of the
edges a seam's removal creates) plus a large bonus inside the importance mask; removal
shrinks an axis, insertion (duplicate the k seams a removal would take, each new pixel
the mean of the seam pixel and its right neighbour) enlarges it. Computed on the
full-resolution image and applied to the same image this is classical pixel-space seam
carving; computed on a coarser reference grid it becomes the feature-space operator
whose maps, upsampled to the finer layers, spread each coarse seam over a few pixels.
"""

import functools

import jax
import jax.numpy as jnp

from learned_resize.retarget import operators
from learned_resize.runtime import executables

# Energy added inside the importance mask. The gradient energy of an image in [0, 1]
# is at most 2 per pixel, so a seam never crosses the mask while any other path exists.
MASK_BONUS = 1e3

# Seam energies: 'gradient' (backward: |d/dx| + |d/dy| of the pixel removed) and
# 'forward' (Rubinstein, Shamir & Avidan 2008: the new neighbour differences the
# removal creates; `forward_costs`).
ENERGIES = ("gradient", "forward")


def gradient_energy(gray: jax.Array, width: jax.Array | int | None = None) -> jax.Array:
    """L1 norm of central differences, |d/dx| + |d/dy|, of gray [H, W].

    Args:
      gray: [H, W] image.
      width: number of valid leading columns (columns beyond are padding left by
        seam removal); edges replicate the last valid column.

    Returns:
      [H, W] energy.
    """
    h, w = gray.shape
    last = (w if width is None else width) - 1
    cols = jnp.arange(w)
    left = gray[:, jnp.clip(cols - 1, 0, last)]
    right = gray[:, jnp.clip(cols + 1, 0, last)]
    rows = jnp.arange(h)
    up = gray[jnp.clip(rows - 1, 0, h - 1)]
    down = gray[jnp.clip(rows + 1, 0, h - 1)]
    return 0.5 * (jnp.abs(right - left) + jnp.abs(down - up))


def forward_costs(gray: jax.Array, width: jax.Array | int | None = None) -> jax.Array:
    """Forward-energy step costs (C_L, C_U, C_R) of Rubinstein et al. 2008, [3, H, W].

    Removing pixel (i, j) makes I(i, j-1) and I(i, j+1) neighbours: C_U = |I(i, j+1) -
    I(i, j-1)|. A seam arriving from (i-1, j-1) also makes I(i-1, j) and I(i, j-1)
    vertical neighbours: C_L = C_U + |I(i-1, j) - I(i, j-1)|; from (i-1, j+1):
    C_R = C_U + |I(i-1, j) - I(i, j+1)|. Columns beyond the border (and beyond
    `width`, the valid columns) replicate the last valid one; row 0's C_L and C_R use
    the row itself as the row above and are never read by `min_seam`.
    """
    w = gray.shape[1]
    last = (w if width is None else width) - 1
    cols = jnp.arange(w)
    left = gray[:, jnp.clip(cols - 1, 0, last)]
    right = gray[:, jnp.clip(cols + 1, 0, last)]
    up = jnp.concatenate([gray[:1], gray[:-1]])
    c_u = jnp.abs(right - left)
    return jnp.stack([c_u + jnp.abs(up - left), c_u, c_u + jnp.abs(up - right)])


def min_seam(energy: jax.Array, step_costs: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Minimum-energy 8-connected vertical seam by dynamic programming.

    M(0, j) = E(0, j); M(i, j) = E(i, j) + min(M(i-1, j-1) + C_L(i, j),
    M(i-1, j) + C_U(i, j), M(i-1, j+1) + C_R(i, j)), with C = 0 (backward energy)
    unless step_costs gives them (forward energy, `forward_costs`).

    Args:
      energy: [H, W]; +inf marks forbidden pixels.
      step_costs: optional [3, H, W]: (C_L, C_U, C_R), the cost of arriving at (i, j)
        from (i-1, j-1), (i-1, j) and (i-1, j+1); row 0 is not read.

    Returns:
      (seam, cost): seam int32 [H] with one column per row, neighbours differing by
      at most 1; cost the seam's total M. Ties go to the leftmost column.
    """
    inf = jnp.array(jnp.inf, energy.dtype)

    def forward(prev, xs):
        row, costs = xs
        # Candidates from the previous row at offsets -1, 0, +1.
        left = jnp.concatenate([inf[None], prev[:-1]])
        right = jnp.concatenate([prev[1:], inf[None]])
        stacked = jnp.stack([left, prev, right])
        if costs is not None:
            stacked = stacked + costs
        step = jnp.argmin(stacked, axis=0)  # first minimum: prefers the left offset
        cum = row + jnp.min(stacked, axis=0)
        return cum, step.astype(jnp.int32) - 1

    costs = None if step_costs is None else jnp.moveaxis(step_costs[:, 1:], 0, 1)
    last, steps = jax.lax.scan(forward, energy[0], (energy[1:], costs))
    end = jnp.argmin(last).astype(jnp.int32)

    def backward(col, step):
        prev = col + step[col]
        return prev, prev

    _, cols = jax.lax.scan(backward, end, steps, reverse=True)
    seam = jnp.concatenate([cols, end[None]])
    return seam, last[end]


def _remove_seam(x: jax.Array, seam: jax.Array) -> jax.Array:
    """Removes one pixel per row of x [H, W, ...]; the last column becomes padding."""
    w = x.shape[1]
    cols = jnp.arange(w)[None, :]
    src = jnp.minimum(cols + (cols >= seam[:, None]), w - 1)
    src = src.reshape(src.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, src, axis=1)


@functools.partial(jax.jit, static_argnames=("num_seams", "energy"))
def find_seams(
    gray: jax.Array, bonus: jax.Array, num_seams: int, energy: str = "gradient"
) -> tuple[jax.Array, jax.Array]:
    """Removes num_seams vertical seams one at a time, recomputing the energy each time.

    Args:
      gray: [H, W] image the energy is computed from.
      bonus: [H, W] energy added per pixel (e.g. MASK_BONUS inside the mask); carved
        along with the image.
      num_seams: how many seams to remove, 0 <= num_seams < W.
      energy: 'gradient' (`gradient_energy` of each pixel) or 'forward' (the bonus per
        pixel plus `forward_costs` per step; row 0 pays its C_U).

    Returns:
      (kept, removed): kept int32 [H, W - num_seams], the original column of every
      remaining pixel; removed bool [H, W], True where a seam went.
    """
    h, w = gray.shape
    rows = jnp.arange(h)
    cols = jnp.arange(w)[None, :]

    if energy not in ENERGIES:
        raise ValueError(f"energy must be one of {', '.join(ENERGIES)}, got {energy!r}.")

    def body(t, carry):
        gray, bonus, index, removed = carry
        width = w - t
        if energy == "forward":
            costs = forward_costs(gray, width)
            pixel = bonus.at[0].add(costs[1, 0])
        else:
            costs, pixel = None, gradient_energy(gray, width) + bonus
        pixel = jnp.where(cols < width, pixel, jnp.inf)
        seam, _ = min_seam(pixel, costs)
        removed = removed.at[rows, index[rows, seam]].set(True)
        return (
            _remove_seam(gray, seam),
            _remove_seam(bonus, seam),
            _remove_seam(index, seam),
            removed,
        )

    index = jnp.broadcast_to(jnp.arange(w, dtype=jnp.int32), (h, w))
    init = (gray, bonus, index, jnp.zeros((h, w), bool))
    _, _, index, removed = jax.lax.fori_loop(0, num_seams, body, init)
    return index[:, : w - num_seams], removed


@functools.partial(jax.jit, static_argnames=("num_seams",))
def insertion_coords(removed: jax.Array, num_seams: int) -> jax.Array:
    """Source positions (pixels) of the row-wise enlargement that duplicates seams.

    Args:
      removed: bool [H, W] with num_seams True per row (from `find_seams`).
      num_seams: number of True entries per row.

    Returns:
      float32 [H, W + num_seams]: every source pixel x in order, and after each marked
      one a new pixel at x + 0.5 (the mean of x and its right neighbour).
    """
    dup = removed.astype(jnp.int32)
    ends = jnp.cumsum(1 + dup, axis=1)  # exclusive end of each source pixel's output run
    out = jnp.arange(removed.shape[1] + num_seams)
    src = jax.vmap(lambda e: jnp.searchsorted(e, out, side="right"))(ends).astype(jnp.int32)
    last_of_run = out[None, :] == jnp.take_along_axis(ends, src, axis=1) - 1
    is_copy = last_of_run & (jnp.take_along_axis(dup, src, axis=1) == 1)
    return src.astype(jnp.float32) + 0.5 * is_copy


def seam_stage_coords(
    gray: jax.Array, bonus: jax.Array, out_len: int, energy: str = "gradient"
) -> jax.Array:
    """Pixel source positions [H, out_len] taking gray [H, W] to out_len columns."""
    h, w = gray.shape
    if out_len <= w:
        kept, _ = find_seams(gray, bonus, num_seams=w - out_len, energy=energy)
        return kept.astype(jnp.float32)
    # Enlarging: each pass duplicates at most cur_w - 1 seams; passes compose.
    coords = jnp.broadcast_to(jnp.arange(w, dtype=jnp.float32), (h, w))
    while coords.shape[1] < out_len:
        cur_w = coords.shape[1]
        k = min(out_len - cur_w, cur_w - 1)
        _, removed = find_seams(gray, bonus, num_seams=k, energy=energy)
        step = insertion_coords(removed, num_seams=k)
        coords = operators.resample_2d(coords, step)
        gray, bonus = operators.resample_2d(gray, step), operators.resample_2d(bonus, step)
    return coords


def luminance(image: jax.Array) -> jax.Array:
    """Rec. 601 luma of image [..., 3]."""
    return image @ jnp.array([0.299, 0.587, 0.114], image.dtype)


@functools.partial(jax.jit, static_argnames=("size", "grid", "energy"))
def seam_plan(
    image: jax.Array,
    size: tuple[int, int],
    *,
    mask: jax.Array | None = None,
    grid: tuple[int, int] | None = None,
    mask_bonus: float = MASK_BONUS,
    energy: str = "gradient",
) -> operators.Plan:
    """Seam-carving plan taking image to size, decided on a reference grid.

    Args:
      image: [H, W, 3] float in [0, 1].
      size: output (h, w) in pixels of image.
      mask: optional importance mask [h_m, w_m] in [0, 1] at any resolution; resized
        to the grid, it adds mask_bonus energy so seams avoid it.
      grid: (h_g, w_g) grid on which the seams are computed (the image is scaled to
        it); default the image's own grid, which gives classical seam carving.
      mask_bonus: energy added where the mask is 1.
      energy: seam energy, 'gradient' or 'forward' (`find_seams`).

    Returns:
      A plan with a width stage (vertical seams) and/or a height stage (horizontal
      seams, found on the width-retargeted grid).
    """
    height, width = image.shape[:2]
    grid = (height, width) if grid is None else tuple(grid)
    gray = luminance(operators.uniform_scale(image[None], grid)[0])
    bonus = jnp.zeros(grid, jnp.float32)
    if mask is not None:
        bonus = (
            mask_bonus
            * operators.uniform_scale(mask[None, :, :, None].astype(jnp.float32), grid)[0, ..., 0]
        )
    out_w = max(1, round(size[1] * grid[1] / width))
    out_h = max(1, round(size[0] * grid[0] / height))
    stages = []
    if out_w != grid[1]:
        coords = seam_stage_coords(gray, bonus, out_w, energy)
        stages.append(operators.Stage((coords + 0.5) / grid[1], axis=1))
        gray, bonus = operators.resample_2d(gray, coords), operators.resample_2d(bonus, coords)
    if out_h != grid[0]:
        coords = seam_stage_coords(gray.T, bonus.T, out_h, energy)
        stages.append(operators.Stage((coords + 0.5) / grid[0], axis=0))
    return tuple(stages)


def _seam_carve(
    image: jax.Array, mask: jax.Array | None, *, size: tuple[int, int], energy: str
) -> jax.Array:
    plan = seam_plan(image, size, mask=mask, energy=energy)
    return operators.apply_plan(plan, image[None], size)[0]


# One program for plan and resampling, kept on disk: a fresh process loads it without
# tracing (see learned_resize/runtime/executables.py; bench/seam_cold.py times the first call).
_seam_carve_stored = executables.stored_jit(_seam_carve, static_argnames=("size", "energy"))


def seam_carve(
    image: jax.Array,
    size: tuple[int, int],
    mask: jax.Array | None = None,
    energy: str = "gradient",
) -> jax.Array:
    """Classical pixel-space seam carving of image [H, W, 3] to size (h, w).

    energy: 'gradient' (Avidan & Shamir 2007) or 'forward' (Rubinstein et al. 2008).
    """
    return _seam_carve_stored(image, mask, size=tuple(size), energy=energy)
