r"""Input pipeline on ImageNet-like JPEGs: images per CPU-second against PIL's bare decode,
the host cores a TPU v4 host needs, and the pipeline's own images/s.

    python bench/input_pipeline.py                          # all three tables
    python bench/input_pipeline.py --nopipeline             # the first two (a minute)
    python bench/input_pipeline.py --device_check=device_check.json --nopipeline
    python bench/input_pipeline.py --size=448 --workers=0,1

Table 1, per image in one process (time.process_time, so what one unshared core
delivers whatever else loads the machine): `--decode_images` JPEGs of ImageNet's
typical sizes (500x375, 500x333 and their portrait forms, quality `--quality`, cut from
the photos in the scikit-image wheel, `--noise` added: ~74 kB each), passed `--rounds`
times through each of: PIL's bare decode at full size (`Image.open(...).convert("RGB")`,
no crop: the limit of an input pipeline that decodes every pixel), and the project's
training preprocessing
(`learned_resize.data.preprocessing.decode_train_example`: Inception random-resized
crop + flip) to 224 and to 448, decoding at full size and at the reduced DCT scale the
crop allows (`config.data.jpeg_draft`, the default). The work of one round is
interleaved across the rows, so load hits them alike; the median round counts.
Reduced decoding could beat the bare full decode (fewer pixels), but at 224 and 448 from
~500 px photos few crops allow a reduced scale.

Table 2, the decoding processes (busy vCPUs) a TPU v4 host (4 chips, 240 vCPUs) needs to
feed the ResNet-50 `learned` stage (crops to 448): host images/s over table 1's images
per CPU-second at 448. The host rate is the device check's measured ResNet-50 rate
(`--device_check=FILE`, the JSON of `python -m learned_resize.tools.device_check`: its
images/s per device x 4 chips), and otherwise the paper's global batch 1024 at
`--tpu_step_ms` per step on `--tpu_chips` chips (default 17.2 ms on a v4-32's 16 chips:
docs/scaling_estimate.md's compute-bound figure at 40% MFU; a stated time, not a
measurement).

Table 3 (`--pipeline`, default on): the project's training iterator
(`pipeline_lib.create_train_iterator`: batched record read from a temporary TFDS
array_record dataset, decode, crop to `--size`, flip, batch) with each `--workers`
count, full and reduced decoding: images/s, and images per CPU-second summed over the
main process and its workers. 0 workers means decoding in the calling process (its
prefetch threads share the GIL for the Python parts). The first `--warmup_batches` of
each run (worker start-up) are not timed.
"""

import collections
import io
import json
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
from learned_resize.data import preprocessing
from learned_resize.runtime import cli

_SIZE = flags.DEFINE_integer("size", 224, "Crop size (the classifier's or resizer's input).")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "Worker process counts to run.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 512, "JPEGs in the temporary dataset.")
_BATCHES = flags.DEFINE_integer("batches", 24, "Timed batches per run.")
_WARMUP_BATCHES = flags.DEFINE_integer("warmup_batches", 4, "Untimed batches per run.")
_QUALITY = flags.DEFINE_integer("quality", 90, "JPEG quality.")
_LONG_SIDE = flags.DEFINE_integer(
    "long_side", 500, "Long side of the JPEGs (4:3 and 3:2); 500 is ImageNet's typical photo."
)
_NOISE = flags.DEFINE_float("noise", 12.0, "Std of the noise added to the photos (of 255).")
_DECODE_IMAGES = flags.DEFINE_integer("decode_images", 200, "JPEGs of tables 1 and 2.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds of table 1 (the median counts).")
_DEVICE_CHECK = flags.DEFINE_string(
    "device_check", None, "JSON of learned_resize.tools.device_check: its ResNet-50 images/s."
)
_TPU_STEP_MS = flags.DEFINE_float(
    "tpu_step_ms", 17.2, "Without --device_check: ms per step of batch 1024 on --tpu_chips."
)
_TPU_CHIPS = flags.DEFINE_integer("tpu_chips", 16, "Chips of that step (16: a v4-32).")
_PIPELINE = flags.DEFINE_bool("pipeline", True, "Also table 3, the training iterator.")

PAPER_BATCH = 1024  # configs/imagenet.py's global batch
V4_CHIPS_PER_HOST = 4
V4_HOST_VCPUS = 240  # a Cloud TPU v4 VM host

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


