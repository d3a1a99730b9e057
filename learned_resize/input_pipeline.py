"""Input pipeline: TFDS array_record data sources read with grain, no TensorFlow.

Images are stored as encoded bytes (PNG/JPEG) and decoded with PIL inside grain
(in worker processes when config.data.num_workers > 0).

Train: record indices -> shuffle(seed) -> repeat -> tag each element with its
GLOBAL index g -> this process's share [process_index::process_count] -> batch
-> read, decode and augment. Element g's augmentation rng is seeded by (seed, g)
alone, as grain's random_map would before sharding, so the union of the
processes' batches k is the 1-process global batch k. Reading happens per batch
rather than per element because array_record reads a batch of records in one
call ~40x faster than one record at a time (measured: ~1 ms per single read).
The dataset is indexable by batch, so resuming at step k is slicing [k:], not
replaying k batches.

Eval: no shuffle; the split is padded to a multiple of the global batch with
mask=0 examples, then sharded by process, so every example is counted exactly
once whatever the process count, and all processes run the same number of
batches.

Corrupt or undecodable images never crash a run. Train substitutes the next
decodable record (deterministically, so batches stay reproducible) and counts
the corrupt records skipped in `skipped`; eval gives them mask=0, skipped=1.

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
  config.data.num_workers: grain worker processes (default 0 = in-process).
  config.data.prefetch: batches read ahead by threads in each process (default 4).

Output batches: image uint8 [B_local, H, W, C], label int32, skipped int32, and
for eval mask float32 [B_local].
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import grain
import jax
import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from absl import flags

from learned_resize import aspect_ratio, datasets

CROPS = ("inception", "none")
# Aspect ratios (width / height) of the inception crop, sampled log-uniformly.
ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
# Tries at a random crop box before falling back to a central crop.
_CROP_ATTEMPTS = 10
# A run of this many undecodable records in a row means the data is broken, not noisy.
_MAX_CONSECUTIVE_CORRUPT = 100
# PIL resampling for every resize: bilinear, antialiased when shrinking.
_RESAMPLE = PIL.Image.Resampling.BILINEAR


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
    num_workers: int
    prefetch: int


def data_options(config) -> DataOptions:
    """Reads config.data with defaults; raises ValueError for bad values."""
    data = config.data
    name = data.get("name", None)
    if not name or not isinstance(name, str):
        raise ValueError("config.data.name is empty; set it to e.g. 'fashion_mnist_local'.")
    local = datasets.LOCAL_BUILDERS.get(datasets.base_name(name))
    channels = data.get("channels", None) or (local.CHANNELS if local else 3)
    if channels not in (1, 3):
        raise ValueError(f"config.data.channels={channels!r}; use 1 (grayscale) or 3 (RGB).")
    crop = data.get("crop", "inception")
    if crop not in CROPS:
        raise ValueError(f"config.data.crop={crop!r}; use one of {CROPS}.")
    min_area = float(data.get("min_area", 0.08))
    if not 0 < min_area <= 1:
        raise ValueError(f"config.data.min_area={min_area}; use a fraction in (0, 1].")
    fraction = float(data.get("eval_crop_fraction", 0.875))
    if not 0 < fraction <= 1:
        raise ValueError(f"config.data.eval_crop_fraction={fraction}; use a fraction in (0, 1].")
    num_workers = data.get("num_workers", 0)
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"config.data.num_workers={num_workers!r}; use an integer >= 0.")
    prefetch = data.get("prefetch", 4)
    if not isinstance(prefetch, int) or prefetch < 0:
        raise ValueError(f"config.data.prefetch={prefetch!r}; use an integer >= 0.")
    return DataOptions(
        name=name,
        data_dir=datasets.resolve_data_dir(data.get("data_dir", None)),
        manual_dir=data.get("manual_dir", None) or None,
        train_split=data.get("train_split", None) or "train",
        eval_split=data.get("eval_split", None) or None,
        channels=channels,
        crop=crop,
        min_area=min_area,
        flip=bool(data.get("flip", True)),
        eval_crop_fraction=fraction,
        num_workers=num_workers,
        prefetch=prefetch,
    )


# ----------------------------------------------------------------------------
# Opening data sources.


def _not_prepared_message(opts: DataOptions) -> str:
    name = datasets.base_name(opts.name)
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


def _eval_split(opts: DataOptions, builder) -> str:
    if opts.eval_split:
        return opts.eval_split
    splits = set(builder.info.splits)
    return "test" if "test" in splits and "validation" not in splits else "validation"


def _open_source(opts: DataOptions, builder, split: str, key: str) -> Sequence[dict[str, Any]]:
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


def _builder(opts: DataOptions):
    return datasets.get_builder(opts.name, opts.data_dir, opts.manual_dir)


def _num_classes(features) -> int:
    """Classes of a 'label' ClassLabel, or bins of a 'hist' score histogram (AVA)."""
    if "label" in features:
        return features["label"].num_classes
    return int(features["hist"].shape[-1])


def get_dataset_info(config) -> DatasetInfo:
    """Sizes, classes and channels of the configured dataset (prepares ours if needed)."""
    opts = data_options(config)
    builder = _builder(opts)
    train = _open_source(opts, builder, opts.train_split, "train_split")
    evaluation = _open_source(opts, builder, _eval_split(opts, builder), "eval_split")
    return DatasetInfo(
        num_train=len(train),
        num_eval=len(evaluation),
        num_classes=_num_classes(builder.info.features),
        channels=opts.channels,
    )


# ----------------------------------------------------------------------------
# Decoding and augmentation (pure functions of their inputs, tested directly).


def decode_image(data: bytes, channels: int) -> PIL.Image.Image | None:
    """Decodes PNG/JPEG/... bytes to a PIL image with 1 or 3 channels; None if corrupt."""
    if isinstance(data, np.ndarray):
        data = data.item()
    mode = "L" if channels == 1 else "RGB"
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()  # Decodes now, so truncated data fails here.
            return image if image.mode == mode else image.convert(mode)
    except Exception:  # PIL raises many types for corrupt data.
        return None


def to_array(image: PIL.Image.Image) -> np.ndarray:
    """PIL image -> uint8 [H, W, C]."""
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def sample_crop_box(
    rng: np.random.Generator, height: int, width: int, min_area: float
) -> tuple[int, int, int, int]:
    """Samples an Inception-style crop box (top, left, crop_height, crop_width).

    The box covers a uniform fraction in [min_area, 1] of the image area, with
    an aspect ratio log-uniform in ASPECT_RATIO_RANGE; after _CROP_ATTEMPTS
    draws that do not fit, it is the largest central box within that ratio range.
    """
    area = height * width
    log_low, log_high = np.log(ASPECT_RATIO_RANGE[0]), np.log(ASPECT_RATIO_RANGE[1])
    for _ in range(_CROP_ATTEMPTS):
        target_area = area * rng.uniform(min_area, 1.0)
        aspect = math.exp(rng.uniform(log_low, log_high))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    aspect = width / height
    if aspect < ASPECT_RATIO_RANGE[0]:
        crop_w, crop_h = width, min(height, round(width / ASPECT_RATIO_RANGE[0]))
    elif aspect > ASPECT_RATIO_RANGE[1]:
        crop_w, crop_h = min(width, round(height * ASPECT_RATIO_RANGE[1])), height
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def eval_preprocess(
    image: PIL.Image.Image, image_size: tuple[int, int], crop_fraction: float, aspect="square"
) -> np.ndarray:
    """Resizes the shorter side to image_size / crop_fraction, then center-crops image_size."""
    if aspect == "pad":  # Keeps the aspect ratio: see aspect_ratio.py.
        return aspect_ratio.eval_pad(image, image_size, crop_fraction)
    out_h, out_w = image_size
    # The side that needs the larger scale (the shorter one for a square output) is set to
    # its target size; the other follows the aspect ratio, but never falls below the crop.
    if out_h * image.width >= out_w * image.height:
        new_h = max(out_h, round(out_h / crop_fraction))
        new_w = max(out_w, round(image.width * new_h / image.height))
    else:
        new_w = max(out_w, round(out_w / crop_fraction))
        new_h = max(out_h, round(image.height * new_w / image.width))
    if (new_h, new_w) != (image.height, image.width):
        image = image.resize((new_w, new_h), _RESAMPLE)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return to_array(image)[top : top + out_h, left : left + out_w]


def train_preprocess(
    image: PIL.Image.Image,
    rng: np.random.Generator,
    *,
    image_size: tuple[int, int],
    crop: str,
    min_area: float,
    flip: bool,
    eval_crop_fraction: float,
    aspect: str = "square",
) -> np.ndarray:
    """Random-resized crop (or the eval crop) to image_size, then a random flip."""
    if crop == "inception":
        top, left, crop_h, crop_w = sample_crop_box(rng, image.height, image.width, min_area)
        # Crop first so the resize filter sees only the box, as in the reference recipe.
        image = image.crop((left, top, left + crop_w, top + crop_h))
        if image.size != (image_size[1], image_size[0]) and aspect != "pad":
            image = image.resize((image_size[1], image_size[0]), _RESAMPLE)
        array = (
            to_array(image) if aspect != "pad" else aspect_ratio.fit_and_pad(image, image_size)[0]
        )
    else:
        array = eval_preprocess(image, image_size, eval_crop_fraction, aspect)
    if flip and rng.random() < 0.5:
        array = array[:, ::-1]  # A view: the batch's np.stack makes the copy.
    return array


def augmentation_rng(seed: int, global_index: int) -> np.random.Generator:
    """The rng that augments element `global_index` (its position in the endless stream)."""
    return np.random.default_rng((seed, global_index))


def _read_records(source, indices: Sequence[int]) -> list[dict[str, Any]]:
    """Reads records with one batched call where the source has one."""
    indices = [int(i) for i in indices]
    if hasattr(source, "__getitems__"):
        # One array_record read for the batch: single-record reads cost ~1 ms each.
        return list(source.__getitems__(indices))
    return [source[i] for i in indices]


# Per-example targets a record may carry: class labels, or AVA-style score histograms.
_TARGETS = {"label": np.int32, "hist": np.float32}


def _targets(record) -> dict[str, np.ndarray]:
    return {k: np.asarray(record[k], dtype) for k, dtype in _TARGETS.items() if k in record}


def _first_decodable(source, index: int, record, channels: int):
    """Returns (image, targets, skipped): the first decodable record from `index` on."""
    size = len(source)
    for skipped in range(min(size, _MAX_CONSECUTIVE_CORRUPT)):
        if skipped:
            record = source[(index + skipped) % size]
        image = decode_image(record["image"], channels)
        if image is not None:
            return image, _targets(record), skipped
    raise ValueError(
        f"{min(size, _MAX_CONSECUTIVE_CORRUPT)} records in a row from index {index} cannot be "
        "decoded as images; rebuild the dataset."
    )


def _tag_global_index(global_index: int, record_index: int) -> dict[str, int]:
    return {"global_index": global_index, "record_index": record_index}


@dataclasses.dataclass(frozen=True)
class _TrainBatchTransform(grain.transforms.Map):
    """Batch of (global index, record index) -> batch of augmented examples."""

    source: Any
    seed: int
    image_size: tuple[int, int]
    channels: int
    crop: str
    min_area: float
    flip: bool
    eval_crop_fraction: float
    aspect: str = "square"

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = _read_records(self.source, batch["record_index"])
        images, targets, skipped = [], [], []
        for global_index, index, record in zip(
            batch["global_index"], batch["record_index"], records
        ):
            image, target, skip = _first_decodable(self.source, int(index), record, self.channels)
            images.append(
                train_preprocess(
                    image,
                    augmentation_rng(self.seed, int(global_index)),
                    image_size=self.image_size,
                    crop=self.crop,
                    min_area=self.min_area,
                    flip=self.flip,
                    eval_crop_fraction=self.eval_crop_fraction,
                    aspect=self.aspect,
                )
            )
            targets.append(target)
            skipped.append(skip)
        return {
            "image": np.stack(images),
            **{k: np.stack([t[k] for t in targets]) for k in targets[0]},
            "skipped": np.asarray(skipped, np.int32),
        }


@dataclasses.dataclass(frozen=True)
class _EvalBatchTransform(grain.transforms.Map):
    """Batch of padded indices -> examples with mask; indices past the split are padding."""

    source: Any
    num_examples: int
    image_size: tuple[int, int]
    channels: int
    crop_fraction: float
    aspect: str = "square"

    def map(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        size = len(indices)
        (real,) = np.nonzero(indices < self.num_examples)
        records = _read_records(self.source, indices[real])
        # Padding rows get zero targets shaped like a real record's.
        example = _targets(records[0] if records else self.source[0])
        out = {
            "image": np.zeros((size, *self.image_size, self.channels), np.uint8),
            **{k: np.zeros((size, *v.shape), v.dtype) for k, v in example.items()},
            "mask": np.zeros(size, np.float32),
            "skipped": np.zeros(size, np.int32),
        }
        for row, record in zip(real, records):
            for k, v in _targets(record).items():
                out[k][row] = v
            image = decode_image(record["image"], self.channels)
            if image is None:
                out["skipped"][row] = 1
                continue
            out["image"][row] = eval_preprocess(
                image, self.image_size, self.crop_fraction, self.aspect
            )
            out["mask"][row] = 1.0
        return out


# ----------------------------------------------------------------------------
# Iterators.


def _image_size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int | np.integer) and s > 0 for s in size):
        raise ValueError(f"image_size={image_size!r}; use a positive int or (height, width).")
    return int(size[0]), int(size[1])


def _process_share(config, process_index, process_count) -> tuple[int, int, int]:
    """Returns (process_index, process_count, local batch size), validated."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is outside [0, {process_count}).")
    batch_size = config.batch_size
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"config.batch_size={batch_size!r}; use a positive integer.")
    if batch_size % process_count:
        raise ValueError(
            f"config.batch_size={batch_size} is not divisible by the {process_count} processes; "
            "use a multiple of the process count."
        )
    return process_index, process_count, batch_size // process_count


