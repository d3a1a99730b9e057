"""`retarget(image, size)`: deep-feature retargeting (Arar et al. 2019) as one call.

Pipeline (see docs/PAPERS.md part B):
  0. Size buckets (`buckets.py`, config.bucket): the photo's sides of at least 8 buckets
     (128 px) are rounded to multiples of 16 and the output likewise; the result is resized
     to the exact size at the end, so nearby photo sizes share every compiled program.
  1. VGG-19 features of the input; importance mask from the deepest layer(s).
  2. One retargeting plan. Default 'multi' (`multi.py`): a crop of crop_fraction of the
     reduction placed to keep the most of the mask, then seams for the rest. 'seam' is
     the paper's method: seam carving on the image scaled by 1/plan_stride, with a
     large energy bonus inside the mask. Also uniform scaling or a center crop.
  3. Coarse to fine: for each scale s of `scales`, the input scaled by s goes through
     VGG-19, every reconstruction layer is retargeted with the plan to the size that
     layer has for the (scaled) output, and L-BFGS reconstructs the output from them,
     starting from the input warped by the plan (every pixel starts where the plan
     puts it) plus, after the first scale, the previous scale's change upsampled.
     A scale stops at its iteration cap or once the loss changes by < rtol.

Defaults: `defaults.get_config` (chosen on scikit-image's photos only). With a mask,
seams never cross it: what the unmasked part cannot absorb is cropped around it, and
one line says so (`protect.py`).
"""

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from learned_resize.retarget import (
    buckets,
    defaults,
    image_io,
    loop_vgg,
    operators,
    plans,
    reconstruct,
    validation,
    vgg,
)
from learned_resize.retarget import mask as mask_lib

get_config = defaults.get_config

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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


@functools.partial(jax.jit, static_argnames=("graph", "layers"))
def _features(graph, state, images, layers):
    return nnx.merge(graph, state)(images, layers)


def features(net: nnx.Module, images: jax.Array, layers) -> dict[str, jax.Array]:
    """Jitted net(images, layers) (compiled once per network, shape and layer set)."""
    graph, state = nnx.split(net)
    return _features(graph, state, images, tuple(layers))


# The loop-friendly copies of the weights, made once per network object and setting.
_SPLIT_CACHE: dict[tuple[int, bool], tuple[nnx.Module, tuple]] = {}


def _split(net: nnx.Module, winograd: bool = True) -> tuple:
    key = (id(net), bool(winograd))
    cached = _SPLIT_CACHE.get(key)
    if cached is None or cached[0] is not net:
        cached = (net, loop_vgg.split_network(net, winograd))
        if len(_SPLIT_CACHE) >= 4:  # keep only the last few networks alive
            _SPLIT_CACHE.pop(next(iter(_SPLIT_CACHE)))
        _SPLIT_CACHE[key] = cached
    return cached[1]


@functools.lru_cache(maxsize=8)
def _loss_fn(spec: reconstruct.LossSpec) -> Callable:
    # One function object per spec, so `minimize` reuses its compiled solver. VGG specs
    # (networks named by depth) describe themselves stably, so the solver is stored on
    # disk and a fresh process loads it without tracing.
    fn = functools.partial(reconstruct.retarget_loss, spec=spec)
    if isinstance(spec.rec_net, int) and isinstance(spec.perc_net, (int, type(None))):
        fn.program_name = f"retarget_loss {spec!r}"
    return fn


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
    if (_uses_perceptual(cfg) or cfg.operator == "auto") and vgg16 is None:
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
        out, solves = solve(cfg, image, work_out, plan, vgg19, vgg16, log)
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


def solve(cfg, image, size, plan, vgg19, vgg16, log):
    """Coarse to fine: L-BFGS at each of cfg.scales, each started from the plan-warped
    input plus the previous scale's change. Returns (output [1, h, w, 3], solve infos)."""
    out, base, solves = None, None, []
    for i, (scale, iterations) in enumerate(zip(cfg.scales, cfg.iterations)):
        loss_fn, aux, scaled = scale_problem(cfg, image, size, plan, scale, vgg19, vgg16)
        init = initial_image(cfg, plan, image, scaled, out, base)
        base = init
        label = f"[{i + 1}/{len(cfg.scales)} {scaled.shape[2]}x{scaled.shape[1]}] "
        out, info = reconstruct.minimize(
            loss_fn,
            init,
            aux,
            iterations=iterations,
            chunk=cfg.chunk,
            memory_size=cfg.memory_size,
            max_linesearch_steps=cfg.max_linesearch_steps,
            tol=cfg.tol,
            rtol=cfg.rtol,
            label=label,
            log=log,
        )
        solves.append(info)
    return out, solves


def initial_image(cfg, plan, image, scaled, out, base) -> jax.Array:
    """A scale's start [1, h, w, 3] (cfg.init). 'plan' warps the input with the plan at
    this scale's size and, after the first scale, adds the previous scale's change (out
    - its start) upsampled, so the coarse moves carry over without blurring the fine
    detail. 'uniform' starts from the linearly scaled input (scaled), 'noise' (the
    paper's other start) from Gaussian noise with the input's per-channel mean and
    std, clipped to [0, 1] (seed cfg.noise_seed); after the first scale both start
    from the previous scale's output upsampled."""
    size, kind = scaled.shape[1:3], cfg.init
    if out is not None and kind in ("uniform", "noise"):
        return operators.uniform_scale(out, size)
    if kind == "uniform":
        return scaled
    if kind == "noise":
        mean, std = reconstruct.channel_stats(image[None])
        noise = jax.random.normal(jax.random.key(cfg.get("noise_seed", 0)), scaled.shape)
        return jnp.clip(mean + std * noise, 0.0, 1.0)
    if kind != "plan":
        raise ValueError(f"config.init must be 'plan', 'uniform' or 'noise', got {kind!r}.")
    warped = operators.apply_plan(plan, image[None], size)
    return warped if out is None else warped + operators.uniform_scale(out - base, size)