def imagenet_like_jpegs(
    num_images: int, quality: int, long_side: int = 500, seed: int = 0, noise: float = 12.0
):
    """Yields JPEG bytes of the bundled photos cut to ImageNet's typical shapes: for
    long_side=500, 500x375 (4:3) and 500x333 (3:2) in turn, a quarter of them portrait.
    Gaussian noise of std `noise` (of 255) stands in for a camera photo's fine detail: the
    upscaled crops alone compress to ~41 kB, with 12 to ~74 kB (ImageNet's training JPEGs
    average ~110 kB: 138 GB over 1,281,167 files, many larger than 500 px)."""
    rng = np.random.default_rng(seed)
    photos = [PIL.Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    for i in range(num_images):
        photo = photos[i % len(photos)]
        short_side = round(long_side * (3 / 4 if i % 2 == 0 else 2 / 3))
        width, height = (long_side, short_side) if rng.random() < 0.75 else (short_side, long_side)
        # The largest box of that aspect ratio, scaled by 60-100%, anywhere in the photo.
        scale = min(photo.width / width, photo.height / height) * rng.uniform(0.6, 1.0)
        box_w, box_h = int(width * scale), int(height * scale)
        left = int(rng.integers(0, photo.width - box_w + 1))
        top = int(rng.integers(0, photo.height - box_h + 1))
        image = photo.crop((left, top, left + box_w, top + box_h)).resize(
            (width, height), PIL.Image.Resampling.BICUBIC
        )
        if noise:
            pixels = np.asarray(image, np.float32) + rng.normal(0, noise, (height, width, 3))
            image = PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        yield buffer.getvalue()


def bare_decode(data: bytes, rng) -> np.ndarray:
    """PIL's decode of every pixel, nothing else: the limit of a full-decode pipeline."""
    del rng
    with PIL.Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def train_example(size: int, reduced: bool):
    """The training preprocessing of one JPEG to size x size (Inception crop + flip)."""

    def run(data: bytes, rng) -> np.ndarray:
        return preprocessing.decode_train_example(
            data, rng, channels=3, image_size=(size, size), crop="inception", min_area=0.08,
            flip=True, eval_crop_fraction=0.875, reduced=reduced,
        )  # fmt: skip

    return run


# (row name, work); the first is the reference the others are compared with.
DECODE_ROWS = (
    ("PIL bare decode, full size (the limit)", bare_decode),
    ("decode + crop + flip -> 224, full decode", train_example(224, reduced=False)),
    ("decode + crop + flip -> 224, reduced decode (default)", train_example(224, reduced=True)),
    ("decode + crop + flip -> 448, full decode", train_example(448, reduced=False)),
    ("decode + crop + flip -> 448, reduced decode (default)", train_example(448, reduced=True)),
)


def decode_rates(jpegs: list[bytes], rounds: int) -> list[float]:
    """Per DECODE_ROWS row, images per CPU-second of this process: the median over
    `rounds` rounds, each passing every file through every row in turn."""
    seconds = [[] for _ in DECODE_ROWS]
    for r in range(rounds):
        for i, (_, work) in enumerate(DECODE_ROWS):
            rng = np.random.default_rng(r)
            start = time.process_time()
            for data in jpegs:
                work(data, rng)
            seconds[i].append(time.process_time() - start)
    return [len(jpegs) / float(np.median(s)) for s in seconds]


def learned_stage_host_rate() -> tuple[float, str]:
    """(images/s one TPU v4 host must deliver for the ResNet-50 learned stage, its source)."""
    if _DEVICE_CHECK.value:
        try:
            with open(_DEVICE_CHECK.value) as f:
                report = json.load(f)
            row = next(r for r in report["rows"] if r["name"] == "resnet50")
        except (OSError, ValueError, KeyError, TypeError, StopIteration):
            raise SystemExit(
                f"error: {_DEVICE_CHECK.value} is not a device check's JSON with a resnet50 row; "
                "write one with python -m learned_resize.tools.device_check --out=FILE."
            ) from None
        if row["status"] != "ok":
            raise SystemExit(
                f"error: {_DEVICE_CHECK.value} has no ResNet-50 rate: {row['summary']}"
            )
        v = row["values"]
        per_chip = v["images_per_s"] / v["devices"]
        source = (
            f"measured by the device check on {report['device_kind']}: {per_chip:.0f} images/s "
            f"per device at batch {v['batch']} ({v['input_px']}->{v['output_px']} px) x "
            f"{V4_CHIPS_PER_HOST} chips"
        )
        return per_chip * V4_CHIPS_PER_HOST, source
    global_rate = PAPER_BATCH / (_TPU_STEP_MS.value / 1e3)
    hosts = _TPU_CHIPS.value / V4_CHIPS_PER_HOST
    source = (
        f"stated, not measured: batch {PAPER_BATCH} every {_TPU_STEP_MS.value} ms on "
        f"{_TPU_CHIPS.value} v4 chips = {global_rate:.0f} images/s over {hosts:g} hosts"
    )
    return global_rate / hosts, source


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
        jpegs = imagenet_like_jpegs(
            self._num_images, self._quality, self._long_side, noise=_NOISE.value
        )
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


def decode_tables() -> None:
    """Tables 1 and 2."""
    host_rate, source = learned_stage_host_rate()  # a bad --device_check fails before work
    jpegs = imagenet_like_jpegs(
        _DECODE_IMAGES.value, _QUALITY.value, _LONG_SIDE.value, noise=_NOISE.value
    )
    jpegs = list(jpegs)
    shapes = collections.Counter(PIL.Image.open(io.BytesIO(j)).size for j in jpegs)
    print(
        f"{len(jpegs)} JPEGs ({', '.join(f'{n} x {w}x{h}' for (w, h), n in shapes.items())}; "
        f"quality {_QUALITY.value}, {np.mean([len(j) for j in jpegs]) / 1e3:.0f} kB each), "
        f"one process, median of {_ROUNDS.value} interleaved rounds; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rates = decode_rates(jpegs, _ROUNDS.value)
    print("| work per image | images per CPU-second | CPU ms per image | vs bare decode |")
    print("|---|---:|---:|---:|")
    for (name, _), rate in zip(DECODE_ROWS, rates, strict=True):
        print(f"| {name} | {rate:.0f} | {1e3 / rate:.2f} | {rate / rates[0]:.2f} |")
    print(f"\nTPU v4 host, ResNet-50 learned stage (crops to 448); host rate {source}")
    print(
        f"| decoding | images/s per host | images per CPU-second | busy vCPUs needed "
        f"| of a v4 host's {V4_HOST_VCPUS} |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, rate in (
        ("bare full decode (the limit)", rates[0]),
        *(
            (label, rates[i])
            for label, i in (("full decode + crop", 3), ("reduced decode + crop", 4))
        ),
    ):
        vcpus = host_rate / rate
        print(
            f"| {name} | {host_rate:.0f} | {rate:.0f} | {vcpus:.0f} "
            f"| {vcpus / V4_HOST_VCPUS:.0%} |",
            flush=True,
        )


def pipeline_table() -> None:
    """Table 3: the training iterator with each --workers count."""
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
            f"\n{_NUM_IMAGES.value} JPEGs (long side {_LONG_SIDE.value}, "
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


def check_flags() -> None:
    """One `error:` line for values that cannot work, before anything is written."""
    problems = [
        f"--{name} must be at least {low}, got {flag.value}"
        for name, flag, low in (
            ("decode_images", _DECODE_IMAGES, 1), ("rounds", _ROUNDS, 1),
            ("num_images", _NUM_IMAGES, 1), ("batch", _BATCH, 1), ("batches", _BATCHES, 1),
            ("tpu_chips", _TPU_CHIPS, 1), ("quality", _QUALITY, 1), ("noise", _NOISE, 0),
        )
        if flag.value < low
    ]  # fmt: skip
    if _TPU_STEP_MS.value <= 0:
        problems.append(f"--tpu_step_ms must be positive, got {_TPU_STEP_MS.value}")
    if _DEVICE_CHECK.value and not os.path.isfile(_DEVICE_CHECK.value):
        problems.append(f"--device_check={_DEVICE_CHECK.value} does not exist")
    if problems:
        raise SystemExit(f"error: {problems[0]}.")


def main(argv):
    if len(argv) > 1:
        raise SystemExit(f"error: unexpected arguments {' '.join(argv[1:])}.")
    check_flags()
    cli.setup_logging()  # no INFO chatter from TFDS and JAX between the table's rows
    decode_tables()
    if _PIPELINE.value:
        pipeline_table()


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
