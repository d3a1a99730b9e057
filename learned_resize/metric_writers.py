"""Where metrics go: stdout, TensorBoard event files (tensorboardX, no TensorFlow) and JSON lines.

TensorBoard (`tensorboard --logdir=WORKDIR/tensorboard`) gets the scalars, every image
written as a PNG (the resizer grids, IMAGES tab) and the run's hyperparameters (the
flattened config, HPARAMS tab, with the metrics to compare runs by).

Only process 0 writes; other processes get a writer that does nothing, so the
training loop needs no `if process_index == 0` around its logging calls.
"""

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np


class MetricWriter:
    """Writes scalars to TensorBoard and `metrics.jsonl` in `workdir`, images as PNGs."""

    def __init__(self, workdir: str, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.workdir = workdir
        self._tb = None
        self._jsonl = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            import tensorboardX  # imported here: only process 0 needs it

            self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write_scalars(self, step: int, scalars: dict, prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": round(time.time(), 3)}
        for name, value in scalars.items():
            value = float(np.asarray(value))
            record[prefix + name] = value
            self._tb.add_scalar(prefix + name, value, int(step))
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def write_hparams(self, hparams: Mapping, metric_tags: Sequence[str] = ()) -> None:
        """Writes the run's hyperparameters to TensorBoard's HPARAMS dashboard.

        Args:
          hparams: name -> value, e.g. `config.to_dict()`; nested mappings are flattened to
            dotted names, and values that are not bool/int/float/str (tuples, None) are shown
            as their repr.
          metric_tags: scalar tags (e.g. "eval/top1") the dashboard shows beside them.
        """
        if not self.enabled:
            return
        from tensorboardX.summary import hparams as hparams_summaries

        flat = {name: _hparam_value(value) for name, value in _flatten(hparams).items()}
        # The plugin's three summaries in this run's own event file (add_hparams would make a
        # separate run in a subdirectory); the metric values come from the scalars written.
        for summary in hparams_summaries(flat, dict.fromkeys(metric_tags, 0.0)):
            self._tb._get_file_writer().add_summary(summary)
        self._tb.flush()

    def write_image(self, step: int, name: str, image: np.ndarray) -> str | None:
        """Writes HxWx3 uint8 `image` to `<workdir>/images/<name>_<step>.png` and TensorBoard."""
        if not self.enabled:
            return None
        from PIL import Image

        path = os.path.join(self.workdir, "images", f"{name}_{step:07d}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(image).save(path)
        self._tb.add_image(name, image, int(step), dataformats="HWC")
        return path

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def _flatten(tree: Mapping, prefix: str = "") -> dict:
    flat = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _hparam_value(value):
    """A value the hparams plugin stores (bool, int, float or str)."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def log(message: str) -> None:
    """Prints a progress line from process 0 only, flushed so it shows up in pod logs."""
    if jax.process_index() == 0:
        print(message, file=sys.stdout, flush=True)


class Progress:
    """Steps/s and ETA over the window since the last report."""

    def __init__(self, total_steps: int, start_step: int):
        self.total = total_steps
        self.last_step = start_step
        self.last_time = time.perf_counter()

    def report(self, step: int) -> tuple[float, float]:
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        self.last_step, self.last_time = step, now
        return rate, eta


def format_eta(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
