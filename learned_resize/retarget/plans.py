"""Which plan each retargeting operator makes: `make_plan(operator, image, size, mask)`.

'multi' (the default, `multi.py`), 'seam' (the paper's), 'uniform' and 'crop'.
"""

import jax

from learned_resize.retarget import multi, operators

OPERATORS = ("multi", "seam", "uniform", "crop")


def make_plan(
    operator: str,
    image: jax.Array,
    size: tuple[int, int],
    mask: jax.Array | None = None,
    plan_stride: int = 1,
    mask_bonus: float = operators.MASK_BONUS,
    fallback: bool = False,
    remove: jax.Array | None = None,
    crop_fraction: float = multi.CROP_FRACTION,
    energy: str = "gradient",
) -> tuple[operators.Plan, str]:
    """(plan, note) of operator for image [H, W, 3] -> size, on a 1/plan_stride grid.

    With fallback (and a mask), seams never cross the mask: what the unmasked part
    cannot absorb is cropped around the mask, and note says so ('' otherwise). remove
    ([H, W], seams and multi only) marks an object the seams take first. 'multi' crops
    crop_fraction of the reduction around the mask first (`multi.multi_plan`). energy:
    the seams' energy, 'gradient' or 'forward' (`operators.find_seams`).
    """
    if remove is not None and (operator not in ("seam", "multi") or mask is None):
        raise ValueError(
            "--remove needs a seam operator (config.operator=multi or config.operator=seam)."
        )
    if operator == "uniform":
        return (), ""
    if operator == "crop":
        return operators.crop_plan(image.shape[:2], size), ""
    m = None if mask is None else mask[0]
    if operator == "seam":
        return multi.seam_plan_for(
            image, size, m, plan_stride, mask_bonus, fallback, remove, energy
        )
    if operator == "multi":
        return multi.multi_plan(
            image,
            size,
            m,
            crop_fraction=crop_fraction,
            plan_stride=plan_stride,
            mask_bonus=mask_bonus,
            fallback=fallback,
            remove=remove,
            energy=energy,
        )
    raise ValueError(f"Unknown operator {operator!r}; choose one of {', '.join(OPERATORS)}.")


def plan_for(cfg, image, size, mask, remove=None) -> tuple[operators.Plan, str]:
    """`make_plan` with the operator and its settings read from a retarget config."""
    return make_plan(
        cfg.operator,
        image,
        size,
        mask,
        cfg.plan_stride,
        cfg.mask.bonus,
        cfg.mask.fallback,
        remove,
        cfg.get("crop_fraction", multi.CROP_FRACTION),
        cfg.get("energy", "gradient"),
    )
