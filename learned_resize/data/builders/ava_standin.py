"""An offline STAND-IN for AVA with the same file format, for pipeline checks only.

No human-scored quality dataset is installable from a package registry, so this
module makes an AVA-format folder (AVA.txt + images/<id>.jpg) from the real
photos scikit-image ships (astronaut, chelsea, coffee, ...). Its scores are NOT
human judgements: every image is a random crop of one photo, resized to
64..128 px per side and degraded by one distortion of known strength s in [0, 1],

    blur      Gaussian blur, sigma = 3 s px
    noise     additive Gaussian noise, std = 50 s (of 255)
    jpeg      JPEG quality 95 - 90 s
    contrast  contrast scaled by 1 - 0.85 s towards the mean grey

and its votes are drawn from a discretised Gaussian over the scores 1..10 with
mean 7.5 - 5 s and standard deviation 1.5 (150..250 votes per image). A model
trained on it learns to rate these distortions, which is enough to check that
data, score head, EMD loss and PLCC/SRCC work end to end; numbers on it say
nothing about AVA.

AVA.txt columns are filled as: tag1 = source photo (1-based index into
`PHOTOS`), tag2 = distortion (1-based index into `DISTORTIONS`), challenge =
round(10 s). `distortions.txt` lists id, photo, distortion and s per image.
Everything is a function of the seed.

The TFDS builder `ava_standin` (`AvaStandin` below, a subclass of `ava.Ava`) prepares such
a folder with AVA's own code; without a source dir it first writes the default
folder (1,000 images, seed 0) into <data_dir>/downloads/, so
`tfds.builder('ava_standin').download_and_prepare()` works offline. To write a folder yourself:

    python -m learned_resize.data.builders.ava_standin --out=DIR [--num_images=1000 --seed=0]
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time

import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageFilter
import skimage.data
import tensorflow_datasets as tfds
from absl import app, flags, logging

from learned_resize.data.builders import ava

# Photos bundled in the scikit-image wheel (no network); grayscale ones become RGB.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "camera",
    "coins",
    "moon",
    "clock",
    "brick",
    "grass",
    "gravel",
)
DISTORTIONS = ("blur", "noise", "jpeg", "contrast")
DEFAULT_NUM_IMAGES = 1000
DEFAULT_SEED = 0
MIN_SIDE, MAX_SIDE = 64, 128
# Votes: discretised Gaussian over 1..10; its mean falls linearly with the strength.
BEST_MEAN, WORST_MEAN, SCORE_SIGMA = 7.5, 2.5, 1.5
MIN_VOTES, MAX_VOTES = 150, 250
# JPEG quality of the images whose distortion is not JPEG itself.
CLEAN_QUALITY = 95


def load_photo(name: str) -> PIL.Image.Image:
    """One of scikit-image's bundled photos as an RGB PIL image."""
    array = np.asarray(getattr(skimage.data, name)())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return PIL.Image.fromarray(array[..., :3].astype(np.uint8), mode="RGB")


def score_distribution(strength: float) -> np.ndarray:
    """The vote distribution over 1..10 for a distortion of `strength` in [0, 1]."""
    mean = BEST_MEAN - (BEST_MEAN - WORST_MEAN) * strength
    scores = np.arange(1, ava.NUM_BINS + 1)
    p = np.exp(-0.5 * ((scores - mean) / SCORE_SIGMA) ** 2)
    return p / p.sum()


