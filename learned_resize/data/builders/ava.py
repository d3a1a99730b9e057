"""AVA (Aesthetic Visual Analysis) as a TFDS array_record dataset built from its manual dir.

AVA (Murray, Marchesotti & Perronnin, CVPR 2012) holds about 255,000 photos
from dpchallenge.com, each with the votes of ~200 people over the scores 1..10.
It is not in the TFDS catalog and cannot be downloaded automatically, so this
builder reads a manual directory laid out as the AVA release is:

    <source dir>/AVA.txt           (or <source dir>/AVA_dataset/AVA.txt)
    <source dir>/images/<id>.jpg   (or images/ next to AVA.txt)
    <source dir>/aesthetics_image_lists/generic_test.jpgl   (optional, see splits)
    <source dir>/test_ids.txt      (optional, see splits)

Every line of AVA.txt is `index image_id c1 ... c10 tag1 tag2 challenge`: the
vote counts for the scores 1..10, two semantic tag ids (0 = none) and the
photo challenge's id.

Splits ('train' and 'test'), chosen from the annotations alone so they do not
depend on which image files happen to be present, and recorded in the prepare
log and in the dataset's metadata (`info.metadata['split_source']`):
1. `test_ids.txt` in the source dir (one image id per line): an explicit list.
2. Otherwise `aesthetics_image_lists/generic_test.jpgl`, the standard test list
   shipped with AVA (19,930 ids) that most AVA papers report on; every other
   image of AVA.txt is training data.
3. Otherwise a NIMA-style random split (Talebi & Milanfar 2018, same authors as
   the resizer paper): 20% test. "Random" is a hash of the image id with a fixed
   seed, so it is identical on every machine and numpy version.

Images that are missing, cannot be fully decoded by PIL, or carry no votes are
skipped; the counts are logged in one summary line per split and saved in
`info.metadata['skipped']`. The original encoded bytes are stored (no
re-encoding) in a `tfds.features.Tensor(shape=(), dtype=object)` feature named
'image', because `tfds.features.Image` needs TensorFlow to encode; decode with
PIL (and `.convert('RGB')`: AVA has a few grayscale and CMYK JPEGs).

Prepare it once (about 32 GB of JPEGs to read and decode-check):

    python -c "from learned_resize.data.builders import ava; ava.prepare_ava('/path/AVA', None)"
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import os
from collections.abc import Iterator

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from absl import logging

from learned_resize.data.builders import source_file

NUM_BINS = 10
ANNOTATIONS_FILE = "AVA.txt"
IMAGES_DIR = "images"
TEST_IDS_FILE = "test_ids.txt"
STANDARD_TEST_LIST = os.path.join("aesthetics_image_lists", "generic_test.jpgl")
# NIMA-style random split used when the source dir has no test list.
RANDOM_TEST_FRACTION = 0.2
RANDOM_SPLIT_SEED = "learned_resize-ava-split-v1"
# Skip reasons reported in the log and the metadata.
SKIP_REASONS = ("missing", "undecodable", "no_votes", "duplicate")

_FIELDS_PER_LINE = 3 + NUM_BINS + 2  # index, id, 10 counts, 2 tags, challenge


def manual_dir_message(source_dir: str | os.PathLike, dataset: str = "ava") -> str:
    """The one sentence said when the AVA source files are not where they should be."""
    return (
        f"No {ANNOTATIONS_FILE} found in {source_dir}: download the AVA dataset "
        f"({ANNOTATIONS_FILE} plus the {IMAGES_DIR}/ folder of <id>.jpg files; Murray et al., "
        f"CVPR 2012) and put it in <data_dir>/downloads/manual/{dataset} or point "
        "config.data.manual_dir at it."
    )


@dataclasses.dataclass(frozen=True)
class AvaRecord:
    """One line of AVA.txt."""

    image_id: int
    counts: tuple[int, ...]
    tags: tuple[int, int]
    challenge: int


def read_annotations(path: str | os.PathLike) -> list[AvaRecord]:
    """Parses AVA.txt, in file order.

    Args:
      path: the AVA.txt file.

    Returns:
      One record per non-empty line.
    """
    records = []
    with open(path) as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                values = [int(v) for v in fields]
            except ValueError:
                values = []
            if len(values) != _FIELDS_PER_LINE or min(values[2 : 2 + NUM_BINS]) < 0:
                raise ValueError(
                    f"{path} line {line_number} is not 'index image_id c1..c10 tag1 tag2 "
                    f"challenge' ({_FIELDS_PER_LINE} non-negative integers); fix or remove it."
                )
            records.append(
                AvaRecord(
                    image_id=values[1],
                    counts=tuple(values[2 : 2 + NUM_BINS]),
                    tags=(values[2 + NUM_BINS], values[3 + NUM_BINS]),
                    challenge=values[4 + NUM_BINS],
                )
            )
    return records


def _read_id_list(path: str | os.PathLike) -> set[int]:
    """Image ids, one per line (blank lines and '#' comments ignored)."""
    ids = set()
    with open(path) as f:
        for line_number, line in enumerate(f, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                ids.add(int(text.split()[0]))
            except ValueError:
                raise ValueError(
                    f"{path} line {line_number} is not an integer image id; list one id per line."
                ) from None
    return ids


def _hash_rank(image_id: int) -> bytes:
    return hashlib.sha256(f"{RANDOM_SPLIT_SEED}:{image_id}".encode()).digest()


def random_test_ids(image_ids, test_fraction: float = RANDOM_TEST_FRACTION) -> set[int]:
    """A seeded random test subset of round(test_fraction * n) ids, independent of their order."""
    unique = sorted(set(image_ids))
    num_test = int(round(test_fraction * len(unique)))
    return set(sorted(unique, key=_hash_rank)[:num_test])


def choose_test_ids(source_dir: str | os.PathLike, image_ids) -> tuple[set[int], str]:
    """The test split's image ids and a description of where they came from (see module doc)."""
    explicit = os.path.join(source_dir, TEST_IDS_FILE)
    if os.path.exists(explicit):
        return _read_id_list(explicit), f"explicit list {explicit}"
    for base in (source_dir, os.path.join(source_dir, "AVA_dataset")):
        standard = os.path.join(base, STANDARD_TEST_LIST)
        if os.path.exists(standard):
            return _read_id_list(standard), f"standard AVA test list {standard}"
    return (
        random_test_ids(image_ids),
        f"random {RANDOM_TEST_FRACTION:.0%} test split (sha256 of id, seed {RANDOM_SPLIT_SEED!r})",
    )


