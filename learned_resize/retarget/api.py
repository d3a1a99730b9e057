"""`retarget(image, size)`: deep-feature retargeting (Arar et al. 2019) as one call.

Pipeline (see docs/PAPERS.md part B):
  0. Working size (`buckets.py`): the photo scaled so its longer side is at most
     config.work_side, its sides rounded to config.bucket, so nearby photo sizes share
     every compiled program.
  1. Importance mask from VGG-19's deepest layers (`mask.py`).
  2. One retargeting plan (`plans.py`). Default 'multi' (`multi.py`): a crop of
     crop_fraction of the reduction placed to keep the most of the mask, then seams
     (`seams.py`) for the rest. 'seam' is the paper's method; also 'crop', 'uniform',
     and 'auto' (the best-scoring candidate, `quality.py`).
  3. Coarse-to-fine reconstruction (`coarse_to_fine.py`) of what the plan does not
     copy, from the VGG-19 maps retargeted with the plan, by L-BFGS.
  4. The plan applied to the full-resolution photo by copying pixels, and the
     reconstruction's change carried up where the plan does not copy
     (`buckets.carry_to_full`).

Defaults: `defaults.get_config` (chosen on scikit-image's photos only). With a mask,
seams never cross it: what the unmasked part cannot absorb is cropped around it, and
one line says so (`protect.py`).
"""

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from learned_resize.retarget import (
    buckets,
    coarse_to_fine,
    defaults,
    image_io,
    operators,
    plans,
    reconstruct,
    validation,
    vgg,
)
from learned_resize.retarget import mask as mask_lib

get_config = defaults.get_config


@dataclasses.dataclass
class RetargetResult:
    """Everything `retarget_details` computed.

    Attributes:
      image: [h, w, 3] float32 in [0, 1], the retargeted image (three equal channels
        for a grey input).
      mask: [h_m, w_m] importance mask on the deepest mask layer's grid.
      plan: the retargeting plan (normalised coordinates, any resolution).
      work_size: (input, output) (h, w) sizes the work was done at (`buckets.py`).
      operator: the operator whose plan was used (auto's choice for 'auto').
      note: '' or the sentence saying the plan fell back to cropping.
      solves: one `reconstruct.SolveInfo` per scale.
      seconds: wall time of the whole call.
    """

    image: jax.Array
    mask: jax.Array
    plan: operators.Plan
    work_size: tuple[tuple[int, int], tuple[int, int]]
    solves: list[reconstruct.SolveInfo]
    seconds: float
    note: str = ""
    operator: str = ""


check_size = image_io.check_size
as_float_image = image_io.as_float_image
MAX_SIDE = image_io.MAX_SIDE


def _load(depth: int, path=None) -> nnx.Module:
    from learned_resize.retarget import weights  # heavy imports only when needed

    return weights.load_vgg(depth) if path is None else weights.load_vgg_file(path, depth)


