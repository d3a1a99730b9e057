"""Reconstructing an image from retargeted deep features: the loss and its L-BFGS solver.

The output image R (h x w) minimises

    alpha * sum_l a_l * |phi19_l(R) - T_l|^2 / |T_l|^2        (reconstruction)
  + beta  * sum_j b_j * |phi16_j(R) - phi16_j(S)|^2 / |phi16_j(S)|^2   (perceptual)
  + gamma * (tv_weight * TV(R) + stats_weight * stats(R))     (regularisation)

where phi19_l are VGG-19 features of layer l, T_l the input's layer-l features
retargeted at that layer's own size, phi16_j VGG-16 features, S the linearly scaled
input, TV the mean squared difference of neighbouring pixels (squared rather than
absolute so the objective stays smooth for L-BFGS), and stats the squared distance of
the per-channel mean and standard deviation of R from reference values (by default
the input's own, i.e. the statistics of the natural image being resized). Each
feature term is divided by the energy of its target so layers of very different
magnitudes get comparable weights. Norms are means over elements.

`minimize` runs `optax.lbfgs` (zoom line search) in a `lax.while_loop` inside one
`jax.jit`, one chunk of iterations per call, and reports the loss after each chunk.
The optimised variable is the image itself, not a logit: a sigmoid parametrisation
gives a pixel that starts near 0 or 1 almost no gradient, so content the plan moves
onto it (a white shirt onto a dark jacket) stayed frozen. Instead the objective adds
`range_weight * mean(relu(x - 1)^2 + relu(-x)^2)`, which keeps pixels near [0, 1]
without flattening any gradient, and the result is clipped. A solve stops at its
iteration cap, or earlier once an iteration lowers the loss by less than `rtol` of
its value (relative change), or when the line search cannot improve.
"""

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from learned_resize.retarget import loop_vgg
from learned_resize.runtime import executables

# Weight of the quadratic penalty on pixels outside [0, 1] (mean over elements).
RANGE_WEIGHT = 10.0


def total_variation(image: jax.Array) -> jax.Array:
    """Mean squared difference between vertically and horizontally adjacent pixels.

    Args:
      image: [N, H, W, C].
    """
    dy = image[:, 1:] - image[:, :-1]
    dx = image[:, :, 1:] - image[:, :, :-1]
    return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))


