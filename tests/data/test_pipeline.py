"""Tests for the Fashion-MNIST builder and the grain input pipeline.

A tiny Fashion-MNIST-format idx set (50 train / 20 test images) is written to a
tmp dir and built with the real builder; imagenet2012 is mocked with JPEG bytes
through tfds.testing.mock_data. References are the source arrays and PIL.
"""

import gzip
import io
import os

import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from learned_resize.data import builders, sources
from learned_resize.data import pipeline as pipeline_lib
from learned_resize.data.builders import fashion_mnist

NUM_TRAIN, NUM_TEST = 50, 20
BILINEAR = PIL.Image.Resampling.BILINEAR


def _write_idx(path, array):
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory):
    """Tiny idx files, built once with the real builder: (config factory, arrays)."""
    root = tmp_path_factory.mktemp("fmnist")
    source_dir, data_dir = root / "idx", root / "tfds"
    source_dir.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train": (rng.integers(0, 256, (NUM_TRAIN, 28, 28)), np.arange(NUM_TRAIN) % 10),
        "test": (rng.integers(0, 256, (NUM_TEST, 28, 28)), (np.arange(NUM_TEST) * 3) % 10),
    }
    for split, (images_stem, labels_stem) in fashion_mnist.SPLIT_FILES.items():
        images, labels = arrays[split]
        _write_idx(source_dir / f"{images_stem}.gz", images)
        _write_idx(source_dir / f"{labels_stem}.gz", labels)
    assert builders.prepare("fashion_mnist_local", str(data_dir), str(source_dir)) > 0

    def make_config(batch_size=10, **data):
        config = ml_collections.ConfigDict()
        config.batch_size = batch_size
        config.data = ml_collections.ConfigDict(
            {
                "name": "fashion_mnist_local",
                "data_dir": str(data_dir),
                "manual_dir": str(source_dir),
                "crop": "none",
                "flip": False,
                "eval_crop_fraction": 1.0,
                "prefetch": 0,
                **data,
            }
        )
        return config

    return make_config, arrays


def _batches(iterator, count):
    return [next(iterator) for _ in range(count)]


def _row_of(images, image):
    """Index of `image` [28, 28, 1] among the source `images` [N, 28, 28]."""
    (rows,) = np.nonzero((images == image[..., 0]).all(axis=(1, 2)))
    assert len(rows) == 1
    return int(rows[0])


# ----------------------------------------------------------------------------
# Builder.


def test_builder_round_trip_equals_source_arrays(fmnist):
    make_config, arrays = fmnist
    config = make_config()
    assert builders.prepare("fashion_mnist_local", config.data.data_dir) == 0  # Already built.
    for split, (images, labels) in arrays.items():
        source = tfds.data_source(
            "fashion_mnist_local", data_dir=config.data.data_dir, split=split, download=False
        )
        assert len(source) == len(images)
        for index in range(len(images)):
            record = source[index]
            np.testing.assert_array_equal(
                np.asarray(PIL.Image.open(io.BytesIO(record["image"]))), images[index]
            )
            assert record["label"] == labels[index]
    info = sources.get_dataset_info(config)
    assert info == sources.DatasetInfo(NUM_TRAIN, NUM_TEST, 10, 1)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    stem = "train-labels-idx1-ubyte"
    _write_idx(tmp_path / f"{stem}.gz", np.zeros((5, 2)))  # idx3 header where idx1 is expected.
    with pytest.raises(ValueError, match="magic number"):
        fashion_mnist.read_idx(str(tmp_path), stem, 0x00000801)
    with gzip.open(tmp_path / f"{stem}.gz", "wb") as f:
        f.write((0x801).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(7))
    with pytest.raises(ValueError, match="truncated"):
        fashion_mnist.read_idx(str(tmp_path), stem, 0x00000801)


def test_missing_fashion_mnist_directory_says_how_to_install(tmp_path):
    config = ml_collections.ConfigDict({"batch_size": 2, "data": {"name": "fashion_mnist_local"}})
    config.data.data_dir = str(tmp_path / "tfds")
    config.data.manual_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        sources.get_dataset_info(config)


# ----------------------------------------------------------------------------
# Eval.


