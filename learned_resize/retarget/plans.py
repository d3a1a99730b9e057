"""Which plan each retargeting operator makes: `make_plan(operator, image, size, mask)`.

'multi' (the default, `multi.py`), 'seam' (the paper's), 'uniform' and 'crop'; 'auto'
(`auto_plan`) makes the candidate plans, scores each one's result with the quality
metrics of `quality.py` and keeps the best.
"""

import jax
import numpy as np

from learned_resize.retarget import buckets, multi, operators, seams

OPERATORS = ("multi", "seam", "uniform", "crop", "auto")
# auto considers uniform scaling only when the importance mask covers less than this
# share of the photo (nothing stands out that squeezing would distort).
UNIFORM_MAX_MASK = 0.02
# auto's (subject, artifact) weights in its score (`score`); see defaults.auto_weights.
AUTO_WEIGHTS = (1.0, 1.0)


def make_plan(
    operator: str,
    image: jax.Array,
    size: tuple[int, int],
    mask: jax.Array | None = None,
    plan_stride: int = 1,
    mask_bonus: float = seams.MASK_BONUS,
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
    the seams' energy, 'gradient' or 'forward' (`seams.find_seams`).
    """
    if remove is not None and (operator not in ("seam", "multi") or mask is None):
        raise ValueError(
            "--remove needs a seam operator (config.operator=multi or config.operator=seam)."
        )
    if operator == "auto":
        raise ValueError("operator 'auto' chooses among plans: use plans.auto_plan.")
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


def mask_box(mask: jax.Array, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) bounding box of mask [1, h_m, w_m] on an image of size, or None."""
    m = np.asarray(mask[0], np.float32)
    rows, cols = np.flatnonzero(m.max(axis=1) > 0.5), np.flatnonzero(m.max(axis=0) > 0.5)
    if not len(rows):
        return None
    sy, sx = size[0] / m.shape[0], size[1] / m.shape[1]
    return (
        int(np.floor(cols[0] * sx)),
        int(np.floor(rows[0] * sy)),
        int(np.ceil((cols[-1] + 1) * sx)),
        int(np.ceil((rows[-1] + 1) * sy)),
    )


def candidates(mask: jax.Array, remove) -> tuple[str, ...]:
    """The operators auto compares: seams only with a remove mask; uniform scaling only
    when the mask marks (almost) nothing."""
    if remove is not None:
        return ("multi", "seam")
    names = ("crop", "seam", "multi")
    return names + ("uniform",) if float(np.mean(np.asarray(mask))) < UNIFORM_MAX_MASK else names


def score(image: np.ndarray, out: np.ndarray, box, vgg16, weights, phases=None) -> dict[str, float]:
    """The scores auto compares one candidate by (`quality.py`), and their total.

    complete and coherent (VGG-16 bidirectional similarity) and artifact (worst patch
    found nowhere in the input) do not use the mask; subject is the NCC of the mask's
    bounding box against out (0 without a mask). total = subject_w * subject + complete
    + coherent - artifact_w * artifact, weights = (subject_w, artifact_w). phases: the
    input's features (`quality.input_features`) when several outputs of one size are
    scored.
    """
    from learned_resize.retarget import quality  # imports scikit-image; only auto needs it

    complete, coherent = quality.bidirectional_scores(vgg16, image, out, phases)
    terms = dict(
        subject=0.0 if box is None else 100.0 * quality.subject_ncc(image, box, out),
        complete=complete,
        coherent=coherent,
        artifact=quality.artifact_score(image, out),
    )
    subject_w, artifact_w = weights
    terms["total"] = (
        subject_w * terms["subject"] + complete + coherent - artifact_w * terms["artifact"]
    )
    return terms


def auto_plan(cfg, image, size, mask, remove, vgg16, scores=None):
    """(plan, note, operator, line): the candidate plan whose result scores best.

    Each candidate's plan is applied to image by copying pixels (`buckets.copy_plan`,
    what the output keeps where nothing is reconstructed) and scored (`score`); line
    is one sentence naming the choice and the scores it won by. A dict passed as
    `scores` receives each candidate's (plan, note, score terms), for `recheck`.
    """
    from learned_resize.retarget import quality

    img = np.asarray(image)
    box = mask_box(mask, img.shape[:2])
    weights = tuple(cfg.get("auto_weights", AUTO_WEIGHTS))
    phases = quality.input_features(vgg16, img, size)  # once for every candidate
    results = {}
    for name in candidates(mask, remove):
        plan, note = plan_for(cfg, image, size, mask, remove, operator=name)
        out = buckets.copy_plan(plan, img, size)
        results[name] = (plan, note, score(img, out, box, vgg16, weights, phases))
    if scores is not None:
        scores.update(results)
    best = max(results, key=lambda n: results[n][2]["total"])
    t = results[best][2]
    others = ", ".join(f"{n} {r[2]['total']:.1f}" for n, r in results.items() if n != best)
    line = (
        f"auto: {best} (score {t['total']:.1f} = {weights[0]:g} x subject {t['subject']:.1f} "
        f"+ complete {t['complete']:.1f} + coherent {t['coherent']:.1f} - {weights[1]:g} x "
        f"artifact {t['artifact']:.1f}) beats {others}"
    )
    return results[best][0], results[best][1], best, line


def recheck(cfg, image, result, chosen, mask, scores, vgg16) -> tuple[bool, str]:
    """(keep, line) for auto's choice once its result is reconstructed.

    auto chose `chosen` by its plan applied to the pixels; the reconstruction then
    changes what the plan does not copy. `result` (the reconstructed output at the
    working size) is scored the same way; if a candidate that reconstructs nothing (a
    crop: its score was already its result's) scores more, keep is False and that
    candidate should be used instead. line says which and why.
    """
    weights = tuple(cfg.get("auto_weights", AUTO_WEIGHTS))
    img = np.asarray(image)
    after = score(img, np.asarray(result), mask_box(mask, img.shape[:2]), vgg16, weights)
    crop = scores.get("crop")
    if crop is None or chosen == "crop" or crop[2]["total"] <= after["total"]:
        return True, f"auto: {chosen} reconstructed scores {after['total']:.1f}; kept"
    return False, (
        f"auto: {chosen} reconstructed scores {after['total']:.1f} (artifact "
        f"{after['artifact']:.1f}) < crop {crop[2]['total']:.1f}, which needs no "
        f"reconstruction: crop"
    )


def plan_for(cfg, image, size, mask, remove=None, operator=None) -> tuple[operators.Plan, str]:
    """`make_plan` with the operator (default cfg.operator) and its settings read from a
    retarget config."""
    return make_plan(
        cfg.operator if operator is None else operator,
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