def channel_stats(image: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and standard deviation of image [N, H, W, C] -> ([C], [C])."""
    mean = jnp.mean(image, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(image - mean), axis=(0, 1, 2))
    # The epsilon keeps the gradient finite on a flat image (d sqrt(v)/dv at v = 0).
    return mean, jnp.sqrt(var + 1e-12)


def stats_prior(image: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Squared distance of the image's per-channel mean and std from mean and std."""
    m, s = channel_stats(image)
    return jnp.sum(jnp.square(m - mean)) + jnp.sum(jnp.square(s - std))


def feature_loss(
    features: Mapping[str, jax.Array],
    targets: Mapping[str, jax.Array],
    weights: Mapping[str, jax.Array | float],
) -> jax.Array:
    """sum_l weights[l] * mean((features[l] - targets[l])^2) / mean(targets[l]^2)."""
    total = jnp.zeros((), jnp.float32)
    for name, target in targets.items():
        err = jnp.mean(jnp.square(features[name].astype(jnp.float32) - target))
        total += weights[name] * err / (jnp.mean(jnp.square(target)) + 1e-8)
    return total


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """The static (hashable) part of the retargeting loss: networks and layer names.

    Attributes:
      rec_net: static part of the reconstruction network (VGG-19) from `split_network`.
      rec_layers: its layers compared with the retargeted maps.
      perc_net: static part of the perceptual network (VGG-16), or None.
      perc_layers: its layers compared with those of the scaled input.
      perc_scale: the perceptual network sees the output scaled by this factor; deep
        semantic features need little resolution, and at 0.5 the VGG-16 pass costs a
        quarter.
    """

    rec_net: int | nnx.GraphDef
    rec_layers: tuple[str, ...]
    perc_net: int | nnx.GraphDef | None = None
    perc_layers: tuple[str, ...] = ()
    perc_scale: float = 1.0


def perceptual_input(image: jax.Array, scale: float) -> jax.Array:
    """image [N, h, w, C] scaled (antialiased linear) by scale for the perceptual network."""
    if scale == 1.0:
        return image
    n, h, w, c = image.shape
    size = (n, max(1, round(h * scale)), max(1, round(w * scale)), c)
    return jax.image.resize(image, size, "linear", antialias=True)


def _terms(image: jax.Array, aux: Mapping, spec: LossSpec) -> dict[str, jax.Array]:
    feats = loop_vgg.network_features(spec.rec_net, aux["rec_params"], image, spec.rec_layers)
    terms = {
        "rec": feature_loss(feats, aux["rec_targets"], aux["rec_weights"]),
        "tv": total_variation(image),
        "stats": stats_prior(image, aux["mean"], aux["std"]),
    }
    if spec.perc_net is not None and spec.perc_layers:
        small = perceptual_input(image, spec.perc_scale)
        feats = loop_vgg.network_features(
            spec.perc_net, aux["perc_params"], small, spec.perc_layers
        )
        terms["perc"] = feature_loss(feats, aux["perc_targets"], aux["perc_weights"])
    return terms


def retarget_loss(image: jax.Array, aux: Mapping, spec: LossSpec) -> jax.Array:
    """The reconstruction objective for image [N, h, w, 3] in [0, 1].

    Args:
      image: the current output.
      aux: arrays (traced, so changing them does not recompile): rec_params and
        perc_params (network weights from `split_network`), rec_targets / perc_targets
        (layer -> target map), rec_weights / perc_weights (layer -> scalar), alpha,
        beta, gamma, tv_weight, stats_weight, mean, std.
      spec: networks and layers.
    """
    terms = _terms(image, aux, spec)
    loss = aux["alpha"] * terms["rec"]
    if "perc" in terms:
        loss += aux["beta"] * terms["perc"]
    reg = aux["tv_weight"] * terms["tv"] + aux["stats_weight"] * terms["stats"]
    return loss + aux["gamma"] * reg


def loss_terms(image: jax.Array, aux: Mapping, spec: LossSpec) -> dict[str, float]:
    """The unweighted terms of `retarget_loss` at image, for reports."""
    return {k: float(v) for k, v in jax.jit(_terms, static_argnums=2)(image, aux, spec).items()}


@dataclasses.dataclass
class SolveInfo:
    """What `minimize` did.

    Attributes:
      iterations: L-BFGS iterations run.
      evaluations: loss-and-gradient evaluations (network forward + backward passes).
      losses: loss after each chunk, the first entry at the start.
      seconds: wall time including compilation.
    """

    iterations: int = 0
    evaluations: int = 0
    losses: list[float] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


@functools.lru_cache(maxsize=16)
def _chunk_runner(loss_fn: Callable, memory_size: int, max_linesearch_steps: int):
    """A jitted function running L-BFGS iterations until a stop index or convergence.

    Cached per (loss function, settings) so repeated solves at one shape compile once.
    """
    solver = optax.lbfgs(
        memory_size=memory_size,
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=max_linesearch_steps, initial_guess_strategy="one"
        ),
    )

    def init(x):
        z = x.astype(jnp.float32)
        return z, _strong(solver.init(z))

    def run(z, state, aux, start, stop, tol, rtol):
        def value_fn(z):
            return loss_fn(z, aux) + RANGE_WEIGHT * range_penalty(z)

        def body(carry):
            z, state, it, evals, _ = carry
            value = optax.tree.get(state, "value")
            grad = optax.tree.get(state, "grad")
            # A fresh state (value inf, gradient 0) makes L-BFGS propose a zero step,
            # whose one line-search evaluation is the loss and gradient at z. Priming
            # this way keeps a single copy of the network's forward and backward pass
            # in the compiled program (a separate jitted value_and_grad cost as much
            # compile time as the coarse solve itself on this CPU).
            fresh = ~jnp.isfinite(value)
            updates, new_state = solver.update(
                grad, state, z, value=value, grad=grad, value_fn=value_fn
            )
            new_z = optax.apply_updates(z, updates)
            new_value = optax.tree.get(new_state, "value")
            evals = evals + optax.tree.get(new_state, "num_linesearch_steps")
            # After priming, restart L-BFGS's memory from the evaluated point.
            primed = optax.tree.set(
                solver.init(z), value=new_value, grad=optax.tree.get(new_state, "grad")
            )
            new_state = jax.tree.map(lambda a, b: jnp.where(fresh, a, b), primed, new_state)
            # A failed line search (no decrease, or non-finite values at float32's
            # precision floor) ends the solve and keeps the last good point.
            failed = ~jnp.isfinite(new_value) | ~(fresh | (new_value < value))
            keep = lambda old, new: jnp.where(failed, old, new)
            z, state = jax.tree.map(keep, (z, state), (new_z, new_state))
            step = (~failed & ~fresh).astype(it.dtype)
            # Relative decrease of this iteration; below rtol the solve has stalled.
            flat = ~fresh & ~failed & ((value - new_value) <= rtol * jnp.abs(value))
            return z, state, it + step, evals, failed | flat

        def cond(carry):
            _, state, it, _, done = carry
            fresh = ~jnp.isfinite(optax.tree.get(state, "value"))
            grad_norm = optax.tree.norm(optax.tree.get(state, "grad"))
            return (fresh | ((it < stop) & (grad_norm > tol))) & ~done

        init_carry = (z, state, jnp.asarray(start, jnp.int32), jnp.zeros((), jnp.int32), False)
        z, state, it, evals, done = jax.lax.while_loop(cond, body, init_carry)
        return z, _strong(state), it, evals, optax.tree.get(state, "value"), done

    # A loss that can name itself stably (api's VGG losses) gets its solver stored on
    # disk: a fresh process then loads it without tracing (learned_resize/runtime/executables.py).
    name = getattr(loss_fn, "program_name", None)
    if name is None:
        return jax.jit(init), jax.jit(run)
    name = f"{name}; memory {memory_size}; line search {max_linesearch_steps}"
    return jax.jit(init), executables.stored_jit(run, name=name)