def test_eval_values_padding_and_channels(fmnist):
    make_config, arrays = fmnist
    images, labels = arrays["test"]
    iterable, num_batches = pipeline_lib.create_eval_iterator(
        make_config(batch_size=8), image_size=28, process_index=0, process_count=1
    )
    batches = list(iterable)
    assert num_batches == len(batches) == 3  # 20 examples padded to 24.
    image = np.concatenate([b["image"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    assert image.dtype == np.uint8 and image.shape == (24, 28, 28, 1)
    np.testing.assert_array_equal(image[:NUM_TEST, ..., 0], images)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:NUM_TEST], labels)
    np.testing.assert_array_equal(mask, [1.0] * NUM_TEST + [0.0] * 4)
    assert not np.concatenate([b["skipped"] for b in batches]).any()
    assert list(iterable)[2]["label"].tolist() == batches[2]["label"].tolist()  # Re-iterable.

    rgb, _ = pipeline_lib.create_eval_iterator(
        make_config(batch_size=8, channels=3), image_size=28, process_count=1, process_index=0
    )
    first = next(iter(rgb))["image"]
    assert first.shape == (8, 28, 28, 3)
    np.testing.assert_array_equal(first, np.repeat(images[:8, ..., None], 3, axis=-1))


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_eval_counts_every_example_once(fmnist, process_count):
    make_config, arrays = fmnist
    images, labels = arrays["test"]
    seen, lengths = [], set()
    for process_index in range(process_count):
        iterable, num_batches = pipeline_lib.create_eval_iterator(
            make_config(batch_size=6),
            image_size=28,
            process_index=process_index,
            process_count=process_count,
        )
        batches = list(iterable)
        lengths.add((num_batches, len(batches)))
        for batch in batches:
            assert batch["image"].shape[0] == 6 // process_count
            for image, label, mask in zip(batch["image"], batch["label"], batch["mask"]):
                if mask:
                    row = _row_of(images, image)
                    assert label == labels[row]
                    seen.append(row)
    assert lengths == {(4, 4)}  # ceil(20 / 6) batches on every process.
    assert sorted(seen) == list(range(NUM_TEST))


# ----------------------------------------------------------------------------
# Train.


def test_train_epoch_visits_each_record_once_and_reshuffles(fmnist):
    make_config, arrays = fmnist
    images, labels = arrays["train"]
    iterator = pipeline_lib.create_train_iterator(
        make_config(batch_size=10), image_size=28, seed=3, process_index=0, process_count=1
    )
    epochs = []
    for _ in range(2):
        batches = _batches(iterator, NUM_TRAIN // 10)
        rows = [_row_of(images, im) for b in batches for im in b["image"]]
        assert sorted(rows) == list(range(NUM_TRAIN))
        np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), labels[rows])
        assert all(b["label"].dtype == np.int32 and not b["skipped"].any() for b in batches)
        epochs.append(rows)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(NUM_TRAIN))


