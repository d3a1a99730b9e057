r"""Images/s of the training input pipeline on ImageNet-like JPEGs: full vs reduced decode.

    python bench/pipeline_lib.py                    # 224 px crops, 0 and 2 workers
    python bench/pipeline_lib.py --size=448 --workers=0,1

Writes `--num_images` JPEGs of about 500x375 (ImageNet's typical size and
quality) cut from the photos that ship in the scikit-image wheel into a
temporary TFDS array_record dataset, then runs the project's own training
iterator (`pipeline_lib.create_train_iterator`: batched record read, PIL
decode, Inception random-resized crop to `--size`, random flip, batch) with each
`--workers` count, once decoding every JPEG at full size (config.data.jpeg_draft
= False, the pipeline before reduced decoding) and once at the reduced DCT scale
the crop allows (jpeg_draft = True, the default; learned_resize/data/preprocessing.py),
and prints one table: images/s, and images per CPU-second summed over the main
process and its workers (what one unshared core would deliver, whatever else
loads the machine) for both, and their ratio.
0 workers means decoding in the calling process (its prefetch threads share
the GIL for the Python parts). The first `--warmup_batches` of each run (worker
start-up) are not timed.
"""

import io
import os
import tempfile
import time

import numpy as np
import PIL.Image
import psutil
import skimage.data
import tensorflow_datasets as tfds
from absl import app, flags

from learned_resize.config import defaults
from learned_resize.data import pipeline as pipeline_lib

_SIZE = flags.DEFINE_integer("size", 224, "Crop size (the classifier's or resizer's input).")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "Worker process counts to run.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 512, "JPEGs in the temporary dataset.")
_BATCHES = flags.DEFINE_integer("batches", 24, "Timed batches per run.")
_WARMUP_BATCHES = flags.DEFINE_integer("warmup_batches", 4, "Untimed batches per run.")
_QUALITY = flags.DEFINE_integer("quality", 90, "JPEG quality.")
_LONG_SIDE = flags.DEFINE_integer(
    "long_side", 500, "Long side of the JPEGs (4:3); 500 is ImageNet's typical photo."
)

# Colour photos bundled with scikit-image (no download).
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)


def imagenet_like_jpegs(num_images: int, quality: int, long_side: int = 500, seed: int = 0):
    """Yields JPEG bytes of 500x375 or 375x500 (for long_side=500) crops of the bundled photos."""
    rng = np.random.default_rng(seed)
    photos = [PIL.Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    for i in range(num_images):
        photo = photos[i % len(photos)]
        short_side = round(long_side * 3 / 4)
        width, height = (long_side, short_side) if rng.random() < 0.75 else (short_side, long_side)
        # The largest box of that aspect ratio, scaled by 60-100%, anywhere in the photo.
        scale = min(photo.width / width, photo.height / height) * rng.uniform(0.6, 1.0)
        box_w, box_h = int(width * scale), int(height * scale)
        left = int(rng.integers(0, photo.width - box_w + 1))
        top = int(rng.integers(0, photo.height - box_h + 1))
        image = photo.crop((left, top, left + box_w, top + box_h)).resize(
            (width, height), PIL.Image.Resampling.BICUBIC
        )
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        yield buffer.getvalue()


class InputPipelineBenchPhotos(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The temporary dataset: JPEG bytes in 'image', a dummy 10-class 'label'.

    Not registered with TFDS: the pipeline (and grain's worker processes, which
    cannot import a class defined in a script) reopen the prepared files as a
    read-only builder.
    """

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, num_images: int, quality: int, long_side: int, **kwargs):
        self._num_images = num_images
        self._quality = quality
        self._long_side = long_side
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        jpegs = imagenet_like_jpegs(self._num_images, self._quality, self._long_side)
        for index, data in enumerate(jpegs):
            yield index, {"image": data, "label": index % 10}


def cpu_seconds() -> float:
    """CPU time of this process and its live children (the grain workers) so far."""
    process = psutil.Process()
    return sum(
        t.user + t.system for t in (p.cpu_times() for p in [process, *process.children(True)])
    )


def measure(config, num_workers: int, jpeg_draft: bool) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second over all processes)."""
    config.data.num_workers = num_workers
    config.data.jpeg_draft = jpeg_draft
    iterator = pipeline_lib.create_train_iterator(
        config, image_size=(_SIZE.value, _SIZE.value), seed=0
    )
    for _ in range(_WARMUP_BATCHES.value):
        batch = next(iterator)
    assert batch["image"].shape == (_BATCH.value, _SIZE.value, _SIZE.value, 3), batch["image"].shape
    start, start_cpu = time.perf_counter(), cpu_seconds()
    for _ in range(_BATCHES.value):
        next(iterator)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    del iterator  # Stops the worker processes before the next run starts its own.
    images = _BATCHES.value * _BATCH.value
    return images / seconds, images / cpu


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as data_dir:
        builder = InputPipelineBenchPhotos(
            num_images=_NUM_IMAGES.value,
            quality=_QUALITY.value,
            long_side=_LONG_SIDE.value,
            data_dir=data_dir,
            file_format="array_record",
        )
        start = time.perf_counter()
        builder.download_and_prepare()
        jpeg_dir = os.path.join(data_dir, "input_pipeline_bench_photos")
        megabytes = sum(
            os.path.getsize(os.path.join(root, f)) for root, _, fs in os.walk(jpeg_dir) for f in fs
        )
        print(
            f"{_NUM_IMAGES.value} JPEGs (~{_LONG_SIDE.value}x{round(_LONG_SIDE.value * 3 / 4)}, "
            f"quality {_QUALITY.value}, "
            f"{megabytes / _NUM_IMAGES.value / 1e3:.0f} kB each) written in "
            f"{time.perf_counter() - start:.1f} s; {os.cpu_count()} CPUs; batch {_BATCH.value}, "
            f"crop {_SIZE.value}; load average {os.getloadavg()[0]:.1f}"
        )
        config = defaults.base_config()
        config.data.name = "input_pipeline_bench_photos"
        config.data.data_dir = data_dir
        config.data.channels = 3
        config.data.crop = "inception"
        config.data.flip = True
        config.batch_size = _BATCH.value
        print(
            "| worker processes | images/s full decode | images/s reduced | "
            "images per CPU-s full decode | images per CPU-s reduced | reduced / full (CPU-s) |"
        )
        print("|---|---|---|---|---|---|")
        for workers in (int(w) for w in _WORKERS.value):
            full, full_cpu = measure(config, workers, jpeg_draft=False)
            reduced, reduced_cpu = measure(config, workers, jpeg_draft=True)
            print(
                f"| {workers} | {full:.0f} | {reduced:.0f} | {full_cpu:.0f} | {reduced_cpu:.0f} "
                f"| {reduced_cpu / full_cpu:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