def _to_iter_dataset(ds: grain.MapDataset, opts: DataOptions) -> grain.IterDataset:
    read_options = grain.ReadOptions(num_threads=opts.prefetch, prefetch_buffer_size=opts.prefetch)
    iter_ds = ds.to_iter_dataset(read_options)
    if opts.num_workers:
        if not flags.FLAGS.is_parsed():
            # grain's worker processes read absl flags; outside an absl app (tests,
            # notebooks) nothing parsed them, so accept their defaults.
            flags.FLAGS.mark_as_parsed()
        iter_ds = iter_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=opts.num_workers, per_worker_buffer_size=max(1, opts.prefetch)
            )
        )
    return iter_ds


def create_train_iterator(
    config,
    *,
    image_size,
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
):
    """Endless iterator of this process's training batches.

    Args:
      config: the full config (config.batch_size and config.data.*; see module docstring).
      image_size: output size, int or (height, width): the resizer's input size.
      seed: shuffling and augmentation seed; batch k depends only on (seed, k).
      start_step: index of the first batch; resuming at step k gives the same
        batches as starting at 0 and dropping k.
      process_index: this process; default jax.process_index().
      process_count: number of processes; default jax.process_count().

    Returns:
      Iterator of dict(image=uint8 [B_local, H, W, C], label=int32 [B_local],
      skipped=int32 [B_local]), B_local = config.batch_size // process_count.
    """
    opts = data_options(config)
    image_size = _image_size(image_size)
    process_index, process_count, local_batch = _process_share(config, process_index, process_count)
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r}; use a non-negative integer.")
    if not isinstance(start_step, int | np.integer) or start_step < 0:
        raise ValueError(f"start_step={start_step!r}; use a non-negative integer.")
    source = _open_source(opts, _builder(opts), opts.train_split, "train_split")
    # Independent streams for the permutation and the augmentation.
    shuffle_seed, augment_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    transform = _TrainBatchTransform(
        source=source,
        seed=augment_seed,
        image_size=image_size,
        channels=opts.channels,
        crop=opts.crop,
        min_area=opts.min_area,
        flip=opts.flip,
        eval_crop_fraction=opts.eval_crop_fraction,
        aspect=config.data.get("aspect", "square"),
    )
    # Element g of the endless stream is record order[g mod n] of epoch g // n. Tagging it
    # with g before sharding lets its augmentation depend on g alone, so any process
    # count produces the same global batches.
    ds = grain.MapDataset.range(len(source)).shuffle(seed=shuffle_seed).repeat()
    ds = ds.map_with_index(_tag_global_index)
    ds = ds[process_index::process_count].batch(local_batch, drop_remainder=True)
    # Reading, decoding and augmenting per batch: it allows one batched record read.
    ds = ds[int(start_step) :].map(transform)
    return iter(_to_iter_dataset(ds, opts))


