"""Input handling (EXIF, 16-bit, alpha, ranges, sizes, output names) and user masks."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageCms

from learned_resize.retarget import __main__ as cli
from learned_resize.retarget import api, image_io, operators, protect


def _texture(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_exif_orientation_is_applied(tmp_path):
    pixels = _texture(40, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.png"
    Image.fromarray(pixels).save(path, exif=exif)
    np.testing.assert_array_equal(image_io.read_image(path), np.rot90(pixels, k=-1))


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535] * 12] * 36, np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    got = image_io.read_image(path)
    assert got.dtype == np.float32 and got.shape == (36, 36, 3)
    np.testing.assert_allclose(got[0, :3, 0], [0.0, 32768 / 65535, 1.0], atol=1e-6)


def test_transparency_is_composited_over_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :16] = (255, 0, 0, 0)  # fully transparent red -> white
    rgba[:, 16:] = (0, 0, 0, 255)  # opaque black stays black
    rgba[0, 0] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    got = image_io.read_image(path)
    assert (got[1:, :16] == 255).all() and (got[:, 16:] == 0).all()
    assert abs(int(got[0, 0, 0]) - 127) <= 1


def test_srgb_profile_round_trips(tmp_path):
    pixels = _texture(32, 32, 1)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "tagged.png"
    Image.fromarray(pixels).save(path, icc_profile=profile)
    got = image_io.read_image(path).astype(int)
    assert np.abs(got - pixels).max() <= 2


def test_bad_inputs_are_refused_with_one_sentence(tmp_path):
    with pytest.raises(ValueError, match=r"Float images must lie in \[0, 1\]"):
        api.as_float_image(np.full((8, 8, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match="must be uint8"):
        api.as_float_image(np.zeros((8, 8, 3), np.int32))
    small = tmp_path / "small.png"
    Image.fromarray(_texture(20, 60)).save(small)
    with pytest.raises(ValueError, match="at least 32 px"):
        image_io.read_image(small)
    with pytest.raises(ValueError, match="must end in one of"):
        image_io.check_output(tmp_path / "out.gif")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_io.check_output(tmp_path / "nowhere" / "out.png")
    # The CLI checks the output name before reading anything or loading weights.
    with pytest.raises(ValueError, match="must end in one of"):
        cli.run(str(tmp_path / "missing.png"), (None, None, None), "x.txt", api.get_config(), False)


def test_fallback_keeps_the_mask_whole_and_crops_around_it():
    # Texture everywhere; the mask covers columns 16-39 of 48 in every row, so only 24
    # columns are free and a cut to 16 columns must crop; the mask must survive intact.
    image = jnp.asarray(_texture(24, 48, 2), jnp.float32) / 255
    mask = jnp.zeros((24, 48)).at[:, 16:40].set(1.0)
    plan, note = protect.protected_seam_plan(image, (24, 20), mask, grid=(24, 48))
    assert "crop of" in note
    out = np.asarray(operators.apply_plan(plan, image[None], (24, 20))[0])
    # 28 columns removed: 24 free columns by seams... then a crop of the rest; the
    # 20 kept columns all lie inside the mask, in order (a slice of the input).
    cols = np.round(np.asarray(plan[0].coords) * 48 - 0.5).astype(int)
    assert (cols == cols[0]).all() and (np.diff(cols[0]) == 1).all()
    assert 16 <= cols[0, 0] and cols[0, -1] <= 39
    np.testing.assert_allclose(out, np.asarray(image)[:, cols[0, 0] : cols[0, 0] + 20], atol=1e-6)


def test_remove_mask_takes_the_object_first():
    image = jnp.asarray(_texture(16, 40, 3), jnp.float32) / 255
    remove = jnp.zeros((16, 40)).at[:, 10:16].set(1.0)
    plan, note = protect.protected_seam_plan(
        image, (16, 34), jnp.zeros((16, 40)), grid=(16, 40), remove=remove
    )
    assert note == ""
    cols = np.round(np.asarray(plan[0].coords) * 40 - 0.5).astype(int)
    expected = [c for c in range(40) if not 10 <= c < 16]
    assert (cols == expected).all()


def test_folder_mode_pairs_inputs_with_outputs(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    for name in ("b.jpg", "a.png"):
        Image.fromarray(_texture(40, 40)).save(src / name)
    (src / "notes.txt").write_text("skip me")
    pairs = cli.jobs(str(src), str(dst))
    assert [(p.split("/")[-1], o.name) for p, o in pairs] == [
        ("a.png", "a.png"),
        ("b.jpg", "b.png"),
    ]
    with pytest.raises(FileNotFoundError, match="existing folder"):
        cli.jobs(str(src), str(tmp_path / "nope"))


def test_user_mask_reads_alpha_or_grey(tmp_path):
    grey = np.zeros((40, 40), np.uint8)
    grey[10:20, 6:16] = 255  # even edges: any nearest-neighbour halving agrees
    path = tmp_path / "m.png"
    Image.fromarray(grey).save(path)
    np.testing.assert_array_equal(image_io.read_mask(path, (40, 40)), grey > 0)
    buf = io.BytesIO()
    Image.fromarray(np.dstack([np.zeros((40, 40, 3), np.uint8), grey])).save(buf, "PNG")
    buf.seek(0)
    np.testing.assert_array_equal(image_io.read_mask(buf, (20, 20)), grey[::2, ::2] > 0)


def test_progress_lines_get_a_bar(capsys):
    cli.progress("[1/2 64x48] iter   10/40  loss 1.5")
    cli.progress("mask covers 20% of the image")
    first, second = capsys.readouterr().out.splitlines()
    assert first == "[#####...............] [1/2 64x48] iter   10/40  loss 1.5"
    assert second == "mask covers 20% of the image"


def test_uint8_conversion_is_xlas_to_the_bit():
    # as_float_image runs in numpy (no per-size compilation); its values must be those of
    # the jnp conversion it replaced, or seam baselines move (231 pixels of one photo
    # changed level when it divided in numpy).
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = np.asarray(jnp.asarray(x).astype(jnp.float32) / 255.0)
    np.testing.assert_array_equal(np.asarray(api.as_float_image(x))[..., 0], expected)
