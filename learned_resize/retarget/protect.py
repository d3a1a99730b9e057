"""A seam-carving plan that never cuts the importance mask: seams, then a crop.

Classical seam carving with a large energy bonus inside the mask still has to cross
the mask once some row has fewer unmasked columns than the reduction asks for: on a
portrait narrowed to half width the seams cut through the head. Here the seams only
remove what every row can spare outside the mask, and a crop centred on the mask
(clamped to the borders) removes the rest; the caller prints the returned note.
"""

import jax
import jax.numpy as jnp
import numpy as np

from learned_resize.retarget import operators, seams


def _on_grid(mask: jax.Array, grid: tuple[int, int]) -> jax.Array:
    return operators.uniform_scale(mask[None, :, :, None].astype(jnp.float32), grid)[0, ..., 0]


def _protected_stage(
    gray, bonus, out_len: int, protected: float, energy: str = "gradient"
) -> tuple[jax.Array, int]:
    """Pixel source positions [H, out_len] and the columns cropped (0: seams only).

    When fewer columns than the reduction lie outside the protected region in some row,
    seams remove only what every row can spare, and a crop centred on the protected
    region (clamped to the borders) removes the rest, instead of seams crossing it.
    """
    h, w = gray.shape
    free = int(jnp.min(jnp.sum(bonus < protected, axis=1)))
    if out_len >= w or w - out_len <= free:
        return seams.seam_stage_coords(gray, bonus, out_len, energy), 0
    kept = None
    if free:
        kept, _ = seams.find_seams(gray, bonus, num_seams=free, energy=energy)
    if kept is None:
        kept = jnp.broadcast_to(jnp.arange(w, dtype=jnp.int32), (h, w))
    weight = np.sum(np.asarray(jnp.take_along_axis(bonus, kept, axis=1)) >= protected, axis=0)
    start = crop_start(weight, out_len, ANCHOR)
    return kept[:, start : start + out_len].astype(jnp.float32), kept.shape[1] - out_len


ANCHOR = "window"


def crop_start(weight: np.ndarray, out_len: int, anchor: str) -> int:
    """First column of the crop window of out_len over columns with mask counts weight."""
    n = len(weight)
    if anchor == "center":
        return (n - out_len) // 2
    if anchor == "centroid":
        centre = float(np.sum(weight * np.arange(n)) / max(np.sum(weight), 1))
        return int(min(max(round(centre - out_len / 2), 0), n - out_len))
    sums = np.convolve(weight, np.ones(out_len), "valid")
    best = np.flatnonzero(sums >= sums.max() - 1e-9)
    return int(best[np.argmin(np.abs(best - (n - out_len) / 2))])


def protected_seam_plan(
    image: jax.Array,
    size: tuple[int, int],
    mask: jax.Array,
    grid: tuple[int, int],
    mask_bonus: float = seams.MASK_BONUS,
    remove: jax.Array | None = None,
    energy: str = "gradient",
) -> tuple[operators.Plan, str]:
    """`seam_plan` that never carves through the mask: seams up to it, then a crop.

    Args:
      image: [H, W, 3] float in [0, 1].
      size: output (h, w) in pixels of image.
      mask: importance mask [h_m, w_m] in [0, 1] (any resolution).
      grid: (h_g, w_g) grid on which the seams are computed.
      mask_bonus: energy added where the mask is 1.
      remove: optional [H', W'] mask of an object to remove: its energy is lowered by
        mask_bonus, so seams go through it first (object removal).
      energy: seam energy, 'gradient' or 'forward' (`seams.find_seams`).

    Returns:
      (plan, note): note is '' when seams alone did it, else one sentence saying how
      much of each axis was cropped because the unprotected part could not absorb it.
    """
    height, width = image.shape[:2]
    gray = seams.luminance(operators.uniform_scale(image[None], grid)[0])
    bonus = mask_bonus * _on_grid(mask, grid)
    if remove is not None:
        bonus = bonus - mask_bonus * _on_grid(remove, grid)
    outs = (max(1, round(size[0] * grid[0] / height)), max(1, round(size[1] * grid[1] / width)))
    stages, notes = [], []
    for axis, full in ((1, width), (0, height)):
        if outs[axis] == grid[axis]:
            continue
        g, b = (gray, bonus) if axis == 1 else (gray.T, bonus.T)
        coords, cropped = _protected_stage(g, b, outs[axis], 0.5 * mask_bonus, energy)
        stages.append(operators.Stage((coords + 0.5) / g.shape[1], axis=axis))
        if cropped:
            name = "width" if axis == 1 else "height"
            notes.append(f"{round(cropped * full / grid[axis])} px of the {name}")
        if axis == 1:
            gray, bonus = operators.resample_2d(gray, coords), operators.resample_2d(bonus, coords)
    note = ""
    if notes:
        note = (
            "the unprotected part cannot absorb the change: seams up to the mask, then a crop "
            f"of {' and '.join(notes)} around it"
        )
    return tuple(stages), note
