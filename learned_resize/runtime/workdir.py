"""Every file a run keeps, through etils.epath: the same code for local paths and gs://.

A workdir holds `config.json`, `metrics.jsonl`, `tensorboard/`, `images/*.png`,
`checkpoints/` (Orbax), and once a stage has finished `results.json` (and for IQA
`eval_predictions.npz`); a staged run's workdir holds one such directory per stage
plus `results.md`. Nothing here calls `open` or `os.makedirs` on a workdir path, so a
`gs://bucket/run` workdir never turns into a local directory called `gs:`.
"""

import io
import json
import math
import os

import numpy as np
from etils import epath

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
PREDICTIONS_FILE = "eval_predictions.npz"


def is_remote(path) -> bool:
    return "://" in os.fspath(path)


def as_path(path) -> epath.Path:
    """An epath.Path; local paths made absolute (Orbax needs absolute paths)."""
    path = os.fspath(path)
    return epath.Path(path if is_remote(path) else os.path.abspath(os.path.expanduser(path)))


def _finite_or_none(value):
    """JSON has no NaN/Infinity: non-finite floats are stored as null."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def write_bytes(path, data: bytes) -> None:
    """Writes `data` whole: local files via a temporary name and a rename (a kill never
    leaves half a file), remote objects in one upload (they are atomic)."""
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(path):
        path.write_bytes(data)
        return
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_bytes(data)
    tmp.replace(path)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    """Strict JSON (non-finite floats as null), indented."""
    write_text(path, json.dumps(_finite_or_none(obj), indent=2, allow_nan=False) + "\n")


def read_json(path) -> dict | None:
    """The JSON object at `path`, or None if there is none (or it is unreadable)."""
    path = as_path(path)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_png(path, image: np.ndarray) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())


def write_npz(path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())
