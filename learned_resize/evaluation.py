"""Evaluation over a whole split: metrics, per-example predictions and a preview grid.

Padding rows (mask 0) are excluded and each process's corrupt images are counted
through the global batch. Classification sums its outputs on device batch by batch;
IQA gathers every prediction on the host (correlations are not sums).
"""

import dataclasses
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from learned_resize.runtime import errors
from learned_resize.runtime import mesh as mesh_lib


@dataclasses.dataclass
class EvalResult:
    metrics: dict
    predictions: dict | None  # per-example arrays (IQA), padding rows included with mask 0
    grid: np.ndarray | None  # input | bilinear | resizer output, uint8 (process 0 only)


def evaluate(
    steps,
    state,
    rest,
    batches: Iterable[dict],
    num_images: int = 0,
    stop_requested: Callable[[], bool] = lambda: False,
) -> EvalResult:
    """Evaluates `state` on every batch of `batches` (process-local numpy dicts).

    Args:
      steps: a `steps.Steps` of the config.
      state, rest: the train state and the model's non-trainable rest.
      batches: the eval iterator (`input_pipeline.create_eval_iterator`).
      num_images: rows of the preview grid (0: none).
      stop_requested: polled between batches; when it turns true, evaluation stops by
        raising errors.Preempted (the caller's checkpoint holds the state).

    Returns:
      An EvalResult.
    """
    task = steps.task
    keys = ("image", "mask", "skipped", *task.targets)
    totals, gathered, first, skipped = None, [], None, 0.0
    for local in batches:
        if stop_requested():
            raise errors.Preempted("preempted during evaluation")
        if first is None:
            first = local["image"][:num_images]
        batch = mesh_lib.global_batch({k: local[k] for k in keys}, steps.mesh)
        out = steps.eval_step(state, batch, rest)
        skipped += float(out.pop("skipped"))
        if task.gathers_predictions:
            gathered.append(jax.device_get(out))
        else:
            totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    if task.gathers_predictions:
        reduced = {k: np.concatenate([g[k] for g in gathered]) for k in gathered[0]}
    else:
        reduced = jax.device_get(totals)
    metrics, predictions = task.reduce(reduced)
    metrics["skipped_images"] = skipped
    grid = _preview(steps, state, rest, first) if num_images else None
    return EvalResult(metrics, predictions, grid)


def _preview(steps, state, rest, images) -> np.ndarray | None:
    """Input | bilinear | resizer output for process 0's first eval images."""
    if jax.process_index() != 0 or images is None or not len(images):
        return None
    # Process 0's own images through its local copy of the replicated state: the other
    # processes hold other images, so a computation over the global mesh would not agree.
    device = jax.local_devices()[0]

    def local(tree):
        return jax.tree.map(lambda x: jax.device_put(x.addressable_data(0), device), tree)

    images = jax.device_put(jnp.asarray(images), device)
    columns = steps.resize_images(local(state), images, local(rest))
    return resizer_grid([np.asarray(c) for c in jax.device_get(columns)])


# PNG grids of resizer outputs, like the paper's figures: input | bilinear | learned.


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats (any channel count) -> HxWx3 uint8."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.round(x * 255.0).astype(np.uint8)


def _fit(img: np.ndarray, height: int) -> np.ndarray:
    """Scales `img` to `height` rows with nearest neighbour, so resized pixels stay visible."""
    h, w = img.shape[:2]
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.NEAREST))


def resizer_grid(columns: list[np.ndarray], cell: int = 96, pad: int = 4) -> np.ndarray:
    """Lays out examples in rows and `columns` side by side.

    Args:
      columns: arrays [N, h_i, w_i, C] of floats in [0, 1], one per column
        (e.g. input image, bilinear output, learned-resizer output).
      cell: display height of every cell in pixels.
      pad: white border between cells.

    Returns:
      One uint8 RGB image.
    """
    n = columns[0].shape[0]
    rows = []
    for i in range(n):
        cells = [_fit(_to_uint8(col[i]), cell) for col in columns]
        widths = [c.shape[1] for c in cells]
        row = np.full((cell, sum(widths) + pad * (len(cells) - 1), 3), 255, np.uint8)
        x = 0
        for c in cells:
            row[:, x : x + c.shape[1]] = c
            x += c.shape[1] + pad
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    grid = np.full((n * cell + pad * (n - 1), width, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        grid[i * (cell + pad) : i * (cell + pad) + cell, : r.shape[1]] = r
    return grid
