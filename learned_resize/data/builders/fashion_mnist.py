"""Fashion-MNIST as a TFDS array_record dataset built from local idx files.

The Debian package `dataset-fashion-mnist` installs the original gzip idx
files in /usr/share/datasets/fashion-mnist/, so the project's default dataset
needs no network. The builder reads them with numpy (checking magic numbers
and sizes), encodes every image as PNG bytes with PIL and writes the `train`
(60,000) and `test` (10,000) splits as array_record.

Images are stored as encoded bytes in a `tfds.features.Tensor` of dtype object
rather than `tfds.features.Image`, because the latter needs TensorFlow to
encode; the input pipeline decodes them with PIL.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from learned_resize.data.builders import source_file

DEFAULT_SOURCE_DIR = "/usr/share/datasets/fashion-mnist"

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# idx magic numbers: two zero bytes, type code 0x08 (unsigned byte), number of dims.
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801

# split name -> (images file stem, labels file stem); the real files hold 60,000 and 10,000.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _open_idx(source_dir: str, stem: str):
    """Opens `<stem>.gz` (or the uncompressed `<stem>`) in `source_dir`."""
    gz_path = os.path.join(source_dir, stem + ".gz")
    if os.path.exists(gz_path):
        return gzip.open(gz_path, "rb")
    plain_path = os.path.join(source_dir, stem)
    if os.path.exists(plain_path):
        return open(plain_path, "rb")  # The caller closes it.
    raise FileNotFoundError(
        f"Fashion-MNIST file {gz_path} is missing: install it with "
        "`apt-get install dataset-fashion-mnist` or set config.data.manual_dir "
        "to a directory holding the four idx .gz files."
    )


def read_idx(source_dir: str, stem: str, expected_magic: int) -> np.ndarray:
    """Reads an idx file of unsigned bytes into a numpy array, checking its header.

    Args:
      source_dir: the directory holding `<stem>.gz` (or `<stem>`).
      stem: file name without `.gz`.
      expected_magic: 0x00000803 for images [N, H, W], 0x00000801 for labels [N].

    Returns:
      uint8 array with the shape stored in the header.
    """
    with _open_idx(source_dir, stem) as f:
        data = f.read()
    name = os.path.join(source_dir, stem)
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected_magic:
        raise ValueError(
            f"{name} starts with magic number {magic!r}, expected {expected_magic:#010x}; "
            "it is not a Fashion-MNIST idx file."
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data[4:header_size], dtype=">u4"))
    if len(shape) != ndim or len(data) - header_size != int(np.prod(shape)):
        raise ValueError(
            f"{name} holds {len(data) - header_size} data bytes but its header says shape "
            f"{shape}; the file is truncated or corrupt."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def load_split(source_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split as (images uint8 [N, H, W], labels uint8 [N]), validated."""
    images_stem, labels_stem = SPLIT_FILES[split]
    images = read_idx(source_dir, images_stem, _IMAGES_MAGIC)
    labels = read_idx(source_dir, labels_stem, _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split} split in {source_dir} has {len(images)} images but "
            f"{len(labels)} labels; the files do not belong together."
        )
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise ValueError(
            f"Fashion-MNIST {split} labels in {source_dir} go up to {int(labels.max())}, "
            f"expected fewer than {len(CLASS_NAMES)} classes."
        )
    return images, labels


def encode_png(image: np.ndarray) -> bytes:
    """Encodes a uint8 [H, W] grayscale image as PNG bytes."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST read from local idx files, images stored as PNG bytes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: PNG bytes in 'image', ClassLabel 'label'."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Install the Debian package `dataset-fashion-mnist` (files land in "
        f"{DEFAULT_SOURCE_DIR}) or put the four Fashion-MNIST idx .gz files in the manual dir."
    )
    # The input pipeline reads this to default config.data.channels.
    CHANNELS = 1

    code_path = source_file.code_path(__file__)  # (TFDS 4.9.10 cannot find it itself)

    def __init__(self, *, source_dir: str | None = None, **kwargs):
        """Creates the builder.

        Args:
          source_dir: directory with the idx files; defaults to the Debian package's.
          **kwargs: passed to `tfds.core.GeneratorBasedBuilder` (data_dir, ...).
        """
        kwargs.setdefault("file_format", "array_record")
        self._source_dir = source_dir or DEFAULT_SOURCE_DIR
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Fashion-MNIST (Xiao et al. 2017): 28x28 grayscale clothing images.",
            features=tfds.features.FeaturesDict(
                {
                    # PNG bytes; tfds.features.Image would need TensorFlow to encode.
                    "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                }
            ),
            supervised_keys=("image", "label"),
            # Keep the idx files' order, so record i is image i of the original files.
            disable_shuffling=True,
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Everything is local.
        if not os.path.isdir(self._source_dir):
            raise FileNotFoundError(
                f"Fashion-MNIST directory {self._source_dir} does not exist: install it with "
                "`apt-get install dataset-fashion-mnist` or set config.data.manual_dir."
            )
        return {split: self._generate_examples(split) for split in SPLIT_FILES}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        images, labels = load_split(self._source_dir, split)
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": encode_png(image), "label": int(label)}