def _sizes(shapes: dict) -> tuple:
    return tuple((name, shape[1:3]) for name, shape in shapes.items())


@functools.partial(jax.jit, static_argnames=("sizes",))
def _retarget_maps(plan, feats: dict, sizes: tuple) -> dict:
    # Every layer in one compiled call: each is resampled with the plan at its own size.
    return {name: operators.apply_plan(plan, feats[name], size) for name, size in sizes}


def _uses_perceptual(cfg) -> bool:
    return cfg.beta > 0 and len(cfg.perc_layers) > 0


def importance_mask(image: jax.Array, vgg19: nnx.Module, cfg) -> jax.Array:
    """The config's importance mask [1, h_m, w_m] of image [H, W, 3] in [0, 1].

    Computed on the image scaled to cfg.mask.image_side (longer side); the mask grid
    is that of the deepest mask layer there, and callers resize it as they need.
    """
    layers = tuple(cfg.mask.layers)
    h, w = image.shape[:2]
    scale = cfg.mask.image_side / max(h, w)
    small = (max(16, round(h * scale)), max(16, round(w * scale)))
    deep = features(vgg19, operators.uniform_scale(image[None], small), layers)
    return _mask(
        {n: deep[n] for n in layers},
        layers,
        float(cfg.mask.threshold),
        int(cfg.mask.open_size),
        int(cfg.mask.close_size),
    )


_mask = jax.jit(mask_lib.importance_mask, static_argnums=(1, 2, 3, 4))


def scale_problem(
    cfg,
    image: jax.Array,
    size: tuple[int, int],
    plan: operators.Plan,
    scale: float,
    vgg19: nnx.Module,
    vgg16: nnx.Module | None,
) -> tuple[Callable, dict, jax.Array]:
    """The reconstruction problem at one scale of the coarse-to-fine schedule.

    Args:
      cfg: settings (`get_config`).
      image: [H, W, 3] input in [0, 1].
      size: final output (h, w).
      plan: the retargeting plan.
      scale: this level's factor; input and output are both scaled by it.
      vgg19, vgg16: the networks (vgg16 unused when the perceptual term is off).

    Returns:
      (loss_fn, aux, scaled): the objective and its arrays for `reconstruct.minimize`,
      and the linearly scaled input [1, h_s, w_s, 3] at this scale's output size.
    """
    use_perc = _uses_perceptual(cfg)
    rec_layers = tuple(cfg.rec_layers)
    perc_layers = tuple(cfg.perc_layers) if use_perc else ()
    in_s = tuple(max(1, round(n * scale)) for n in image.shape[:2])
    out_s = tuple(max(1, round(n * scale)) for n in size)
    # Winograd for the wide layers where the output is large enough to repay its compile.
    fast = out_s[0] * out_s[1] >= cfg.get("winograd_min_pixels", 0)
    rec_static, rec_params = _split(vgg19, fast)
    perc_static, perc_params = _split(vgg16, fast) if use_perc else (None, None)
    spec = reconstruct.LossSpec(
        rec_static, rec_layers, perc_static, perc_layers, float(cfg.perc_scale) if use_perc else 1.0
    )
    if cfg.stats == "input":
        mean, std = reconstruct.channel_stats(image[None])
    elif cfg.stats == "imagenet":
        mean, std = jnp.asarray(_IMAGENET_MEAN), jnp.asarray(_IMAGENET_STD)
    else:
        raise ValueError(f"config.stats must be 'input' or 'imagenet', got {cfg.stats!r}.")

    img_s = operators.uniform_scale(image[None], in_s) if scale != 1 else image[None]
    feats = features(vgg19, img_s, rec_layers)
    shapes = vgg.layer_shapes(vgg19, out_s, rec_layers)
    aux = dict(
        rec_params=rec_params,
        rec_targets=_retarget_maps(plan, {n: feats[n] for n in rec_layers}, _sizes(shapes)),
        rec_weights=dict(zip(rec_layers, map(jnp.float32, cfg.rec_weights))),
        mean=mean,
        std=std,
        **{
            k: jnp.asarray(cfg[k], jnp.float32)
            for k in ("alpha", "beta", "gamma", "tv_weight", "stats_weight")
        },
    )
    scaled = operators.uniform_scale(image[None], out_s)
    if use_perc:
        aux["perc_params"] = perc_params
        if cfg.perc_target == "plan":
            perc_ref = operators.apply_plan(plan, img_s, out_s)
        elif cfg.perc_target == "uniform":
            perc_ref = scaled
        else:
            raise ValueError(
                f"config.perc_target must be 'plan' or 'uniform', got {cfg.perc_target!r}."
            )
        perc_in = reconstruct.perceptual_input(perc_ref, spec.perc_scale)
        aux["perc_targets"] = features(vgg16, perc_in, perc_layers)
        aux["perc_weights"] = dict(zip(perc_layers, map(jnp.float32, cfg.perc_weights)))
    return _loss_fn(spec), aux, scaled


def retarget(image, size: tuple[int, int], **kwargs) -> jax.Array:
    """Retargets image [H, W, 3] to size (height, width); see `retarget_details`.

    Example:
      >>> out = retarget(skimage.data.astronaut(), (512, 384))  # 3/4 width
    """
    return retarget_details(image, size, **kwargs).image
