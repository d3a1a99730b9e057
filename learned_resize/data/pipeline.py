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

config.data's keys and defaults: learned_resize/config/defaults.py; the dataset's
builder, splits and options: learned_resize/data/sources.py.

Output batches: image uint8 [B_local, H, W, C], label int32, skipped int32, and
for eval mask float32 [B_local].
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from learned_resize.data import aspect_ratio, preprocessing
from learned_resize.data import sources as sources_lib

# A run of this many undecodable records in a row means the data is broken, not noisy.
_MAX_CONSECUTIVE_CORRUPT = 100


# ----------------------------------------------------------------------------
# Decoding and augmentation live in learned_resize/data/preprocessing.py; these names stay
# importable from here.

decode_image = preprocessing.decode_image
to_array = preprocessing.to_array
sample_crop_box = preprocessing.sample_crop_box
eval_preprocess = preprocessing.eval_preprocess
train_preprocess = preprocessing.train_preprocess


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


def _first_decodable(source, index: int, record, preprocess):
    """Returns (array, targets, skipped): the first record from `index` on that
    `preprocess` (bytes -> array, or None if corrupt) can decode."""
    size = len(source)
    for skipped in range(min(size, _MAX_CONSECUTIVE_CORRUPT)):
        if skipped:
            record = source[(index + skipped) % size]
        array = preprocess(record["image"])
        if array is not None:
            return array, _targets(record), skipped
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
    jpeg_draft: bool
    aspect: str = "square"

    def _preprocess(self, data: bytes, global_index: int) -> np.ndarray | None:
        pad = self.aspect == "pad"  # Keeps the aspect ratio: see aspect_ratio.py.
        return (aspect_ratio.decode_train_pad if pad else preprocessing.decode_train_example)(
            data,
            # A fresh rng for each record tried, so a substitute is augmented as if first.
            augmentation_rng(self.seed, global_index),
            channels=self.channels,
            image_size=self.image_size,
            crop=self.crop,
            min_area=self.min_area,
            flip=self.flip,
            eval_crop_fraction=self.eval_crop_fraction,
            reduced=self.jpeg_draft,
        )

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = _read_records(self.source, batch["record_index"])
        images, targets, skipped = [], [], []
        for global_index, index, record in zip(
            batch["global_index"], batch["record_index"], records
        ):
            preprocess = functools.partial(self._preprocess, global_index=int(global_index))
            image, target, skip = _first_decodable(self.source, int(index), record, preprocess)
            images.append(image)
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
    jpeg_draft: bool
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
            pad = self.aspect == "pad"  # Keeps the aspect ratio: see aspect_ratio.py.
            image = (aspect_ratio.decode_eval_pad if pad else preprocessing.decode_eval_example)(
                record["image"], self.channels, self.image_size, self.crop_fraction, self.jpeg_draft
            )
            if image is None:
                out["skipped"][row] = 1
                continue
            out["image"][row] = image
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


def _to_iter_dataset(ds: grain.MapDataset, opts: sources_lib.DataOptions) -> grain.IterDataset:
    read_options = grain.ReadOptions(num_threads=opts.prefetch, prefetch_buffer_size=opts.prefetch)
    iter_ds = ds.to_iter_dataset(read_options)
    num_workers = sources_lib.resolve_num_workers(opts.num_workers)
    if num_workers:
        if not flags.FLAGS.is_parsed():
            # grain's worker processes read absl flags; outside an absl app (tests,
            # notebooks) nothing parsed them, so accept their defaults.
            flags.FLAGS.mark_as_parsed()
        iter_ds = iter_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=num_workers, per_worker_buffer_size=max(1, opts.prefetch)
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
    opts = sources_lib.data_options(config)
    image_size = _image_size(image_size)
    process_index, process_count, local_batch = _process_share(config, process_index, process_count)
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r}; use a non-negative integer.")
    if not isinstance(start_step, int | np.integer) or start_step < 0:
        raise ValueError(f"start_step={start_step!r}; use a non-negative integer.")
    source = sources_lib.open_source(
        opts, sources_lib.builder(opts), opts.train_split, "train_split"
    )
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
        jpeg_draft=opts.jpeg_draft,
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
    opts = sources_lib.data_options(config)
    image_size = _image_size(image_size)
    process_index, process_count, local_batch = _process_share(config, process_index, process_count)
    builder = sources_lib.builder(opts)
    source = sources_lib.open_source(
        opts, builder, sources_lib.eval_split(opts, builder), "eval_split"
    )
    global_batch = local_batch * process_count
    num_batches = -(-len(source) // global_batch)
    transform = _EvalBatchTransform(
        source=source,
        num_examples=len(source),
        image_size=image_size,
        channels=opts.channels,
        crop_fraction=opts.eval_crop_fraction,
        jpeg_draft=opts.jpeg_draft,
        aspect=config.data.get("aspect", "square"),
    )
    ds = grain.MapDataset.range(num_batches * global_batch)
    ds = ds[process_index::process_count].batch(local_batch, drop_remainder=True).map(transform)
    return _to_iter_dataset(ds, opts), num_batches
