"""config.data.aspect='pad': the whole image, aspect ratio kept, padded to the canvas."""

import numpy as np
import PIL.Image
import pytest

from learned_resize.config import defaults, validation
from learned_resize.data import aspect_ratio, pipeline
from tests.helpers.configs import tiny_config

BILINEAR = PIL.Image.Resampling.BILINEAR


@pytest.mark.parametrize(
    "hw,canvas,want",
    [((100, 50), (28, 28), (28, 14)), ((30, 90), (96, 96), (32, 96)),
     ((28, 28), (28, 40), (28, 28)), ((1, 500), (32, 32), (1, 32)), ((64, 64), (16, 16), (16, 16))],
)  # fmt: skip
def test_fit_size_keeps_the_aspect_ratio_inside_the_canvas(hw, canvas, want):
    assert aspect_ratio.fit_size(*hw, canvas) == want


def test_fit_and_pad_centres_the_pil_resize_on_black():
    rng = np.random.default_rng(0)
    source = rng.integers(1, 256, (40, 100, 3)).astype(np.uint8)  # no zeros: padding shows
    image = PIL.Image.fromarray(source)
    out, mask = aspect_ratio.fit_and_pad(image, (32, 32))
    # 40x100 fits 32x32 as 13x32 (32 * 40 / 100 = 12.8), centred: rows 9..21.
    want = np.asarray(image.resize((32, 13), BILINEAR))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[9:22], want)
    assert not out[:9].any() and not out[22:].any()
    want_mask = np.zeros((32, 32), bool)
    want_mask[9:22] = True
    np.testing.assert_array_equal(mask, want_mask)


def test_eval_pad_takes_the_central_fraction_then_fits():
    source = np.arange(60 * 30, dtype=np.uint8).reshape(60, 30)
    image = PIL.Image.fromarray(source)
    got = aspect_ratio.eval_pad(image, (20, 20), 0.5)
    # Central half of each side: rows 15..44, cols 7..21 (30x15), fitted as 20x10.
    want = np.asarray(image.crop((7, 15, 22, 45)).resize((10, 20), BILINEAR))
    np.testing.assert_array_equal(got[:, 5:15, 0], want)
    assert not got[:, :5].any() and not got[:, 15:].any()


def test_square_images_in_a_square_canvas_are_unchanged_by_pad():
    # The default dataset (28x28 Fashion-MNIST into 28x28) is the same in both modes.
    image = PIL.Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), np.uint8))
    np.testing.assert_array_equal(
        aspect_ratio.eval_pad(image, (28, 28), 1.0),
        pipeline.eval_preprocess(image, (28, 28), 1.0),
    )


def test_train_pad_fits_the_random_box_instead_of_stretching_it():
    image = PIL.Image.fromarray(np.random.default_rng(2).integers(1, 256, (50, 80), np.uint8))
    kwargs = dict(image_size=(24, 24), crop="inception", min_area=0.3, flip=False,
                  eval_crop_fraction=1.0)  # fmt: skip
    got = aspect_ratio.train_pad(image, np.random.default_rng(7), **kwargs)
    top, left, h, w = pipeline.sample_crop_box(np.random.default_rng(7), 50, 80, 0.3)
    want, _ = aspect_ratio.fit_and_pad(image.crop((left, top, left + w, top + h)), (24, 24))
    np.testing.assert_array_equal(got, want)


def test_pipeline_pads_non_square_canvas_end_to_end(small_fmnist):
    config = tiny_config(small_fmnist, **{"data.aspect": "pad", "batch_size": 8})
    _, _, arrays = small_fmnist
    images, labels = arrays["test"]
    batches, _ = pipeline.create_eval_iterator(
        config, image_size=(28, 40), process_index=0, process_count=1
    )
    batch = next(iter(batches))
    # 28x28 digits in a 28x40 canvas: untouched in columns 6..33, black bars either side.
    np.testing.assert_array_equal(batch["image"][:, :, 6:34, 0], images[:8])
    assert not batch["image"][:, :, :6].any() and not batch["image"][:, :, 34:].any()
    np.testing.assert_array_equal(batch["label"], labels[:8])
    train_batch = next(
        pipeline.create_train_iterator(
            config, image_size=(28, 40), seed=0, process_index=0, process_count=1
        )
    )
    assert not train_batch["image"][:, :, :6].any() and not train_batch["image"][:, :, 34:].any()
    assert train_batch["image"][:, :, 6:34].any()


def test_config_rejects_unknown_aspect_and_norm_with_one_sentence():
    for key, value in (("aspect", "bucket"), ("norm", "layer")):
        config = defaults.base_config()
        (config.data if key == "aspect" else config.resizer)[key] = value
        with pytest.raises(ValueError, match=f"config.(data|resizer).{key} must be one of"):
            validation.validate_config(config)
