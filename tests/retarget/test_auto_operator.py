"""operator='auto': the candidate plans, the mask's box, and the choice of the best score."""

import jax.numpy as jnp
import numpy as np
import pytest

from learned_resize.retarget import api, buckets, plans, quality, validation


def test_candidates_by_hand():
    some = jnp.zeros((1, 8, 8)).at[0, 2:6, 2:6].set(1.0)  # 25% of the photo
    assert plans.candidates(some, None) == ("crop", "seam", "multi")
    assert plans.candidates(jnp.zeros((1, 8, 8)), None) == ("crop", "seam", "multi", "uniform")
    assert plans.candidates(some, np.ones((8, 8))) == ("multi", "seam")


def test_mask_box_is_the_masks_bounding_box_on_the_image_grid():
    mask = jnp.zeros((1, 4, 8)).at[0, 1:3, 2:5].set(1.0)
    # Grid cells are 2x2 px on a 8x16 image: rows 1-2 -> y 2..6, columns 2-4 -> x 4..10.
    assert plans.mask_box(mask, (8, 16)) == (4, 2, 10, 6)
    assert plans.mask_box(jnp.zeros((1, 4, 8)), (8, 16)) is None


def test_auto_weights_are_checked_in_one_sentence():
    cfg = api.get_config()
    cfg.auto_weights = (1.0,)
    with pytest.raises(ValueError, match="config.auto_weights must be two finite numbers"):
        validation.check_config(cfg)
    cfg = api.get_config()
    cfg.operator = "auto"
    validation.check_config(cfg)  # a known operator


@pytest.fixture(scope="module")
def vgg16():
    weights = pytest.importorskip("learned_resize.retarget.weights")
    try:
        return weights.load_vgg(16)
    except FileNotFoundError:
        pytest.skip("no VGG weight cache (python -m learned_resize.retarget.weights --fetch)")


def test_auto_keeps_the_candidate_with_the_best_total(vgg16):
    import skimage.data

    image = api.as_float_image(skimage.data.chelsea()[::4, ::4])  # 75x113, a tuning photo
    size = (75, 85)
    mask = jnp.zeros((1, 5, 7)).at[0, 1:4, 2:5].set(1.0)
    cfg = api.get_config()
    cfg.operator = "auto"
    cfg.auto_weights = (0.5, 2.0)
    plan, _, chosen, line = plans.auto_plan(cfg, jnp.asarray(image), size, mask, None, vgg16)
    box = plans.mask_box(mask, image.shape[:2])
    totals = {}
    for name in ("crop", "seam", "multi"):
        cand, _ = plans.plan_for(cfg, jnp.asarray(image), size, mask, operator=name)
        out = buckets.copy_plan(cand, image, size)
        complete, coherent = quality.bidirectional_scores(vgg16, image, out)
        subject = 100 * quality.subject_ncc(image, box, out)
        totals[name] = (
            0.5 * subject + complete + coherent - 2.0 * quality.artifact_score(image, out)
        )
    assert chosen == max(totals, key=totals.get)
    assert line.startswith(f"auto: {chosen} (score {totals[chosen]:.1f} = 0.5 x subject")
    assert len(plan) >= 1 and "\n" not in line


def test_recheck_falls_back_to_a_crop_that_scores_more_than_the_reconstruction(vgg16):
    import skimage.data

    image = api.as_float_image(skimage.data.chelsea()[::4, ::4])  # 75x113, a tuning photo
    mask = jnp.zeros((1, 5, 7)).at[0, 1:4, 2:5].set(1.0)
    cfg = api.get_config()
    result = image[:, 10:95]  # stands for a reconstructed 75x85 result
    want = plans.score(image, result, plans.mask_box(mask, image.shape[:2]), vgg16, (1.0, 1.0))
    for crop_total, keep in ((want["total"] + 1.0, False), (want["total"] - 1.0, True)):
        scores = {"crop": ((), "", {"total": crop_total}), "multi": ((), "", {"total": 0.0})}
        kept, line = plans.recheck(cfg, image, result, "multi", mask, scores, vgg16)
        assert kept == keep
        assert f"reconstructed scores {want['total']:.1f}" in line
        assert line.endswith(": crop") != keep and "\n" not in line
    # Nothing to fall back to: no crop among the candidates (a remove mask), or the crop won.
    assert plans.recheck(cfg, image, result, "multi", mask, {}, vgg16)[0]
    assert plans.recheck(cfg, image, result, "crop", mask, scores, vgg16)[0]


def test_with_the_real_vgg16_a_crop_is_as_coherent_at_any_offset(vgg16):
    # conv3_3 sits on a 4-px grid: scored against the unshifted input only, these crops
    # were 98.5, 94.1, 86.7 and 93.9 coherent, and auto preferred seams through a
    # subject to a plain crop that was off the grid.
    import skimage.data

    image = api.as_float_image(skimage.data.chelsea()[::2, ::2])  # 150x226, a tuning photo
    scores = [
        quality.bidirectional_scores(vgg16, image, image[:, dx : dx + 170]) for dx in range(4)
    ]
    coherent = [c for _, c in scores]
    assert min(coherent) > 97.0, coherent
    assert max(coherent) - min(coherent) < 1.0, coherent
