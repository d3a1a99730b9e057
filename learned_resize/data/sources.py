"""The data a config names: config.data options with defaults, and its TFDS sources.

Config keys read (config is the full ml_collections config):
  config.batch_size: global batch size; divisible by the process count.
  config.data.name: TFDS name: 'fashion_mnist_local' (built here from the
    Debian `dataset-fashion-mnist` files on first use) or a catalog dataset
    prepared as array_record, e.g. 'imagenet2012'.
  config.data.data_dir: TFDS data dir; default $TFDS_DATA_DIR, else ~/tensorflow_datasets.
  config.data.manual_dir: source files for our own builders (default
    /usr/share/datasets/fashion-mnist); for catalog datasets only named in the
    "how to prepare" message (default <data_dir>/downloads/manual).
  config.data.train_split: default 'train'. Slices such as 'train[:90%]' work.
  config.data.eval_split: default 'validation' if the dataset has it, else 'test'.
  config.data.channels: 1 (grayscale) or 3 (RGB); default 1 for Fashion-MNIST, else 3.
  config.data.crop: train crop, 'inception' (random-resized crop, default) or
    'none' (the eval resize + center crop).
  config.data.min_area: smallest crop area fraction of the inception crop (default 0.08).
  config.data.flip: random horizontal flips in training (default True).
  config.data.eval_crop_fraction: eval center crop / shorter side, in (0, 1]
    (default 0.875; use 1.0 to keep the whole image).
  config.data.num_workers: grain worker processes decoding and augmenting; 0 decodes in
    the training process; -1 (AUTO_WORKERS, the default) picks them from the host, see
    resolve_num_workers: the host's CPUs minus 2 on a TPU or GPU host, 0 on a CPU backend.
  config.data.jpeg_draft: decode JPEGs at a reduced DCT scale when the crop and output
    size allow it (default True; preprocessing.py says how and what it changes).
  config.data.prefetch: batches read ahead by threads in each process (default 4).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import ml_collections
import tensorflow_datasets as tfds

from learned_resize.config import defaults as defaults_lib
from learned_resize.data import builders as builders_lib

CROPS = ("inception", "none")
# config.data.num_workers = AUTO_WORKERS: chosen from the host's CPUs (resolve_num_workers).
AUTO_WORKERS = -1
# CPUs the auto setting leaves to the training process: its Python loop and the
# host-to-device copies, and its prefetch threads.
_RESERVED_CPUS = 2


class DatasetInfo(NamedTuple):
    num_train: int
    num_eval: int
    num_classes: int
    channels: int


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """config.data after defaults and validation."""

    name: str
    data_dir: str
    manual_dir: str | None
    train_split: str
    eval_split: str | None  # None: chosen from the dataset's splits.
    channels: int
    crop: str
    min_area: float
    flip: bool
    eval_crop_fraction: float
    num_workers: int  # >= 0 or AUTO_WORKERS.
    prefetch: int
    jpeg_draft: bool


def data_options(config) -> DataOptions:
    """Reads config.data; raises ValueError for bad values.

    Keys a (partial, e.g. a test's) config lacks take `defaults_lib.base_config()`'s value:
    that is the one place defaults live.
    """

    defaults = defaults_lib.base_config().data
    data = ml_collections.ConfigDict({**defaults.to_dict(), **config.data.to_dict()})
    name = config.data.get("name", None)  # no default: a dataset must be named
    if not name or not isinstance(name, str):
        raise ValueError("config.data.name is empty; set it to e.g. 'fashion_mnist_local'.")
    local = builders_lib.LOCAL_BUILDERS.get(builders_lib.base_name(name))
    # Not from the defaults: a config without it gets the dataset's own channel count.
    channels = config.data.get("channels", None) or (local.CHANNELS if local else 3)
    if channels not in (1, 3):
        raise ValueError(f"config.data.channels={channels!r}; use 1 (grayscale) or 3 (RGB).")
    crop = data["crop"]
    if crop not in CROPS:
        raise ValueError(f"config.data.crop={crop!r}; use one of {CROPS}.")
    min_area = float(data["min_area"])
    if not 0 < min_area <= 1:
        raise ValueError(f"config.data.min_area={min_area}; use a fraction in (0, 1].")
    fraction = float(data["eval_crop_fraction"])
    if not 0 < fraction <= 1:
        raise ValueError(f"config.data.eval_crop_fraction={fraction}; use a fraction in (0, 1].")
    num_workers = data["num_workers"]
    if not isinstance(num_workers, int) or num_workers < AUTO_WORKERS:
        raise ValueError(
            f"config.data.num_workers={num_workers!r}; use an integer >= 0, or -1 to pick it "
            "from the host's CPUs."
        )
    prefetch = data["prefetch"]
    if not isinstance(prefetch, int) or prefetch < 0:
        raise ValueError(f"config.data.prefetch={prefetch!r}; use an integer >= 0.")
    return DataOptions(
        name=name,
        data_dir=builders_lib.resolve_data_dir(data["data_dir"]),
        manual_dir=data["manual_dir"] or None,
        train_split=data["train_split"] or "train",
        eval_split=data["eval_split"] or None,
        channels=channels,
        crop=crop,
        min_area=min_area,
        flip=bool(data["flip"]),
        eval_crop_fraction=fraction,
        num_workers=num_workers,
        prefetch=prefetch,
        jpeg_draft=bool(data["jpeg_draft"]),
    )


def resolve_num_workers(
    num_workers: int, cpu_count: int | None = None, backend: str | None = None
) -> int:
    """config.data.num_workers with AUTO_WORKERS (-1) replaced by the host's share.

    Auto is max(0, cpu_count - 2) on a TPU or GPU backend: decoding and augmenting JPEGs
    costs 2-8 ms of a core per image (docs/scaling_estimate.md), so a pod host needs most of its
    cores to keep its chips fed; 2 stay with the training process (its loop and
    host-to-device copies, and the prefetch threads). On a CPU backend it is 0: the
    training step already uses every core, and worker processes would compete with it.

    Args:
      num_workers: config.data.num_workers.
      cpu_count: CPUs this process may use; default len(os.sched_getaffinity(0)).
      backend: default jax.default_backend().
    """
    if num_workers != AUTO_WORKERS:
        return num_workers
    backend = jax.default_backend() if backend is None else backend
    if backend == "cpu":
        return 0
    cpu_count = len(os.sched_getaffinity(0)) if cpu_count is None else cpu_count
    return max(0, cpu_count - _RESERVED_CPUS)


# ----------------------------------------------------------------------------
# Opening data sources.


def _not_prepared_message(opts: DataOptions) -> str:
    name = builders_lib.base_name(opts.name)
    manual_flag = f" --manual_dir={opts.manual_dir}" if opts.manual_dir else ""
    build = (
        f"`tfds build {name} --data_dir={opts.data_dir}{manual_flag} --file_format=array_record`"
    )
    if name == "imagenet2012":
        manual = opts.manual_dir or f"{opts.data_dir}/downloads/manual"
        return (
            f"imagenet2012 is not prepared in {opts.data_dir}: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {manual} and run {build} once (TensorFlow is needed "
            "only for that step)."
        )
    return (
        f"{name} is not prepared in {opts.data_dir}: run {build} once (TensorFlow is needed "
        "only for that step)."
    )


def eval_split(opts: DataOptions, builder) -> str:
    if opts.eval_split:
        return opts.eval_split
    splits = set(builder.info.splits)
    return "test" if "test" in splits and "validation" not in splits else "validation"


def open_source(opts: DataOptions, builder, split: str, key: str) -> Sequence[dict[str, Any]]:
    """Opens one split as a random-access source of {'image': bytes, 'label': int}."""
    try:
        source = builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    except Exception as e:  # TFDS raises assorted types; diagnose the user-fixable ones.
        if not builder.is_prepared():
            raise FileNotFoundError(_not_prepared_message(opts)) from e
        known = sorted(builder.info.splits)
        if known and split.split("[", 1)[0] not in known:
            raise ValueError(
                f"config.data.{key}={split!r} is not a split of {opts.name}; use one of {known}."
            ) from e
        file_format = builder.info.file_format
        if file_format != tfds.core.FileFormat.ARRAY_RECORD:
            raise ValueError(
                f"{opts.name} in {opts.data_dir} is stored as {file_format.value}, which grain "
                "cannot index; rebuild it with `tfds build --file_format=array_record`."
            ) from e
        raise
    if len(source) == 0:
        raise ValueError(f"config.data.{key}={split!r} of {opts.name} has no examples.")
    return source


def builder(opts: DataOptions):
    return builders_lib.get_builder(opts.name, opts.data_dir, opts.manual_dir)


def _num_classes(features) -> int:
    """Classes of a 'label' ClassLabel, or bins of a 'hist' score histogram (AVA)."""
    if "label" in features:
        return features["label"].num_classes
    return int(features["hist"].shape[-1])


def get_dataset_info(config) -> DatasetInfo:
    """Sizes, classes and channels of the configured dataset (prepares ours if needed)."""
    opts = data_options(config)
    tfds_builder = builder(opts)
    train = open_source(opts, tfds_builder, opts.train_split, "train_split")
    evaluation = open_source(opts, tfds_builder, eval_split(opts, tfds_builder), "eval_split")
    return DatasetInfo(
        num_train=len(train),
        num_eval=len(evaluation),
        num_classes=_num_classes(tfds_builder.info.features),
        channels=opts.channels,
    )