def _strong(tree):
    # Strong dtypes, so a state fed back into `run` matches and does not retrace.
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), tree)


def minimize(
    loss_fn: Callable[[jax.Array, object], jax.Array],
    init_image: jax.Array,
    aux,
    *,
    iterations: int,
    chunk: int = 10,
    memory_size: int = 10,
    max_linesearch_steps: int = 20,
    tol: float = 0.0,
    rtol: float = 0.0,
    label: str = "",
    log: Callable[[str], None] | None = print,
) -> tuple[jax.Array, SolveInfo]:
    """Minimises loss_fn(image, aux) over images in [0, 1] with L-BFGS.

    Args:
      loss_fn: scalar objective; pass the same (hashable) object across calls to reuse
        the compiled solver, e.g. a `functools.partial` of a module-level function
        kept by the caller.
      init_image: [N, h, w, C] start in [0, 1] (e.g. the linearly scaled input).
      aux: pytree of arrays the loss reads (targets, weights, network state).
      iterations: maximum L-BFGS iterations.
      chunk: iterations per jitted call; the loss is reported after each.
      memory_size: L-BFGS history length.
      max_linesearch_steps: zoom line search limit per iteration.
      tol: stop once the gradient norm is at most tol.
      rtol: stop once one iteration lowers the loss by at most rtol of its value.
      label: prefix of the progress lines.
      log: progress printer, or None for silence.

    Returns:
      (image, info): the optimised image [N, h, w, C] in [0, 1] and a `SolveInfo`.
    """
    start_time = time.perf_counter()
    init_fn, run_fn = _chunk_runner(loss_fn, memory_size, max_linesearch_steps)
    z, state = init_fn(init_image)
    # start = stop = 0: only the priming evaluation of the loss and gradient at z.
    z, state, _, evals, value, _ = run_fn(z, state, aux, 0, 0, tol, rtol)
    info = SolveInfo(evaluations=int(evals))
    info.losses.append(float(value))
    if log:
        log(f"{label}iter    0/{iterations}  loss {info.losses[0]:.5g}")
    it = 0
    while it < iterations:
        stop = min(it + chunk, iterations)
        z, state, new_it, evals, value, done = run_fn(z, state, aux, it, stop, tol, rtol)
        new_it = int(new_it)
        info.evaluations += int(evals)
        info.losses.append(float(value))
        if log:
            elapsed = time.perf_counter() - start_time
            log(
                f"{label}iter {new_it:4d}/{iterations}  loss {info.losses[-1]:.5g}  "
                f"evals {info.evaluations}  {elapsed:.1f}s"
            )
        it = new_it
        if it < stop or bool(done):  # converged, stalled, or the line search failed
            break
    info.iterations = it
    info.seconds = time.perf_counter() - start_time
    return _clip01(z), info


_clip01 = jax.jit(lambda x: jnp.clip(x, 0.0, 1.0))


def range_penalty(image: jax.Array) -> jax.Array:
    """Mean squared excursion of image outside [0, 1] (0 inside the range)."""
    return jnp.mean(jnp.square(jax.nn.relu(image - 1.0)) + jnp.square(jax.nn.relu(-image)))
