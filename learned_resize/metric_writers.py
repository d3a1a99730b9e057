"""Where metrics go: the log, TensorBoard event files (tensorboardX, no TensorFlow) and JSON lines.

Only process 0 writes; other processes get a writer that does nothing, so the
training loop needs no `if process_index == 0` around its logging calls. Every file
goes through etils.epath (`workdir.py`), so a gs:// workdir gets all of them:
`metrics.jsonl` is appended to locally and rewritten whole on a bucket (objects
cannot be appended to) at most every `remote_flush_seconds` and at close;
TensorBoard's gs:// support is tensorboardX's own (google-cloud-storage).
"""

import json
import time

import jax
import numpy as np
from absl import logging

from learned_resize import workdir as workdir_lib


class MetricWriter:
    """Writes scalars to TensorBoard and `metrics.jsonl` in `workdir`, images as PNGs."""

    def __init__(self, workdir, *, enabled: bool | None = None, remote_flush_seconds=60.0):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.workdir = workdir_lib.as_path(workdir)
        self._remote = workdir_lib.is_remote(self.workdir)
        self._flush_every = remote_flush_seconds
        self._tb = None
        self._lines: list[str] = []  # remote: the whole file, rewritten on flush
        self._last_flush = time.monotonic()
        if not self.enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = self.workdir / "metrics.jsonl"
        if self._remote and self._jsonl.exists():
            self._lines = self._jsonl.read_text().splitlines(keepends=True)
        import tensorboardX  # imported here: only process 0 needs it

        self._tb = tensorboardX.SummaryWriter(str(self.workdir / "tensorboard"))

    def write_scalars(self, step: int, scalars: dict, prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": round(time.time(), 3)}
        for name, value in scalars.items():
            value = float(np.asarray(value))
            record[prefix + name] = value if np.isfinite(value) else None
            self._tb.add_scalar(prefix + name, value, int(step))
        self._append(json.dumps(record) + "\n")

    def _append(self, line: str) -> None:
        if not self._remote:
            with self._jsonl.open("a") as f:
                f.write(line)
            return
        self._lines.append(line)
        if time.monotonic() - self._last_flush > self._flush_every:
            self.flush()

    def write_image(self, step: int, name: str, image: np.ndarray):
        """Writes HxWx3 uint8 `image` to `<workdir>/images/<name>_<step>.png` and TensorBoard."""
        if not self.enabled:
            return None
        path = self.workdir / "images" / f"{name}_{step:07d}.png"
        workdir_lib.write_png(path, image)
        self._tb.add_image(name, image, int(step), dataformats="HWC")
        return path

    def flush(self) -> None:
        if not self.enabled:
            return
        if self._remote:
            self._jsonl.write_text("".join(self._lines))
            self._last_flush = time.monotonic()
        self._tb.flush()

    def close(self) -> None:
        if self.enabled and self._tb is not None:
            self.flush()
            self._tb.close()
            self._tb = None


def log(message: str) -> None:
    """A progress line from process 0 only (absl INFO)."""
    if jax.process_index() == 0:
        logging.info("%s", message)


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