def find_annotations(source_dir: str | os.PathLike) -> tuple[str, str] | None:
    """(AVA.txt path, images dir) in `source_dir`, or None when AVA.txt is not there."""
    for base in (source_dir, os.path.join(source_dir, "AVA_dataset")):
        annotations = os.path.join(base, ANNOTATIONS_FILE)
        if os.path.isfile(annotations):
            images = os.path.join(base, IMAGES_DIR)
            if not os.path.isdir(images):
                images = os.path.join(source_dir, IMAGES_DIR)
            return annotations, images
    return None


def load_checked_image(path: str) -> tuple[bytes, int, int] | None:
    """Reads an image file and fully decodes it; (bytes, height, width), None if unusable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        with PIL.Image.open(io.BytesIO(data)) as image:
            # load() decodes every pixel, so truncated files fail here rather than in
            # the middle of training.
            image.load()
            width, height = image.size
    except (OSError, ValueError, PIL.Image.DecompressionBombError):
        return None
    return data, height, width


def _counts_to_hist_and_mean(counts) -> tuple[np.ndarray, float]:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    hist = counts / total
    return hist.astype(np.float32), float(hist @ np.arange(1, NUM_BINS + 1))


class Ava(tfds.core.GeneratorBasedBuilder):
    """AVA aesthetic scores (vote histograms over 1..10) from the manual dir."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: JPEG bytes, vote histograms, standard split."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the AVA dataset (AVA.txt and the images/ folder of <id>.jpg files; optionally "
        "aesthetics_image_lists/) and put it in <data_dir>/downloads/manual/ava, or pass its "
        "directory as config.data.manual_dir."
    )
    # The input pipeline reads this to default config.data.channels.
    CHANNELS = 3
    _DESCRIPTION = (
        "AVA (Murray et al., CVPR 2012): ~255k photos with their distribution of 1..10 "
        "aesthetic votes."
    )

    code_path = source_file.code_path(__file__)  # (TFDS 4.9.10 cannot find it itself)

    def __init__(self, *, source_dir: str | None = None, **kwargs):
        """Creates the builder.

        Args:
          source_dir: the AVA directory (see module doc). Defaults to the download
            config's manual_dir, then <data_dir>/downloads/manual/<name>.
          **kwargs: passed to `tfds.core.GeneratorBasedBuilder` (data_dir, ...).
        """
        kwargs.setdefault("file_format", "array_record")
        self._source_dir = source_dir or None
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=self._DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    # Encoded JPEG bytes as found in the source dir.
                    "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                    "image_id": tfds.features.Tensor(shape=(), dtype=np.int64),
                    "hist": tfds.features.Tensor(shape=(NUM_BINS,), dtype=np.float32),
                    "mean_score": tfds.features.Tensor(shape=(), dtype=np.float32),
                    "counts": tfds.features.Tensor(shape=(NUM_BINS,), dtype=np.int32),
                    "tags": tfds.features.Tensor(shape=(2,), dtype=np.int32),
                    "challenge": tfds.features.Tensor(shape=(), dtype=np.int32),
                    "height": tfds.features.Tensor(shape=(), dtype=np.int32),
                    "width": tfds.features.Tensor(shape=(), dtype=np.int32),
                }
            ),
            homepage="https://doi.org/10.1109/CVPR.2012.6247954",
            metadata=tfds.core.MetadataDict(),
        )

    def _candidate_source_dirs(self, dl_manager) -> list[str]:
        if self._source_dir:
            return [os.fspath(self._source_dir)]
        try:
            manual = os.fspath(dl_manager.manual_dir)
        except AssertionError:  # TFDS's way of saying the manual dir is absent or empty.
            # Still name the expected path in the error (TFDS has no public getter for it).
            manual = os.fspath(
                getattr(dl_manager, "_manual_dir", None)
                or os.path.join(dl_manager.download_dir, "manual")
            )
            return [os.path.join(manual, self.name)]
        # The name subfolder first, so one manual dir can hold several datasets.
        return [os.path.join(manual, self.name), manual]

    def _source_files(self, dl_manager) -> tuple[str, str, str]:
        """(source dir, AVA.txt, images dir); raises FileNotFoundError with what to do."""
        candidates = self._candidate_source_dirs(dl_manager)
        for source_dir in candidates:
            found = find_annotations(source_dir)
            if found:
                return (source_dir, *found)
        raise FileNotFoundError(manual_dir_message(candidates[0], self.name))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        source_dir, annotations, images_dir = self._source_files(dl_manager)
        records = read_annotations(annotations)
        test_ids, split_source = choose_test_ids(source_dir, [r.image_id for r in records])
        unknown = len(test_ids - {r.image_id for r in records})
        logging.info(
            "%s: %d annotations in %s; split from %s%s.",
            self.name,
            len(records),
            annotations,
            split_source,
            f" ({unknown} listed test ids are not in {ANNOTATIONS_FILE})" if unknown else "",
        )
        self.info.metadata["split_source"] = split_source
        self.info.metadata["skipped"] = {}
        return {
            "train": self._generate_examples(
                "train", [r for r in records if r.image_id not in test_ids], images_dir
            ),
            "test": self._generate_examples(
                "test", [r for r in records if r.image_id in test_ids], images_dir
            ),
        }

    def _generate_examples(
        self, split: str, records: list[AvaRecord], images_dir: str
    ) -> Iterator[tuple[int, dict]]:
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        seen = set()
        usable = []
        for record in records:
            if record.image_id in seen:
                skipped["duplicate"] += 1
            elif sum(record.counts) == 0:
                skipped["no_votes"] += 1
            else:
                usable.append(record)
            seen.add(record.image_id)

        def load(record: AvaRecord):
            path = os.path.join(images_dir, f"{record.image_id}.jpg")
            if not os.path.exists(path):
                return "missing"
            return load_checked_image(path) or "undecodable"

        written = 0
        # Decoding dominates preparation and PIL releases the GIL while decoding,
        # so threads check images in parallel; windows bound the bytes held in memory.
        window = 256
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for start in range(0, len(usable), window):
                chunk = usable[start : start + window]
                for record, loaded in zip(chunk, pool.map(load, chunk)):
                    if isinstance(loaded, str):
                        skipped[loaded] += 1
                        continue
                    data, height, width = loaded
                    hist, mean = _counts_to_hist_and_mean(record.counts)
                    written += 1
                    yield (
                        record.image_id,
                        {
                            "image": data,
                            "image_id": record.image_id,
                            "hist": hist,
                            "mean_score": np.float32(mean),
                            "counts": np.asarray(record.counts, np.int32),
                            "tags": np.asarray(record.tags, np.int32),
                            "challenge": record.challenge,
                            "height": height,
                            "width": width,
                        },
                    )
        self.info.metadata["skipped"][split] = skipped
        logging.info(
            "%s %s: wrote %d of %d images; skipped %d (%s).",
            self.name,
            split,
            written,
            len(records),
            sum(skipped.values()),
            ", ".join(f"{k} {v}" for k, v in skipped.items()),
        )


def prepare_ava(
    manual_dir: str | None, data_dir: str | None, *, name: str = "ava"
) -> tfds.core.DatasetBuilder:
    """Prepares AVA (or a dataset of the same format, e.g. 'ava_standin') as array_record.

    Args:
      manual_dir: the AVA directory (AVA.txt + images/); None for
        <data_dir>/downloads/manual/<name>.
      data_dir: TFDS data dir; None for $TFDS_DATA_DIR or ~/tensorflow_datasets.
      name: the registered builder name.

    Returns:
      The prepared builder; read it with `tfds.data_source(name, data_dir=...)`.
    """
    builder = tfds.builder(name, data_dir=data_dir, source_dir=manual_dir)
    builder.download_and_prepare()
    return builder