def retarget_details(
    image,
    size: tuple[int, int],
    *,
    config: ml_collections.ConfigDict | None = None,
    vgg19: nnx.Module | None = None,
    vgg16: nnx.Module | None = None,
    log: Callable[[str], None] | None = print,
    protect_mask=None,
    remove_mask=None,
    weights=None,
) -> RetargetResult:
    """Retargets image to size by reconstruction from retargeted VGG-19 features.

    A grey photo ([H, W], one channel, or three equal ones) is retargeted as its one
    channel repeated, and the result brought back to grey (BT.601 luma of its channels,
    repeated in all three): the colour VGG losses would otherwise tint it.

    Args:
      image: [H, W, 3] uint8, or float in [0, 1].
      size: output (height, width) in pixels.
      config: settings, `get_config()` by default.
      vgg19: the reconstruction network (default: `weights.load_vgg(19)`).
      vgg16: the perceptual network (default: `weights.load_vgg(16)` if beta > 0).
      log: progress printer, or None.
      protect_mask: optional [H, W] user mask (1 = keep), added to the importance mask.
      remove_mask: optional [H, W] user mask of an object for the seams to take first.
      weights: optional VGG-19 weights file (Keras notop .h5, or a torchvision state
        dict as .safetensors or .pth) used instead of the cache; not with vgg19.

    Returns:
      A `RetargetResult`.

    Raises:
      ValueError: bad image, size or config.
      FileNotFoundError: the VGG weight cache is missing (the message says how to build it).
    """
    start = time.perf_counter()
    cfg = get_config() if config is None else config
    image = as_float_image(image)
    gray = image_io.is_gray(image)
    size = check_size(size, image.shape[:2])
    validation.check_config(cfg)
    if weights is not None and vgg19 is not None:
        raise ValueError("Pass either weights (a file) or vgg19 (a network), not both.")
    vgg19 = _load(19, weights) if vgg19 is None else vgg19
    if (coarse_to_fine.uses_perceptual(cfg) or cfg.operator == "auto") and vgg16 is None:
        vgg16 = _load(16)

    # The work is done at a bounded working size (config.work_side), its sides rounded
    # to the bucket so nearby photo sizes share every compiled program (buckets.py).
    size_in = tuple(image.shape[:2])
    full_image = np.asarray(image)
    scaled_in, scaled_out = buckets.scaled_sizes(size_in, size, cfg.get("work_side", 0))
    work_in, work_out = buckets.working_sizes(scaled_in, scaled_out, cfg.get("bucket", 0))
    # The output keeps the photo's exact in/out ratio on each axis (not rounded to the
    # bucket): the plan is carried to full size, where a copied run must stay 1:1.
    work_out = buckets.exact_output(size_in, size, work_in)
    if work_in != size_in:
        image = jax.device_put(buckets.resize_image(full_image, work_in))
    else:
        image = jax.device_put(full_image)
    if log:
        log(
            f"working size {work_in[1]}x{work_in[0]} -> {work_out[1]}x{work_out[0]} for "
            f"{size_in[1]}x{size_in[0]} -> {size[1]}x{size[0]} (config.work_side="
            f"{cfg.get('work_side', 0)}, config.bucket={cfg.get('bucket', 0)})"
        )
    protect_mask, remove_mask = (
        None if m is None else buckets.resize_mask(np.asarray(m, np.float32), work_in)
        for m in (protect_mask, remove_mask)
    )
    mask, remove_mask = _user_masks(importance_mask(image, vgg19, cfg), protect_mask, remove_mask)
    operator = cfg.operator
    if operator == "auto":
        vgg16 = _load(16) if vgg16 is None else vgg16
        scores = {}
        plan, note, operator, why = plans.auto_plan(
            cfg, image, work_out, mask, remove_mask, vgg16, scores
        )
        if log:
            log(why)
    else:
        plan, note = plans.plan_for(cfg, image, work_out, mask, remove_mask)
    if note and work_in != size_in:
        note += f" (px of the {work_in[1]}x{work_in[0]} working size)"
    if log and note:
        log(f"note: {note}")
    # Only what the plan does not copy is reconstructed (a crop copies every pixel).
    weight = buckets.changed_weight(plan, work_in, work_out, cfg.get("blend_margin", 8))
    if log:
        log(
            f"mask covers {float(jnp.mean(mask)):.0%} of the image; plan: {operator} "
            f"with {len(plan)} stage(s), {float(np.mean(weight > 0)):.0%} of the output to "
            f"reconstruct; {time.perf_counter() - start:.1f}s"
        )
    solves, out = [], None
    carry = cfg.get("carry", "change")
    if np.any(weight):
        out, solves = coarse_to_fine.solve(cfg, image, work_out, plan, vgg19, vgg16, log)
        out = np.asarray(out[0])
        if cfg.operator == "auto":  # judge the choice again by its reconstructed result
            work_image = np.asarray(image)
            result = buckets.carry_to_full(plan, work_image, work_out, work_image, out, weight)
            keep, line = plans.recheck(cfg, work_image, result, operator, mask, scores, vgg16)
            if log:
                log(line)
            if not keep:
                plan, note, _ = scores["crop"]
                operator, out = "crop", None
    result = buckets.carry_to_full(plan, full_image, size, np.asarray(image), out, weight, carry)
    if gray:  # the VGG losses pull the channels apart; a grey photo stays grey
        result = image_io.to_gray(result)
    return RetargetResult(
        image=jax.device_put(result),
        mask=mask[0],
        plan=plan,
        work_size=(work_in, work_out),
        solves=solves,
        seconds=time.perf_counter() - start,
        note=note,
        operator=operator,
    )


def _user_masks(mask, protect_mask, remove_mask):
    """(importance mask with the user's protect mask added and remove mask taken out,
    the remove mask as float32 or None); user masks are [H, W], the mask [1, h, w]."""

    def on_grid(user):
        scaled = operators.uniform_scale(
            jnp.asarray(user, jnp.float32)[None, ..., None], mask.shape[1:]
        )
        return (scaled[..., 0] > 0.25).astype(mask.dtype)

    if protect_mask is not None:
        mask = jnp.maximum(mask, on_grid(protect_mask))
    if remove_mask is not None:
        remove_mask = jnp.asarray(remove_mask, jnp.float32)
        mask = mask * (1.0 - on_grid(remove_mask))
    return mask, remove_mask


def importance_mask(image: jax.Array, vgg19: nnx.Module, cfg) -> jax.Array:
    """The config's importance mask [1, h_m, w_m] of image [H, W, 3] in [0, 1].

    Computed on the image scaled to cfg.mask.image_side (longer side); the mask grid
    is that of the deepest mask layer there, and callers resize it as they need.
    """
    layers = tuple(cfg.mask.layers)
    h, w = image.shape[:2]
    scale = cfg.mask.image_side / max(h, w)
    small = (max(16, round(h * scale)), max(16, round(w * scale)))
    deep = vgg.features(vgg19, operators.uniform_scale(image[None], small), layers)
    return _mask(
        {n: deep[n] for n in layers},
        layers,
        float(cfg.mask.threshold),
        int(cfg.mask.open_size),
        int(cfg.mask.close_size),
    )


_mask = jax.jit(mask_lib.importance_mask, static_argnums=(1, 2, 3, 4))


def retarget(image, size: tuple[int, int], **kwargs) -> jax.Array:
    """Retargets image [H, W, 3] to size (height, width); see `retarget_details`.

    Example:
      >>> out = retarget(skimage.data.astronaut(), (512, 384))  # 3/4 width
    """
    return retarget_details(image, size, **kwargs).image