def _random_crop(photo: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    """A crop covering 25-100% of the photo's area, resized to 64..128 px per side."""
    width, height = photo.size
    area = rng.uniform(0.25, 1.0) * width * height
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_w = int(min(width, round(np.sqrt(area * aspect))))
    crop_h = int(min(height, round(np.sqrt(area / aspect))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    out_h, out_w = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    crop = photo.resize(
        (out_w, out_h), PIL.Image.Resampling.LANCZOS, box=(left, top, left + crop_w, top + crop_h)
    )
    if rng.random() < 0.5:
        crop = crop.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
    return crop


def distort(
    image: PIL.Image.Image, distortion: str, strength: float, rng: np.random.Generator
) -> bytes:
    """Applies `distortion` at `strength` in [0, 1] and returns the JPEG bytes."""
    quality = CLEAN_QUALITY
    if distortion == "blur":
        image = image.filter(PIL.ImageFilter.GaussianBlur(radius=3.0 * strength))
    elif distortion == "noise":
        noisy = np.asarray(image, np.float32) + rng.normal(
            0, 50.0 * strength, (*image.size[::-1], 3)
        )
        image = PIL.Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8), mode="RGB")
    elif distortion == "jpeg":
        quality = int(round(95 - 90 * strength))
    elif distortion == "contrast":
        image = PIL.ImageEnhance.Contrast(image).enhance(1.0 - 0.85 * strength)
    else:
        raise ValueError(f"Unknown distortion {distortion!r}; use one of {DISTORTIONS}.")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_standin(
    out_dir: str | os.PathLike, num_images: int = DEFAULT_NUM_IMAGES, seed: int = DEFAULT_SEED
) -> str:
    """Writes an AVA-format stand-in folder (AVA.txt, images/, distortions.txt).

    The folder is written to a temporary sibling and renamed, so a crash never
    leaves a half-written folder that would later be taken for a complete one.

    Args:
      out_dir: the folder to create; must not exist yet.
      num_images: number of images (image ids 1..num_images).
      seed: everything (crops, distortions, votes) is a function of it.

    Returns:
      `out_dir`.
    """
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir):
        raise FileExistsError(f"{out_dir} already exists; choose a new --out directory.")
    if num_images <= 0:
        raise ValueError(f"num_images must be positive, got {num_images}.")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".ava_standin_", dir=parent)
    try:
        os.makedirs(os.path.join(tmp_dir, ava.IMAGES_DIR))
        photos = [load_photo(name) for name in PHOTOS]
        rng = np.random.default_rng(seed)
        annotation_lines, distortion_lines = [], ["# id photo distortion strength"]
        for image_id in range(1, num_images + 1):
            photo_index = int(rng.integers(len(PHOTOS)))
            distortion_index = int(rng.integers(len(DISTORTIONS)))
            strength = float(rng.uniform())
            crop = _random_crop(photos[photo_index], rng)
            data = distort(crop, DISTORTIONS[distortion_index], strength, rng)
            with open(os.path.join(tmp_dir, ava.IMAGES_DIR, f"{image_id}.jpg"), "wb") as f:
                f.write(data)
            votes = int(rng.integers(MIN_VOTES, MAX_VOTES + 1))
            counts = rng.multinomial(votes, score_distribution(strength))
            fields = [image_id, image_id, *counts.tolist()]
            fields += [photo_index + 1, distortion_index + 1, int(round(10 * strength))]
            annotation_lines.append(" ".join(str(v) for v in fields))
            distortion_lines.append(
                f"{image_id} {PHOTOS[photo_index]} {DISTORTIONS[distortion_index]} {strength:.6f}"
            )
        with open(os.path.join(tmp_dir, ava.ANNOTATIONS_FILE), "w") as f:
            f.write("\n".join(annotation_lines) + "\n")
        with open(os.path.join(tmp_dir, "distortions.txt"), "w") as f:
            f.write("\n".join(distortion_lines) + "\n")
        os.rename(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir


def prepare_ava_standin(data_dir: str | None, source_dir: str | None = None):
    """Prepares the 'ava_standin' dataset (writing its default source folder if needed)."""
    return ava.prepare_ava(source_dir, data_dir, name="ava_standin")


def main(argv):
    del argv
    out, num_images, seed, data_dir = (
        flags.FLAGS[name].value for name in ("out", "num_images", "seed", "data_dir")
    )
    if not out:
        raise app.UsageError("Give --out=DIR, the folder to write.")
    start = time.perf_counter()
    write_standin(out, num_images, seed)
    print(
        f"Wrote {num_images} stand-in images (seed {seed}) to {out} in "
        f"{time.perf_counter() - start:.1f} s."
    )
    if data_dir:
        start = time.perf_counter()
        builder = prepare_ava_standin(data_dir, out)
        splits = {k: v.num_examples for k, v in builder.info.splits.items()}
        print(f"Prepared ava_standin {splits} in {time.perf_counter() - start:.1f} s.")


# Run as a script this module is loaded twice (as __main__ and by the package): register once.
class AvaStandin(ava.Ava, skip_registration=__name__ == "__main__"):
    """STAND-IN for AVA made from distorted scikit-image photos; for pipeline checks only.

    Same format and code as `Ava`; see `ava_standin.py` for how the folder is made.
    Without a source dir, the default folder is written into the download dir.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Default folder: 1,000 images from seed 0."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Nothing to download: without a source dir the builder writes the stand-in folder "
        "itself (or write one with `python -m learned_resize.data.builders.ava_standin --out=DIR`)."
    )
    _DESCRIPTION = (
        "STAND-IN for AVA, not AVA: crops of scikit-image's photos with blur, noise, JPEG or "
        "contrast distortions of known strength, turned into 1..10 vote histograms."
    )

    def _candidate_source_dirs(self, dl_manager) -> list[str]:
        if self._source_dir:
            return [os.fspath(self._source_dir)]
        default_dir = os.path.join(
            os.fspath(dl_manager.download_dir), f"ava_standin_seed{DEFAULT_SEED}"
        )
        if not os.path.exists(default_dir):
            start = time.perf_counter()
            write_standin(default_dir)
            logging.info(
                "Wrote the AVA stand-in source folder %s in %.1f s.",
                default_dir,
                time.perf_counter() - start,
            )
        return [default_dir]


if __name__ == "__main__":
    # Flags are defined here, not at import, so importing this module as a library
    # never clashes with the trainer's flags.
    flags.DEFINE_string("out", None, "Folder to write (must not exist).")
    flags.DEFINE_integer("num_images", DEFAULT_NUM_IMAGES, "Number of images.")
    flags.DEFINE_integer("seed", DEFAULT_SEED, "Random seed.")
    flags.DEFINE_string(
        "data_dir", None, "If set, also prepare the folder as TFDS dataset 'ava_standin' here."
    )
    app.run(main)
