"""Size buckets (`retarget/buckets.py`): the resize against jax.image.resize, the sizes
by hand, and a new photo size in a seen bucket compiling nothing."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring

from learned_resize.retarget import api, buckets, validation
from tests.helpers.stand_in_vgg import nets, small_config

_COMPILES = []
monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: (
        _COMPILES.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
    )
)


@pytest.mark.parametrize("n_in, n_out", [(250, 256), (256, 192), (200, 208), (37, 32), (40, 120)])
def test_resize_matrix_is_jax_cubic_with_antialiasing(n_in, n_out):
    # jax.image.resize of the identity is its weight matrix (computed in float32 there).
    expected = jax.image.resize(jnp.eye(n_in), (n_out, n_in), "cubic", antialias=True)
    np.testing.assert_allclose(buckets.resize_matrix(n_in, n_out), expected, atol=3e-5)


def test_working_sizes_by_hand():
    # 250 -> 256 (15.6 buckets of 16 round to 16); 188 * 256 / 250 = 192.5 -> 192.
    assert buckets.working_sizes((250, 250), (250, 188), 16) == ((256, 256), (256, 192))
    # 200 -> 208 (12.5 rounds up); 150 * 208 / 200 = 156 -> 160.
    assert buckets.working_sizes((256, 200), (256, 150), 16) == ((256, 208), (256, 160))
    # Sides under 8 buckets (128 px) stay exact, and so does their output side.
    assert buckets.working_sizes((100, 300), (90, 200), 16) == ((100, 304), (90, 208))
    # A shrink to under half a bucket's worth of px is rounded away (plain scaling after).
    assert buckets.working_sizes((256, 256), (256, 250), 16) == ((256, 256), (256, 256))
    assert buckets.working_sizes((250, 188), (9, 7), 0) == ((250, 188), (9, 7))
    assert buckets.round_side(7, 16) == 16


def test_masks_keep_their_box_scaled():
    mask = np.zeros((40, 40), np.float32)
    mask[8:24, 4:36] = 1
    out = buckets.resize_mask(mask, (48, 40))
    # Output row i samples input row (i + 0.5) * 40 / 48 - 0.5: inside [7.5, 23.5] for
    # rows 10..28 (row 9 samples 7.42, row 29 samples 23.67).
    expected = np.zeros((48, 40), np.float32)
    expected[10:29, 4:36] = 1
    np.testing.assert_array_equal(out, expected)


def _run(image_size, out_size, bucket):
    cfg = small_config(api)
    cfg.mask.image_side = 40
    cfg.bucket = bucket
    image = np.random.default_rng(5).uniform(size=(*image_size, 3)).astype(np.float32)
    net19, net16 = nets()
    return api.retarget_details(image, out_size, config=cfg, vgg19=net19, vgg16=net16, log=None)


def test_sizes_on_the_grid_are_worked_on_exactly():
    # 40 and 28 are multiples of 4: nothing is resampled, the result is the exact one.
    exact = _run((40, 40), (40, 28), bucket=0)
    bucketed = _run((40, 40), (40, 28), bucket=4)
    assert bucketed.work_size == ((40, 40), (40, 28))
    np.testing.assert_array_equal(np.asarray(bucketed.image), np.asarray(exact.image))


def test_a_new_size_in_a_seen_bucket_compiles_nothing():
    _run((40, 40), (40, 28), bucket=4)  # compiles the bucket's programs
    _COMPILES.clear()
    result = _run((39, 41), (39, 29), bucket=4)
    assert result.work_size == ((40, 40), (40, 28))
    assert _COMPILES == []
    image = np.asarray(result.image)
    assert image.shape == (39, 29, 3) and 0.0 <= image.min() and image.max() <= 1.0
    # Without buckets the same photo compiles its own programs: the count can fail.
    _run((39, 41), (39, 29), bucket=0)
    assert len(_COMPILES) > 10


@pytest.mark.parametrize("bucket", [-1, 2.5, True, 1000])
def test_bad_bucket_is_refused_with_one_sentence(bucket):
    cfg = api.get_config()
    with cfg.ignore_type():  # the command line's parser refuses other types itself
        cfg.bucket = bucket
    with pytest.raises(ValueError, match="config.bucket must be a whole number"):
        validation.check_config(cfg)


def test_cli_refuses_a_bad_bucket_in_one_line(tmp_path):
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "learned_resize.retarget", "--config.bucket=-1", f"--out={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: config.bucket must be a whole number of px in [0, 256] (0 = exact sizes), got -1."
    ]
    assert not out.exists()


def test_a_fallback_note_says_its_px_are_the_working_sizes():
    cfg = small_config(api)
    cfg.mask.image_side = 40
    cfg.bucket = 4
    cfg.operator = "seam"
    image = np.random.default_rng(6).uniform(size=(39, 41, 3)).astype(np.float32)
    net19, net16 = nets()
    keep = np.ones((39, 41), np.float32)  # everything protected: seams cannot take any
    result = api.retarget_details(
        image, (39, 29), config=cfg, vgg19=net19, vgg16=net16, log=None, protect_mask=keep
    )
    assert "cannot absorb" in result.note
    assert result.note.endswith("(px of the 40x40 working size)")
