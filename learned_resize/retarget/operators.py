"""Retargeting operators that apply one decision to an image and to every VGG layer.

A retargeting decision is a `Plan`: a short sequence of 1-D resampling stages, each
changing one axis (width, then height). A stage stores, for every row of the grid it
was computed on and every output column, the *source* column as a normalised
coordinate u in [0, 1] (pixel-centre convention: column x of an n-wide grid sits at
u = (x + 0.5) / n). Because the coordinates are normalised, the same plan resamples
an array of any resolution: `apply_plan` resizes each stage's coordinate map to the
array's own grid (antialiased linear resizing when the grid is coarser, linear
interpolation when it is finer) and then samples every row with linear
interpolation. So a plan computed once, on a reference grid, moves the same image
content at conv1 (stride 1), at conv4 (stride 8) and at conv5 (stride 16): this is
what "one retargeting decision applied consistently at every layer's own scale"
means here.

Operators:
  * uniform scaling: the empty plan; `apply_plan` falls back to an antialiased linear
    resize to the requested size.
  * center crop: one stage per changed axis with evenly spaced source columns.
  * seam carving: `seams.py` builds its plans.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.tree_util.register_dataclass, data_fields=["coords"], meta_fields=["axis"])
@dataclasses.dataclass(frozen=True)
class Stage:
    """One resampling stage.

    Attributes:
      coords: float32 [rows, out_len]: normalised source position along `axis` for
        each output position; `rows` indexes the other axis of the grid the stage was
        computed on.
      axis: 1 to change the width (coords rows are image rows), 0 to change the height
        (coords rows are image columns).
    """

    coords: jax.Array
    axis: int


# A plan is a tuple of stages applied in order; the empty plan is uniform scaling.
Plan = tuple[Stage, ...]


def _resample_rows(x: jax.Array, coords: jax.Array) -> jax.Array:
    """Samples each row of x at coords with linear interpolation.

    Args:
      x: [N, H, W, C].
      coords: [H, W_out] normalised source positions.

    Returns:
      [N, H, W_out, C].
    """
    w = x.shape[2]
    pos = jnp.clip(coords * w - 0.5, 0.0, w - 1.0)
    # Snap float round-off of the normalised coordinates, so a plan applied on its own
    # grid copies pixels exactly (classical seam carving) instead of blending by 1e-6.
    nearest = jnp.round(pos)
    pos = jnp.where(jnp.abs(pos - nearest) < 1e-3, nearest, pos)
    left = jnp.floor(pos)
    frac = (pos - left)[None, :, :, None]
    left = left.astype(jnp.int32)
    right = jnp.minimum(left + 1, w - 1)
    take = lambda idx: jnp.take_along_axis(x, idx[None, :, :, None], axis=2)
    return (1.0 - frac) * take(left) + frac * take(right)


def _apply_stage(stage: Stage, x: jax.Array, out_len: int) -> jax.Array:
    """Applies one stage to x [N, H, W, C], giving out_len along the stage's axis."""
    if stage.axis == 0:
        x = jnp.swapaxes(x, 1, 2)
    rows = x.shape[1]
    coords = stage.coords
    if coords.shape != (rows, out_len):
        # Coarser grid: the antialiased resize averages the source positions of the
        # fine columns a coarse cell covers; finer grid: linear interpolation spreads a
        # coarse seam's jump over the pixels it covers.
        coords = jax.image.resize(coords, (rows, out_len), "linear", antialias=True)
    y = _resample_rows(x, coords)
    if stage.axis == 0:
        y = jnp.swapaxes(y, 1, 2)
    return y


@functools.partial(jax.jit, static_argnames=("size",))
def uniform_scale(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Antialiased linear scaling of x [N, H, W, C] to size (h, w)."""
    n, _, _, c = x.shape
    return jax.image.resize(x, (n, size[0], size[1], c), "linear", antialias=True)


@functools.partial(jax.jit, static_argnames=("size",))
def apply_plan(plan: Plan, x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Retargets x [N, H, W, C] (image or feature map) to size (h, w) with plan.

    Each stage sets one axis to the requested length; axes that no stage changes
    (and everything, for the empty plan) are then scaled uniformly.
    """
    for stage in plan:
        out_len = size[0] if stage.axis == 0 else size[1]
        x = _apply_stage(stage, x, out_len)
    if x.shape[1:3] != tuple(size):
        x = uniform_scale(x, size)
    return x


def pixel_centres(count: int, lines: int, offset: int = 0, length: int | None = None):
    """[lines, count] stage coords: the centres of `count` consecutive pixels starting
    `offset` pixels into an axis of `length` (default `count`: the axis unchanged)."""
    coords = (offset + jnp.arange(count, dtype=jnp.float32) + 0.5) / (length or count)
    return jnp.broadcast_to(coords, (lines, count))


def crop_plan(in_size: tuple[int, int], out_size: tuple[int, int]) -> Plan:
    """Center crop as a plan: axes that shrink are cropped, axes that grow are scaled."""
    stages = []
    for axis in (1, 0):
        n_in, n_out = in_size[axis], out_size[axis]
        if n_out >= n_in:
            continue
        # A height stage runs on the output of the width stage (if any).
        rows = in_size[0] if axis == 1 else min(in_size[1], out_size[1])
        stages.append(Stage(pixel_centres(n_out, rows, (n_in - n_out) // 2, n_in), axis))
    return tuple(stages)


def resample_2d(x: jax.Array, pixel_coords: jax.Array) -> jax.Array:
    """Samples rows of x [H, W] at pixel positions [H, W_out] (linear)."""
    w = x.shape[1]
    return _resample_rows(x[None, :, :, None], (pixel_coords + 0.5) / w)[0, :, :, 0]


@functools.partial(jax.jit, static_argnames=("size",))
def center_crop(image: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Center crop of image [H, W, 3] to size (axes that grow are scaled)."""
    return apply_plan(crop_plan(image.shape[:2], size), image[None], size)[0]
