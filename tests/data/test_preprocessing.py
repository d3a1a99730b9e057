"""Reduced (draft-mode) JPEG decoding against a full decode, and the auto worker count."""

import io

import numpy as np
import PIL.Image
import pytest
import skimage.data

from learned_resize.data import preprocessing, sources

BILINEAR = PIL.Image.Resampling.BILINEAR
BICUBIC = PIL.Image.Resampling.BICUBIC


def _encode(image: PIL.Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut():
    """A 512x512 photo with fine detail (hair, the flag), as JPEG bytes and fully decoded."""
    data = _encode(PIL.Image.fromarray(skimage.data.astronaut()), "JPEG")
    return data, preprocessing.decode_image(data, 3)


def _train_kwargs(out):
    return dict(image_size=(out, out), crop="inception", min_area=0.08, flip=True,
                eval_crop_fraction=0.875)  # fmt: skip


@pytest.mark.parametrize("out", [32, 64, 128])
def test_reduced_train_decode_is_within_resampling_error_of_full_decode(astronaut, out):
    data, full = astronaut
    reductions = []
    for seed in range(4):
        reduced = preprocessing.decode_train_example(
            data, np.random.default_rng(seed), channels=3, **_train_kwargs(out)
        ).astype(float)
        reference = preprocessing.train_preprocess(
            full, np.random.default_rng(seed), **_train_kwargs(out)
        ).astype(float)
        # The same draws (box, then flip) as the reference: the bound below is the change
        # that bicubic instead of bilinear resizing of the full decode makes.
        rng = np.random.default_rng(seed)
        top, left, h, w = preprocessing.sample_crop_box(rng, 512, 512, 0.08)
        bicubic = full.crop((left, top, left + w, top + h)).resize((out, out), BICUBIC)
        bicubic = np.asarray(bicubic, float)
        if rng.random() < 0.5:
            bicubic = bicubic[:, ::-1]
        filter_change = np.abs(bicubic - reference).mean()
        error = np.abs(reduced - reference).mean()
        assert error < filter_change, (seed, error, filter_change)
        assert error < 3.5
        reductions.append(min(h, w) // out)
    assert max(reductions) >= 2  # Some box was large enough to decode reduced.


def test_reduced_decode_uses_a_dct_scale_and_keeps_the_box_resolution(astronaut):
    data, _ = astronaut
    image, scale = preprocessing._decode(data, 3, lambda size: (size[0] // 3, size[1] // 3))
    # 512 // (512 // 3) = 3 -> the largest DCT scale <= 3 is 2.
    assert scale == 2 and image.size == (256, 256)
    image, scale = preprocessing._decode(data, 3, lambda size: (60, 60))
    assert scale == 8 and image.size == (64, 64)


@pytest.mark.parametrize("out", [32, 96])
def test_reduced_eval_decode_is_close_to_full_decode(astronaut, out):
    data, full = astronaut
    reduced = preprocessing.decode_eval_example(data, 3, (out, out), 0.875).astype(float)
    reference = preprocessing.eval_preprocess(full, (out, out), 0.875).astype(float)
    short = round(out / 0.875)
    bicubic = np.asarray(full.resize((short, short), BICUBIC), float)
    top = (short - out) // 2
    filter_change = np.abs(bicubic[top : top + out, top : top + out] - reference).mean()
    assert np.abs(reduced - reference).mean() < min(filter_change, 2.5)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_and_unreduced_decodes_equal_the_full_decode_path(astronaut, channels):
    _, full = astronaut
    png = _encode(full, "PNG")
    jpeg = _encode(full, "JPEG")
    decoded = {d: preprocessing.decode_image(d, channels) for d in (png, jpeg)}
    for data, reduced in ((png, True), (jpeg, False)):
        np.testing.assert_array_equal(
            preprocessing.decode_train_example(
                data, np.random.default_rng(3), channels=channels, reduced=reduced,
                **_train_kwargs(48),
            ),
            preprocessing.train_preprocess(
                decoded[data], np.random.default_rng(3), **_train_kwargs(48)
            ),
        )  # fmt: skip
        np.testing.assert_array_equal(
            preprocessing.decode_eval_example(data, channels, (40, 48), 0.875, reduced),
            preprocessing.eval_preprocess(decoded[data], (40, 48), 0.875),
        )


def test_corrupt_bytes_decode_to_none(astronaut):
    data, _ = astronaut
    kwargs = _train_kwargs(32)
    for bad in (b"not an image", data[: len(data) // 3]):
        rng = np.random.default_rng(0)
        assert preprocessing.decode_train_example(bad, rng, channels=3, **kwargs) is None
        assert preprocessing.decode_eval_example(bad, 3, (32, 32), 0.875) is None


@pytest.mark.parametrize(
    "num_workers, cpu_count, backend, expected",
    [
        (-1, 240, "tpu", 238),  # A TPU v4 host: 240 vCPUs.
        (-1, 96, "gpu", 94),
        (-1, 2, "gpu", 0),
        (-1, 64, "cpu", 0),
        (7, 240, "tpu", 7),
        (0, 240, "tpu", 0),
    ],
)
def test_auto_num_workers(num_workers, cpu_count, backend, expected):
    assert sources.resolve_num_workers(num_workers, cpu_count, backend) == expected
