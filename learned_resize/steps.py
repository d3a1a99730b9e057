"""The compiled functions of one config: init, train step, eval step, resizer preview.

The model is a flax.nnx module, split once into a static graph definition and plain
nested dicts of arrays (params, BN statistics). The train state is a dict of those
plus the optax state and the step, so the hot step is a pure function `jax.jit`-ed
over a mesh with the batch on axis `data`, the state replicated and donated. BN
statistics are means over the global batch because the batch is one global array.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from learned_resize import optim, tasks
from learned_resize.models import resampling, resized
from learned_resize.runtime import mesh as mesh_lib


def abstract_model(config: ml_collections.ConfigDict):
    """Graph definition and abstract state of the model, without allocating it."""
    model = nnx.eval_shape(lambda: resized.build_model(config, rngs=nnx.Rngs(0)))
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def _has_dropout(rest) -> bool:
    return any(
        "dropout" in map(str, path) for path, _ in jax.tree_util.tree_flatten_with_path(rest)[0]
    )


def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


class Steps:
    """Owns the compiled functions for one config; the state is passed around explicitly.

    Args:
      config: a validated config.
      mesh: the device mesh (`mesh_lib.create_mesh()`).
      steps_per_epoch, num_steps: for the learning-rate schedule.
    """

    def __init__(self, config: ml_collections.ConfigDict, mesh, steps_per_epoch: int, num_steps):
        self.config = config
        self.mesh = mesh
        self.task = tasks.get_task(config)
        self.graphdef = abstract_model(config)[0]
        self.tx, self.schedule = optim.make_optimizer(config, steps_per_epoch, num_steps)
        repl = mesh_lib.replicated(mesh)
        self.abstract_state = jax.eval_shape(self._init_state, jax.random.key(0))[0]
        self.state_sharding = jax.tree.map(lambda _: repl, self.abstract_state)
        self.init = jax.jit(self._init_state, out_shardings=repl)
        self.train_step = jax.jit(
            self._train_step, out_shardings=(self.state_sharding, repl), donate_argnums=0
        )
        self.eval_step = jax.jit(self._eval_step, out_shardings=repl)
        self.all_finite = jax.jit(_all_finite)
        self.resize_images = jax.jit(self._resize_images)

    def sharded_abstract_state(self):
        """ShapeDtypeStructs with shardings: the target a checkpoint is restored into."""
        return jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            self.abstract_state,
            self.state_sharding,
        )

    def _init_state(self, key):
        model = resized.build_model(self.config, rngs=nnx.Rngs(params=key, dropout=key))
        _, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "batch_stats": stats,
            "opt_state": self.tx.init(params),
        }
        return state, rest

    def _model(self, params, stats, rest):
        # copy=True: fresh Variables owned by the current trace, so BN statistics and
        # dropout counters may be updated inside jax.grad.
        return nnx.merge(self.graphdef, params, stats, rest, copy=True)

    def _reseed(self, state, rest):
        """Dropout keys for this step: a function of (seed, step), so resuming replays them."""
        if not _has_dropout(rest):
            return rest
        model = self._model(state["params"], state["batch_stats"], rest)
        nnx.reseed(
            model, dropout=jax.random.fold_in(jax.random.key(self.config.seed), state["step"])
        )
        return nnx.split(model, nnx.Param, nnx.BatchStat, ...)[3]

    def _train_step(self, state, batch, rest):
        rest = self._reseed(state, rest)

        def loss_fn(params):
            model = self._model(params, state["batch_stats"], rest)
            logits = model(batch["image"], train=True)
            stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
            return self.task.loss(logits, batch), (logits, stats)

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "step": state["step"] + 1,
            "params": optax.apply_updates(state["params"], updates),
            "batch_stats": stats,
            "opt_state": opt_state,
        }
        metrics = {
            "loss": loss,
            **self.task.train_metrics(logits, batch),
            "learning_rate": self.schedule(state["step"]),
            "grad_norm": optax.global_norm(grads),
            "skipped_images": jnp.sum(batch["skipped"]),
        }
        return new_state, metrics

    def _eval_step(self, state, batch, rest):
        model = self._model(state["params"], state["batch_stats"], rest)
        logits = model(batch["image"], train=False)
        return {
            **self.task.eval_outputs(logits, batch),
            "skipped": jnp.sum(batch["skipped"]),
        }

    def _resize_images(self, state, images, rest):
        """(input, bilinear, learned-or-fixed resizer output) in [0, 1], for image grids."""
        model = self._model(state["params"], state["batch_stats"], rest)
        out = self.config.resizer.output_size
        normalised = model.normalise(images)
        bilinear = resampling.resize(normalised, out, "bilinear", self.config.resizer.antialias)
        learned = model.resize(images, train=False)
        return [model.denormalise(x) for x in (normalised, bilinear, learned)]