def create_eval_iterator(
    config,
    *,
    image_size,
    process_index: int | None = None,
    process_count: int | None = None,
) -> tuple[grain.IterDataset, int]:
    """This process's eval batches, padded so every example is counted once.

    Args:
      config: the full config (config.batch_size and config.data.*).
      image_size: output size, int or (height, width).
      process_index: this process; default jax.process_index().
      process_count: number of processes; default jax.process_count().

    Returns:
      (iterable, num_batches): iterating yields num_batches dicts of image uint8
      [B_local, H, W, C], label int32, mask float32 (0 for padding and corrupt
      images) and skipped int32 (1 for corrupt images); it can be iterated again.
    """
    opts = data_options(config)
    image_size = _image_size(image_size)
    process_index, process_count, local_batch = _process_share(config, process_index, process_count)
    builder = _builder(opts)
    source = _open_source(opts, builder, _eval_split(opts, builder), "eval_split")
    global_batch = local_batch * process_count
    num_batches = -(-len(source) // global_batch)
    transform = _EvalBatchTransform(
        source=source,
        num_examples=len(source),
        image_size=image_size,
        channels=opts.channels,
        crop_fraction=opts.eval_crop_fraction,
        aspect=config.data.get("aspect", "square"),
    )
    ds = grain.MapDataset.range(num_batches * global_batch)
    ds = ds[process_index::process_count].batch(local_batch, drop_remainder=True).map(transform)
    return _to_iter_dataset(ds, opts), num_batches