def test_train_is_deterministic_and_resumes_at_step(fmnist):
    make_config, _ = fmnist
    config = make_config(batch_size=8, crop="inception", flip=True, prefetch=2)

    def run(seed, start_step=0, count=4):
        it = pipeline_lib.create_train_iterator(
            config,
            image_size=20,
            seed=seed,
            start_step=start_step,
            process_index=0,
            process_count=1,
        )
        return _batches(it, count)

    first, again, resumed, other = run(0, count=9), run(0, count=9), run(0, start_step=7), run(1)
    assert first[0]["image"].shape == (8, 20, 20, 1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(first[7:], resumed):  # Step 7 spans the end of epoch 1 (50 / 8).
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(first[0]["image"], other[0]["image"])


@pytest.mark.parametrize("process_count", [2, 3])
def test_process_shards_union_to_the_global_batch(fmnist, process_count):
    make_config, _ = fmnist
    config = make_config(batch_size=6, crop="inception", flip=True)
    kwargs = dict(image_size=24, seed=5, start_step=2)
    (global_batch,) = _batches(
        pipeline_lib.create_train_iterator(config, process_index=0, process_count=1, **kwargs), 1
    )
    for process_index in range(process_count):
        (local,) = _batches(
            pipeline_lib.create_train_iterator(
                config, process_index=process_index, process_count=process_count, **kwargs
            ),
            1,
        )
        # Process p holds global rows p, p + P, ...: same crops and flips as in the 1-process run.
        for key in ("image", "label", "skipped"):
            np.testing.assert_array_equal(
                local[key], global_batch[key][process_index::process_count]
            )


def test_worker_processes_give_the_same_batches(fmnist):
    make_config, _ = fmnist
    kwargs = dict(image_size=28, seed=2, start_step=1, process_index=0, process_count=1)
    config = make_config(batch_size=10, crop="inception", flip=True)
    in_process = _batches(pipeline_lib.create_train_iterator(config, **kwargs), 3)
    config.data.num_workers = 1
    iterator = pipeline_lib.create_train_iterator(config, **kwargs)
    with_worker = _batches(iterator, 3)
    iterator.close()
    for a, b in zip(in_process, with_worker):
        np.testing.assert_array_equal(a["image"], b["image"])


# ----------------------------------------------------------------------------
# Augmentation against PIL references.


def test_crop_box_respects_area_and_aspect_ranges():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(2000):
        top, left, h, w = pipeline_lib.sample_crop_box(rng, 120, 90, min_area=0.2)
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 90
        areas.append(h * w / (120 * 90))
        ratios.append(w / h)
    # Rounding to whole pixels moves the area and ratio a little outside the sampled ranges.
    assert 0.19 < min(areas) < 0.25 and max(areas) <= 1.0
    assert 3 / 4 - 0.03 < min(ratios) < 0.8 and 1.27 < max(ratios) < 4 / 3 + 0.03
    # Every tenth of [0.2, 1] is reached (large boxes of extreme ratio are redrawn, so the
    # distribution is not exactly uniform).
    assert set(np.floor((np.array(areas) - 0.2) / 0.08).astype(int).clip(0, 9)) == set(range(10))
    # A 10 x 200 strip cannot hold a 0.9-area box with ratio <= 4/3: central fallback.
    assert pipeline_lib.sample_crop_box(rng, 10, 200, min_area=0.9) == (0, 93, 10, 13)
    assert pipeline_lib.sample_crop_box(rng, 200, 10, min_area=0.9) == (93, 0, 13, 10)


@pytest.mark.parametrize("seed", range(6))
def test_train_preprocess_matches_pil_crop_resize_flip(seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(pixels)
    out = pipeline_lib.train_preprocess(
        image,
        np.random.default_rng(seed),
        image_size=(30, 20),
        crop="inception",
        min_area=0.08,
        flip=True,
        eval_crop_fraction=1.0,
    )
    rng = np.random.default_rng(seed)
    top, left, h, w = pipeline_lib.sample_crop_box(rng, 37, 53, 0.08)
    expected = np.asarray(image.crop((left, top, left + w, top + h)).resize((20, 30), BILINEAR))
    if rng.random() < 0.5:
        expected = expected[:, ::-1]
    assert out.shape == (30, 20, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_eval_preprocess_resizes_shorter_side_then_center_crops():
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(pixels)
    out = pipeline_lib.eval_preprocess(image, (16, 16), 0.875)
    # Shorter side 30 -> round(16 / 0.875) = 18, longer 40 -> 24; center 16 x 16.
    expected = np.asarray(image.resize((24, 18), BILINEAR))[1:17, 4:20]
    np.testing.assert_array_equal(out, expected)
    # Upsampling to a resizer input larger than the image: 30 -> 64.
    out = pipeline_lib.eval_preprocess(image, (64, 64), 1.0)
    np.testing.assert_array_equal(out, np.asarray(image.resize((85, 64), BILINEAR))[:, 10:74])


# ----------------------------------------------------------------------------
# imagenet2012 through tfds.testing.mock_data, corrupt images, errors.


def _jpeg(pixels):
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture
def mock_imagenet():
    """imagenet2012 mocked with JPEG records; train records 3 and 4, val record 2 are corrupt."""
    rng = np.random.default_rng(1)
    records = {}
    for split, size in (("train", 12), ("validation", 7)):
        records[split] = [
            {
                "image": _jpeg(rng.integers(0, 256, (30 + i, 44 - i, 3), dtype=np.uint8)),
                "label": (7 * i) % 1000,
            }
            for i in range(size)
        ]
    corrupt = records["train"][4]["image"]
    records["train"][3]["image"] = b"not an image"
    records["train"][4]["image"] = corrupt[: len(corrupt) // 3]  # Truncated JPEG.
    records["validation"][2]["image"] = b"\xff\xd8garbage"

    def as_data_source(self, split, decoders=None, **kwargs):
        del self, kwargs
        assert isinstance(decoders["image"], tfds.decode.SkipDecoding)
        return records[split]

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        config = ml_collections.ConfigDict({"batch_size": 4, "data": {"name": "imagenet2012"}})
        config.data.eval_split = "validation"
        config.data.prefetch = 0
        # Exact comparisons with a full decode; tests/data/test_preprocessing.py checks the
        # reduced (draft-mode) JPEG decode against it.
        config.data.jpeg_draft = False
        yield config, records


def test_mock_imagenet_eval_matches_pil_and_masks_corrupt(mock_imagenet):
    config, records = mock_imagenet
    info = sources.get_dataset_info(config)
    assert info == sources.DatasetInfo(12, 7, 1000, 3)
    iterable, num_batches = pipeline_lib.create_eval_iterator(
        config, image_size=24, process_index=0, process_count=1
    )
    batches = list(iterable)
    assert num_batches == len(batches) == 2
    mask = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(mask, [1, 1, 0, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(
        np.concatenate([b["skipped"] for b in batches]), [0, 0, 1, 0, 0, 0, 0, 0]
    )
    images = np.concatenate([b["image"] for b in batches])
    for i in (0, 5):
        decoded = PIL.Image.open(io.BytesIO(records["validation"][i]["image"])).convert("RGB")
        height, width = 30 + i, 44 - i
        short = round(24 / 0.875)  # Default eval_crop_fraction.
        new_w = round(width * short / height)
        resized = np.asarray(decoded.resize((new_w, short), BILINEAR))
        top, left = (short - 24) // 2, (new_w - 24) // 2
        np.testing.assert_array_equal(images[i], resized[top : top + 24, left : left + 24])


def test_mock_imagenet_train_substitutes_next_decodable_record(mock_imagenet):
    config, records = mock_imagenet
    config.data.crop = "none"
    config.data.flip = False
    config.data.eval_crop_fraction = 1.0
    iterator = pipeline_lib.create_train_iterator(
        config, image_size=16, seed=0, process_index=0, process_count=1
    )
    references = [
        pipeline_lib.eval_preprocess(
            PIL.Image.open(io.BytesIO(records["train"][i]["image"])).convert("RGB"), (16, 16), 1.0
        )
        for i in (0, 1, 2, 5, 6, 7, 8, 9, 10, 11)
    ]
    seen = {}
    for batch in _batches(iterator, 3):  # One epoch of 12.
        for image, label, skipped in zip(batch["image"], batch["label"], batch["skipped"]):
            (match,) = [
                r
                for r, ref in zip((0, 1, 2, 5, 6, 7, 8, 9, 10, 11), references)
                if np.array_equal(ref, image)
            ]
            assert label == records["train"][match]["label"]
            seen.setdefault(match, []).append(int(skipped))
    # Records 3 and 4 are corrupt: drawing either yields record 5, with 2 or 1 skipped.
    assert sorted(seen[5]) == [0, 1, 2]
    assert all(v == [0] for k, v in seen.items() if k != 5) and len(seen) == 10


def test_unprepared_imagenet_says_how_to_prepare(tmp_path):
    config = ml_collections.ConfigDict({"batch_size": 4, "data": {"name": "imagenet2012"}})
    config.data.data_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        pipeline_lib.create_train_iterator(config, image_size=224, seed=0)
    message = str(error.value)
    assert "tfds build imagenet2012" in message and "--file_format=array_record" in message
    assert os.path.join(str(tmp_path), "downloads", "manual") in message


@pytest.mark.parametrize(
    "overrides, batch_size, match",
    [
        ({"crop": "random"}, 4, "config.data.crop"),
        ({"channels": 2}, 4, "config.data.channels"),
        ({"min_area": 0.0}, 4, "config.data.min_area"),
        ({"eval_crop_fraction": 1.5}, 4, "eval_crop_fraction"),
        ({"num_workers": -2}, 4, "num_workers"),
        ({}, 5, "not divisible by the 2 processes"),
        ({"train_split": "training"}, 4, r"is not a split of fashion_mnist_local; use one of"),
    ],
)
def test_bad_config_values_raise_one_sentence(fmnist, overrides, batch_size, match):
    make_config, _ = fmnist
    with pytest.raises(ValueError, match=match):
        pipeline_lib.create_train_iterator(
            make_config(batch_size=batch_size, **overrides),
            image_size=28,
            seed=0,
            process_index=0,
            process_count=2,
        )
