"""Where metrics go: the log, TensorBoard event files (tensorboardX, no TensorFlow) and JSON lines.

TensorBoard (`tensorboard --logdir=WORKDIR/tensorboard`) gets the scalars, every image
written as a PNG (the resizer grids, IMAGES tab) and the run's hyperparameters (the
flattened config, HPARAMS tab, with the metrics to compare runs by).

Only process 0 writes; other processes get a writer that does nothing, so the
training loop needs no `if process_index == 0` around its logging calls. Every file
goes through etils.epath (`workdir.py`), so a gs:// workdir gets all of them. On a
bucket (objects cannot be appended to) `metrics.jsonl` is rewritten whole, and the
TensorBoard event files are written to a local temporary directory and copied
whole, at most every `remote_flush_seconds` and at close. (tensorboardX's own gs://
writer would bypass epath and, with the bucket unreachable, block the exit of the
process for minutes.)
"""

import functools
import json
import pathlib
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from absl import logging

from learned_resize.runtime import errors
from learned_resize.runtime import workdir as workdir_lib


class WriteError(errors.UserError):
    """The metrics could not be written (full disk, lost permissions, bucket gone)."""


def _one_line_on_failure(method):
    """An I/O failure of `method` becomes a WriteError: one `error:` line that says what
    to do, instead of a traceback from TensorBoard's writer."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            raise WriteError(
                f"could not write the metrics under {self.workdir} ({errors.brief(e, 200)}); "
                "free space or fix access there, then run the same command again to resume "
                "from the last saved checkpoint."
            ) from e

    return wrapped


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
        tb_dir = str(self.workdir / "tensorboard")
        self._tb_local = None
        if self._remote:
            if self._jsonl.exists():
                self._lines = self._jsonl.read_text().splitlines(keepends=True)
            self._tb_local = tempfile.mkdtemp(prefix="learned_resize_tensorboard_")
            tb_dir = self._tb_local
        import tensorboardX  # imported here: only process 0 needs it

        self._tb = tensorboardX.SummaryWriter(tb_dir)

    @_one_line_on_failure
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

    @_one_line_on_failure
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

    @_one_line_on_failure
    def write_image(self, step: int, name: str, image: np.ndarray):
        """Writes HxWx3 uint8 `image` to `<workdir>/images/<name>_<step>.png` and TensorBoard."""
        if not self.enabled:
            return None
        path = self.workdir / "images" / f"{name}_{step:07d}.png"
        workdir_lib.write_png(path, image)
        self._tb.add_image(name, image, int(step), dataformats="HWC")
        return str(path)

    @_one_line_on_failure
    def flush(self) -> None:
        if not self.enabled or self._tb is None:
            return
        self._tb.flush()
        if self._remote:
            self._jsonl.write_text("".join(self._lines))
            self._copy_events()
            self._last_flush = time.monotonic()

    def _copy_events(self) -> None:
        local = pathlib.Path(self._tb_local)
        for f in local.rglob("*"):
            if f.is_file():
                target = self.workdir / "tensorboard" / f.relative_to(local)
                workdir_lib.write_bytes(target, f.read_bytes())

    @_one_line_on_failure
    def close(self) -> None:
        if not self.enabled or self._tb is None:
            return
        self._tb.close()  # close() waits for queued events; flush() does not
        if self._remote:
            self._jsonl.write_text("".join(self._lines))
            self._copy_events()
            shutil.rmtree(self._tb_local, ignore_errors=True)
        self._tb = None


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
