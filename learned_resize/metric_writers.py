"""Where metrics go: stdout, TensorBoard event files (tensorboardX, no TensorFlow) and JSON lines.

Only process 0 writes; other processes get a writer that does nothing, so the
training loop needs no `if process_index == 0` around its logging calls.
"""

import json
import os
import sys
import time

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
