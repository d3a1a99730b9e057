"""TFDS builders the catalog lacks, and opening any dataset's builder.

Importing this package registers the project's own builders with TFDS (by
class name, e.g. `FashionMnistLocal` -> `fashion_mnist_local`). Their data is
local, so `get_builder` prepares them on first use; catalog datasets such as
`imagenet2012` must be prepared beforehand with `tfds build`.

    python -m learned_resize.data.prepare --dataset=fashion_mnist_local
"""

from __future__ import annotations

import os
import time

import tensorflow_datasets as tfds
from absl import logging

from learned_resize.data.builders import ava, ava_standin, fashion_mnist

# Builders whose source files are on this machine: name -> builder class.
LOCAL_BUILDERS = {
    "fashion_mnist_local": fashion_mnist.FashionMnistLocal,
    "ava": ava.Ava,  # prepared from its manual dir (AVA.txt + images/)
    "ava_standin": ava_standin.AvaStandin,  # a labelled offline stand-in, NOT AVA (see docs/iqa.md)
}


def resolve_data_dir(data_dir: str | None) -> str:
    """Returns `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.expanduser(data_dir)


def base_name(name: str) -> str:
    """'fashion_mnist_local:1.0.0' -> 'fashion_mnist_local'."""
    return name.split(":", 1)[0].split("/", 1)[0]


def is_local(name: str) -> bool:
    """Whether `name` is built by this project from local files."""
    return base_name(name) in LOCAL_BUILDERS


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> float:
    """Builds one of the project's own datasets as array_record.

    Args:
      name: a key of LOCAL_BUILDERS, optionally with ':version'.
      data_dir: TFDS data dir (see resolve_data_dir).
      manual_dir: directory with the source files; None for the builder's default.

    Returns:
      Seconds spent preparing (0 if it was already prepared).
    """
    if not is_local(name):
        raise ValueError(
            f"Dataset {name!r} is not one of this project's builders {sorted(LOCAL_BUILDERS)}; "
            f"prepare catalog datasets with `tfds build {base_name(name)} "
            "--file_format=array_record`."
        )
    builder = tfds.builder(name, data_dir=resolve_data_dir(data_dir), source_dir=manual_dir)
    if builder.is_prepared():
        return 0.0
    logging.info("Preparing %s in %s (one time only).", name, builder.data_dir)
    start = time.perf_counter()
    tfds.disable_progress_bar()  # tqdm bars on stderr; these two log lines say it instead
    builder.download_and_prepare()
    seconds = time.perf_counter() - start
    logging.info("Prepared %s in %.1f s.", name, seconds)
    return seconds


def get_builder(name: str, data_dir: str | None = None, manual_dir: str | None = None):
    """Returns the TFDS builder for `name`, preparing the project's own datasets if needed.

    Catalog datasets are returned as they are; whether they are prepared is
    checked when their data source is opened.
    """
    data_dir = resolve_data_dir(data_dir)
    if is_local(name):
        prepare(name, data_dir, manual_dir)
        return tfds.builder(name, data_dir=data_dir, source_dir=manual_dir)
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"config.data.name={name!r} is neither a TFDS catalog dataset nor one of this "
            f"project's builders {sorted(LOCAL_BUILDERS)}."
        ) from e
