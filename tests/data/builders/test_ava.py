"""The AVA TFDS builder on a small AVA-format folder, and the offline stand-in."""

import functools
import io
import logging
import os
import shutil

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from scipy import stats

from learned_resize import iqa
from learned_resize.data.builders import ava, ava_standin

NUM_LINES = 40
MISSING_ID = 1005
GARBAGE_ID = 1011  # not an image at all
TRUNCATED_ID = 1017  # a real JPEG cut in half
NO_VOTES_ID = 1023


def _write_source(root, rng):
    """A small AVA folder; returns {image_id: (counts, tags, challenge)} of every line."""
    os.makedirs(os.path.join(root, "images"))
    lines, truth = [], {}
    for index in range(NUM_LINES):
        image_id = 1000 + index
        counts = rng.integers(0, 40, size=10)
        if image_id == NO_VOTES_ID:
            counts[:] = 0
        tags = (int(rng.integers(0, 66)), int(rng.integers(0, 66)))
        challenge = int(rng.integers(1, 1500))
        truth[image_id] = (counts, tags, challenge)
        lines.append(" ".join(str(v) for v in [index + 1, image_id, *counts, *tags, challenge]))
        if image_id == MISSING_ID:
            continue
        path = os.path.join(root, "images", f"{image_id}.jpg")
        if image_id == GARBAGE_ID:
            with open(path, "wb") as f:
                f.write(b"this is not a jpeg")
            continue
        h, w = (int(v) for v in rng.integers(16, 48, size=2))
        image = PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        if image_id == TRUNCATED_ID:
            data = data[: len(data) // 2]
        with open(path, "wb") as f:
            f.write(data)
    with open(os.path.join(root, "AVA.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return truth


def _read_all(name, data_dir):
    """{split: {image_id: example}} read back through tfds.data_source."""
    sources = tfds.data_source(name, data_dir=data_dir)
    return {
        split: {int(ex["image_id"]): ex for ex in (source[i] for i in range(len(source)))}
        for split, source in sources.items()
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava")
    source = os.path.join(root, "source")
    truth = _write_source(source, np.random.default_rng(0))
    data_dir = os.path.join(root, "data")
    builder = ava.prepare_ava(source, data_dir)
    return source, data_dir, truth, builder


def test_examples_match_annotations(prepared):
    source, data_dir, truth, builder = prepared
    splits = _read_all("ava", data_dir)
    bad = {MISSING_ID, GARBAGE_ID, TRUNCATED_ID, NO_VOTES_ID}
    train, test = set(splits["train"]), set(splits["test"])
    assert not train & test
    assert train | test == set(truth) - bad
    for examples in splits.values():
        for image_id, ex in examples.items():
            counts, tags, challenge = truth[image_id]
            # Independent of the builder: straight from the numbers written into AVA.txt.
            np.testing.assert_array_equal(ex["counts"], counts)
            np.testing.assert_allclose(ex["hist"], counts / counts.sum(), rtol=1e-6)
            expected_mean = np.sum(np.arange(1, 11) * counts) / counts.sum()
            np.testing.assert_allclose(ex["mean_score"], expected_mean, rtol=1e-6)
            np.testing.assert_allclose(iqa.mean_score(ex["hist"]), expected_mean, rtol=1e-5)
            np.testing.assert_array_equal(ex["tags"], tags)
            assert ex["challenge"] == challenge
            assert ex["hist"].dtype == np.float32 and ex["counts"].dtype == np.int32
            # The file's bytes, untouched, and its size.
            with open(os.path.join(source, "images", f"{image_id}.jpg"), "rb") as f:
                assert ex["image"] == f.read()
            decoded = PIL.Image.open(io.BytesIO(ex["image"]))
            assert (ex["height"], ex["width"]) == (decoded.height, decoded.width)
    assert builder.info.splits["train"].num_examples == len(train)


def test_skipped_images_counted(prepared):
    _, _, truth, builder = prepared
    skipped = builder.info.metadata["skipped"]
    totals = {reason: sum(s[reason] for s in skipped.values()) for reason in ava.SKIP_REASONS}
    assert totals == {"missing": 1, "undecodable": 2, "no_votes": 1, "duplicate": 0}
    # Metadata is saved with the dataset, so a later reader sees it too.
    reloaded = tfds.builder("ava", data_dir=builder.data_dir_root)
    assert reloaded.info.metadata["skipped"] == skipped
    assert "random 20%" in reloaded.info.metadata["split_source"]


def test_random_split_deterministic_and_order_independent(prepared, tmp_path):
    source, data_dir, truth, _ = prepared
    first = _read_all("ava", data_dir)
    # 20% of the 40 annotated ids, chosen before any image is skipped.
    all_test = ava.random_test_ids(truth)
    assert len(all_test) == 8
    assert set(first["test"]) == all_test - {MISSING_ID, GARBAGE_ID, TRUNCATED_ID, NO_VOTES_ID}
    # Same annotations in reverse line order, prepared again elsewhere: same split.
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    lines = (copy / "AVA.txt").read_text().splitlines()
    (copy / "AVA.txt").write_text("\n".join(reversed(lines)) + "\n")
    ava.prepare_ava(str(copy), str(tmp_path / "data"))
    second = _read_all("ava", str(tmp_path / "data"))
    assert set(second["test"]) == set(first["test"])
    assert set(second["train"]) == set(first["train"])


@pytest.mark.parametrize("list_file", ["test_ids.txt", "aesthetics_image_lists/generic_test.jpgl"])
def test_explicit_and_standard_test_lists(prepared, tmp_path, list_file):
    source, _, truth, _ = prepared
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    listed = {1000, 1001, 1002, 1003, MISSING_ID, 99999}  # 99999 is not in AVA.txt
    (copy / list_file).parent.mkdir(exist_ok=True)
    (copy / list_file).write_text("".join(f"{i}\n" for i in sorted(listed)))
    builder = ava.prepare_ava(str(copy), str(tmp_path / "data"))
    splits = _read_all("ava", str(tmp_path / "data"))
    assert set(splits["test"]) == {1000, 1001, 1002, 1003}
    assert set(splits["train"]) == set(truth) - listed - {GARBAGE_ID, TRUNCATED_ID, NO_VOTES_ID}
    assert builder.info.metadata["skipped"]["test"]["missing"] == 1
    assert list_file.split("/")[-1] in builder.info.metadata["split_source"]


def test_manual_dir_layouts_and_missing_message(prepared, tmp_path):
    source, _, _, _ = prepared
    data_dir = tmp_path / "data"
    # Nothing anywhere: one sentence naming what to download and where it goes.
    with pytest.raises(FileNotFoundError) as error:
        tfds.builder("ava", data_dir=str(data_dir)).download_and_prepare()
    message = str(error.value)
    assert str(data_dir / "downloads" / "manual" / "ava") in message
    assert "download the AVA dataset" in message and "AVA.txt" in message
    assert "config.data.manual_dir" in message and message.count(". ") == 0
    with pytest.raises(FileNotFoundError, match="No AVA.txt found in .*nowhere: download"):
        ava.prepare_ava(str(tmp_path / "nowhere"), str(data_dir))
    # After the failures, the default manual dir <data_dir>/downloads/manual/ava is found
    # without arguments, in the AVA release's own AVA_dataset/ layout.
    shutil.copytree(source, data_dir / "downloads" / "manual" / "ava" / "AVA_dataset")
    builder = ava.prepare_ava(None, str(data_dir))
    assert builder.info.splits["train"].num_examples + builder.info.splits["test"].num_examples == (
        NUM_LINES - 4
    )


def test_malformed_annotation_line(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "AVA.txt").write_text("1 2 3 4 5\n")
    with pytest.raises(ValueError, match="line 1"):
        ava.prepare_ava(str(tmp_path), str(tmp_path / "data"))


def test_prepare_logs_summary(prepared, tmp_path, caplog):
    source, _, _, _ = prepared
    with caplog.at_level(logging.INFO, logger="absl"):
        ava.prepare_ava(source, str(tmp_path / "data"))
    summaries = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(summaries) == 2  # one line per split
    text = " ".join(summaries)
    for reason, count in (("missing", 1), ("undecodable", 2), ("no_votes", 1)):
        assert sum(int(s.split(f"{reason} ")[1].split(",")[0]) for s in summaries) == count, text


def test_standin_folder_deterministic_and_scored_by_strength(tmp_path):
    a = ava_standin.write_standin(tmp_path / "a", num_images=60, seed=3)
    ava_standin.write_standin(tmp_path / "b", num_images=60, seed=3)
    ava_standin.write_standin(tmp_path / "c", num_images=60, seed=4)
    for name in ("AVA.txt", "distortions.txt", "images/1.jpg", "images/60.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "AVA.txt").read_bytes() != (tmp_path / "c" / "AVA.txt").read_bytes()
    records = ava.read_annotations(os.path.join(a, "AVA.txt"))
    strength = {
        int(line.split()[0]): float(line.split()[3])
        for line in (tmp_path / "a" / "distortions.txt").read_text().splitlines()[1:]
    }
    counts = np.array([r.counts for r in records])
    means = (counts * np.arange(1, 11)).sum(1) / counts.sum(1)
    s = np.array([strength[r.image_id] for r in records])
    assert counts.sum(1).min() >= 150 and counts.sum(1).max() <= 250
    # Means follow 7.5 - 5 s up to multinomial noise (sd ~ 1.5 / sqrt(200) ~ 0.1).
    np.testing.assert_allclose(means, 7.5 - 5.0 * s, atol=0.45)
    assert stats.spearmanr(s, means)[0] < -0.95
    for record in records:
        with PIL.Image.open(os.path.join(a, "images", f"{record.image_id}.jpg")) as image:
            assert image.mode == "RGB" and 64 <= min(image.size) and max(image.size) <= 128
    with pytest.raises(FileExistsError):
        ava_standin.write_standin(tmp_path / "c")


def test_standin_builder_writes_its_own_folder(tmp_path, monkeypatch):
    """With no source dir, 'ava_standin' generates its folder and prepares it with AVA's code."""
    # A small default folder keeps the test fast; the builder calls write_standin(out_dir).
    monkeypatch.setattr(
        ava_standin, "write_standin", functools.partial(ava_standin.write_standin, num_images=50)
    )
    builder = ava_standin.prepare_ava_standin(str(tmp_path / "data"))
    assert "STAND-IN" in builder.info.description
    splits = _read_all("ava_standin", str(tmp_path / "data"))
    assert len(splits["train"]) == 40 and len(splits["test"]) == 10
    source = tmp_path / "data" / "downloads" / "ava_standin_seed0"
    records = {r.image_id: r for r in ava.read_annotations(source / "AVA.txt")}
    for ex in splits["test"].values():
        np.testing.assert_array_equal(ex["counts"], records[int(ex["image_id"])].counts)
