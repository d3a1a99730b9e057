"""The 'multi' operator: a crop keeping the most of the mask, then protected seams.

Seam carving alone squeezes content it cannot keep apart (ghosted edges, bent lines);
a crop alone loses whatever lies outside the window. `multi_plan` first crops
`crop_fraction` of each axis' reduction, the window placed where it keeps the most
importance-mask mass (ties: nearest the centre), then removes the rest with the
protected seam plan on the cropped image (`seam_plan_for`: seams never cross the mask
when fallback is on). The two are composed into one `operators.Plan` over the whole
input (one stage per changed axis), so `operators.apply_plan` moves every VGG layer
and the pixels by the same decision. Axes that grow are not cropped: seams enlarge them.
"""

import jax
import jax.numpy as jnp
import numpy as np

from learned_resize.retarget import operators, protect, seams

CROP_FRACTION = 0.75


def seam_plan_for(
    image: jax.Array,
    size: tuple[int, int],
    mask: jax.Array | None,
    plan_stride: int = 1,
    mask_bonus: float = seams.MASK_BONUS,
    fallback: bool = False,
    remove: jax.Array | None = None,
    energy: str = "gradient",
) -> tuple[operators.Plan, str]:
    """(plan, note) of the seam operator for image [H, W, 3] -> size on a 1/plan_stride grid.

    mask: [h_m, w_m] importance mask (any resolution) or None. With fallback (or remove)
    and a mask, seams never cross the mask (`protect.protected_seam_plan`).
    """
    height, width = image.shape[:2]
    grid = (max(2, round(height / plan_stride)), max(2, round(width / plan_stride)))
    if (fallback or remove is not None) and mask is not None:
        return protect.protected_seam_plan(image, size, mask, grid, mask_bonus, remove, energy)
    plan = seams.seam_plan(image, size, mask=mask, grid=grid, mask_bonus=mask_bonus, energy=energy)
    return plan, ""


def crop_window(
    mask: np.ndarray | None,
    in_size: tuple[int, int],
    size: tuple[int, int],
    fraction: float,
    reserve: tuple[int, int] = (0, 0),
) -> tuple[int, int, int, int]:
    """(y0, x0, h_c, w_c): the window cropping fraction of each axis' reduction.

    The width window keeps the most mask mass ([H, W] mask, None = centred); the height
    window then keeps the most of the mask inside those columns. Growing axes are kept.
    reserve: (rows, columns) of the reduction left to the seams whatever the fraction.
    """
    (height, width), starts, lengths = in_size, [0, 0], list(in_size)
    for axis in (1, 0):
        n, cut = in_size[axis], max(0, in_size[axis] - size[axis])
        lengths[axis] = n - min(round(fraction * cut), max(0, cut - reserve[axis]))
    if mask is None:
        return ((height - lengths[0]) // 2, (width - lengths[1]) // 2, *lengths)
    col_weight = np.sum(mask, axis=0)
    starts[1] = protect.crop_start(col_weight, lengths[1], "window")
    inside = mask[:, starts[1] : starts[1] + lengths[1]]
    starts[0] = protect.crop_start(np.sum(inside, axis=1), lengths[0], "window")
    return starts[0], starts[1], lengths[0], lengths[1]


def _offset(coords: jax.Array, start: int, length: int, full: int) -> jax.Array:
    """Normalised positions over a window [start, start + length) -> over the full axis."""
    return (start + coords * length) / full


def _width_stage(stage, window, in_size, out_w: int) -> operators.Stage:
    """The width stage over the full input: rows resampled to pixel rows of the window
    (edge rows repeated outside it, which the height stage then drops), columns offset."""
    y0, x0, h_c, w_c = window
    height, width = in_size
    if stage is None:  # the crop alone (scaled if rounding left a difference)
        coords = operators.pixel_centres(out_w, h_c)
    else:
        coords = jax.image.resize(stage.coords, (h_c, stage.coords.shape[1]), "linear")
    coords = jnp.pad(coords, ((y0, height - y0 - h_c), (0, 0)), mode="edge")
    return operators.Stage(_offset(coords, x0, w_c, width), axis=1)


def _height_stage(stage, window, in_size, columns: int, out_h: int) -> operators.Stage:
    """The height stage over the full input's rows (it runs on the width stage's output)."""
    y0, _, h_c, _ = window
    coords = operators.pixel_centres(out_h, columns) if stage is None else stage.coords
    return operators.Stage(_offset(coords, y0, h_c, in_size[0]), axis=0)


def multi_plan(
    image: jax.Array,
    size: tuple[int, int],
    mask: jax.Array | None,
    *,
    crop_fraction: float = CROP_FRACTION,
    plan_stride: int = 1,
    mask_bonus: float = seams.MASK_BONUS,
    fallback: bool = False,
    remove: jax.Array | None = None,
    energy: str = "gradient",
) -> tuple[operators.Plan, str]:
    """(plan, note): crop crop_fraction of the reduction around the mask, then seams.

    Args:
      image: [H, W, 3] float in [0, 1].
      size: output (h, w) in pixels of image.
      mask: importance mask [h_m, w_m] in [0, 1] at any resolution, or None (centred).
      crop_fraction: share of each shrinking axis' reduction taken by the crop, in [0, 1]
        (0 = `seam_plan_for` alone, 1 = a crop alone).
      plan_stride, mask_bonus, fallback, energy: as for the seam operator (`seam_plan_for`).
      remove: optional [H, W] object mask for the seams to take first; the crop leaves
        the seams at least the object's width (height) of the reduction.

    Returns:
      (plan, note): one stage per changed axis over the whole input; note as the
      protected seam plan's ('' when seams alone absorbed their part).
    """
    if not 0.0 <= crop_fraction <= 1.0:
        raise ValueError(f"config.crop_fraction must be in [0, 1], got {crop_fraction}.")
    in_size = tuple(image.shape[:2])
    full = None
    if mask is not None:
        full = operators.uniform_scale(jnp.asarray(mask, jnp.float32)[None, ..., None], in_size)
        full = full[0, ..., 0]
    reserve = (0, 0)
    if remove is not None:  # the seams must be able to take the whole object
        marked = np.asarray(remove) > 0.5
        reserve = (int(marked.sum(axis=0).max()), int(marked.sum(axis=1).max()))
    window = crop_window(
        None if full is None else np.asarray(full), in_size, size, crop_fraction, reserve
    )
    y0, x0, h_c, w_c = window
    if (h_c, w_c) == in_size:
        return seam_plan_for(image, size, mask, plan_stride, mask_bonus, fallback, remove, energy)
    cut = lambda a: None if a is None else jnp.asarray(a)[y0 : y0 + h_c, x0 : x0 + w_c]
    seams, note = seam_plan_for(
        cut(image), size, cut(full), plan_stride, mask_bonus, fallback, cut(remove), energy
    )
    by_axis = {stage.axis: stage for stage in seams}
    stages = []
    if w_c != in_size[1] or 1 in by_axis:
        stages.append(_width_stage(by_axis.get(1), window, in_size, size[1]))
    if h_c != in_size[0] or 0 in by_axis:
        columns = by_axis[0].coords.shape[0] if 0 in by_axis else size[1]
        stages.append(_height_stage(by_axis.get(0), window, in_size, columns, size[0]))
    return tuple(stages), note
