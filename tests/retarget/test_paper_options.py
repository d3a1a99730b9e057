"""The paper's choices offered as settings: the noise start (`config.init='noise'`) and
forward seam energy (`config.energy='forward'`), checked against numpy statistics and
the operators they must reach."""

import jax.numpy as jnp
import numpy as np
import pytest

from learned_resize.retarget import api, coarse_to_fine, operators, plans, seams, validation
from tests.helpers import stand_in_vgg


def _photo(shape=(48, 64), seed=0):
    """Colour image with channel means 0.3 / 0.5 / 0.7 and stds 0.05 / 0.1 / 0.08: its noise
    start stays more than 3.75 standard deviations inside [0, 1], so clipping is negligible."""
    rng = np.random.default_rng(seed)
    mean, std = np.array([0.3, 0.5, 0.7]), np.array([0.05, 0.1, 0.08])
    return (mean + std * rng.standard_normal((*shape, 3))).clip(0, 1).astype(np.float32)


def _noise_start(image, size, seed=0, out=None):
    cfg = api.get_config()
    cfg.init, cfg.noise_seed = "noise", seed
    validation.check_config(cfg)
    scaled = operators.uniform_scale(jnp.asarray(image)[None], size)
    return np.asarray(coarse_to_fine.initial_image(cfg, (), jnp.asarray(image), scaled, out, None))


def test_noise_start_has_the_photos_channel_statistics():
    image = _photo()
    start = _noise_start(image, (40, 48))
    assert start.shape == (1, 40, 48, 3)
    assert start.min() >= 0.0 and start.max() <= 1.0
    n = 40 * 48
    mean, std = image.reshape(-1, 3).mean(0), image.reshape(-1, 3).std(0)
    got_mean, got_std = start.reshape(-1, 3).mean(0), start.reshape(-1, 3).std(0)
    # Sample mean within 4 standard errors (std / sqrt(n)); sample std within 4 of its
    # standard errors (about std / sqrt(2n)).
    np.testing.assert_array_less(np.abs(got_mean - mean), 4 * std / np.sqrt(n))
    np.testing.assert_array_less(np.abs(got_std - std), 4 * std / np.sqrt(2 * n))
    # White noise: neighbouring pixels uncorrelated, and nothing of the photo in it.
    centred = start[0, :, :, 1] - start[0, :, :, 1].mean()
    lag1 = np.sum(centred[:, 1:] * centred[:, :-1]) / np.sum(centred**2)
    assert abs(lag1) < 4 / np.sqrt(n)
    scaled = np.asarray(operators.uniform_scale(jnp.asarray(image)[None], (40, 48)))
    for c in range(3):
        per_channel = np.corrcoef(start[..., c].ravel(), scaled[..., c].ravel())[0, 1]
        assert abs(per_channel) < 4 / np.sqrt(n)


def test_noise_start_is_seeded_and_later_scales_start_from_the_previous_output():
    image = _photo(seed=1)
    a, b = _noise_start(image, (24, 32)), _noise_start(image, (24, 32))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _noise_start(image, (24, 32), seed=1))
    # After the first scale: the previous output, upsampled (no new noise).
    previous = jnp.asarray(a)
    later = _noise_start(image, (48, 64), out=previous)
    np.testing.assert_allclose(
        later, np.asarray(operators.uniform_scale(previous, (48, 64))), atol=1e-6
    )


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("init", "noize", "config.init must be one of plan, uniform, noise"),
        ("energy", "backward", "config.energy must be one of gradient, forward"),
        ("noise_seed", -1, "config.noise_seed must be a whole number >= 0"),
    ],
)
def test_bad_settings_are_one_sentence(key, value, fragment):
    cfg = api.get_config()
    cfg[key] = value
    with pytest.raises(ValueError, match=fragment):
        validation.check_config(cfg)


def test_config_energy_reaches_the_seam_plan():
    # Seams only (no mask): the config's plan must be seams.seam_plan with that
    # energy on the 1/plan_stride grid; the two energies choose different seams here.
    rng = np.random.default_rng(3)
    image = jnp.asarray(rng.random((32, 48, 3)), jnp.float32)
    size = (32, 36)
    coords = {}
    for energy in seams.ENERGIES:
        cfg = api.get_config()
        cfg.operator, cfg.energy, cfg.plan_stride = "seam", energy, 2
        cfg.mask.fallback = False
        plan, note = plans.plan_for(cfg, image, size, None)
        ref = seams.seam_plan(image, size, grid=(16, 24), energy=energy)
        assert note == "" and len(plan) == len(ref) == 1
        np.testing.assert_array_equal(np.asarray(plan[0].coords), np.asarray(ref[0].coords))
        coords[energy] = np.asarray(plan[0].coords)
    assert not np.array_equal(coords["gradient"], coords["forward"])


def test_retarget_runs_with_the_paper_options():
    # The whole pipeline with the stand-in networks. The noise start begins far from
    # the (uniform) plan-warped photo, so the first solve's starting loss is higher.
    image = _photo((32, 32), seed=4)
    vgg19, vgg16 = stand_in_vgg.nets()
    first_loss = {}
    for init in ("plan", "noise"):
        cfg = stand_in_vgg.small_config(api)
        cfg.init, cfg.bucket = init, 0
        cfg.operator = "uniform"  # every output pixel is reconstructed, none copied
        result = api.retarget_details(
            image, (32, 24), config=cfg, vgg19=vgg19, vgg16=vgg16, log=None
        )
        assert np.asarray(result.image).shape == (32, 24, 3)
        assert np.all(np.isfinite(np.asarray(result.image)))
        first_loss[init] = result.solves[0].losses[0]
    assert first_loss["noise"] > 2 * first_loss["plan"]
