"""The reconstruction, coarse to fine: at each of `config.scales`, the VGG-19 maps of the
input are retargeted with the plan to each layer's size at that scale's output, and
L-BFGS (`reconstruct.minimize`) recovers the output from them, starting from the input
warped by the plan (`initial_image`) plus the previous scale's change.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from learned_resize.retarget import loop_vgg, operators, reconstruct, vgg

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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


def uses_perceptual(cfg) -> bool:
    return cfg.beta > 0 and len(cfg.perc_layers) > 0


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
    use_perc = uses_perceptual(cfg)
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
    feats = vgg.features(vgg19, img_s, rec_layers)
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
        aux["perc_targets"] = vgg.features(vgg16, perc_in, perc_layers)
        aux["perc_weights"] = dict(zip(perc_layers, map(jnp.float32, cfg.perc_weights)))
    return _loss_fn(spec), aux, scaled
