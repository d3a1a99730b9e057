"""Training and evaluation: sharded steps, checkpoints, logs.

The model is a flax.nnx module, split once into a static graph definition and
plain nested dicts of arrays (params, BN statistics). The train state is a dict
of those plus the optax state and the step, so the hot step is a pure function
`jax.jit`-ed over a mesh with the batch on axis `data`, the state replicated and
donated. BN statistics are means over the global batch because the batch is one
global array.
"""

import json
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from learned_resize import (
    checkpoints,
    config_lib,
    image_grid,
    input_pipeline,
    iqa,
    metric_writers,
    parallel,
    resizers,
)
from learned_resize.models import resized

log = metric_writers.log

# Fault injection for the resume tests: SIGKILL this process right after that step.
_KILL_AT_STEP = int(os.environ.get("LEARNED_RESIZE_KILL_AT_STEP", "0"))


# --------------------------------------------------------------------------- model and state


def abstract_model(config: ml_collections.ConfigDict):
    """Graph definition and abstract state of the model, without allocating it."""
    model = nnx.eval_shape(lambda: resized.build_model(config, rngs=nnx.Rngs(0)))
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int):
    """SGD with momentum on the schedule from `config.optim`, lr scaled by batch size."""
    o = config.optim
    base_lr = o.learning_rate * config.batch_size / o.reference_batch_size
    warmup = int(o.warmup_epochs * steps_per_epoch)
    if o.schedule == "constant":
        decay = optax.constant_schedule(base_lr)
    elif o.schedule == "cosine":
        decay = optax.cosine_decay_schedule(base_lr, max(1, total_steps(config) - warmup))
    else:  # The paper: x0.94 every 2 epochs.
        decay = optax.exponential_decay(
            base_lr,
            transition_steps=max(1, int(o.decay_epochs * steps_per_epoch)),
            decay_rate=o.decay_rate,
            staircase=True,
        )
    schedule = decay
    if warmup:
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, base_lr, warmup), decay], [warmup]
        )
    parts = []
    if o.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(o.grad_clip_norm))
    if o.weight_decay > 0:
        # L2 on kernels only: BN scales/biases and biases are not decayed.
        parts.append(
            optax.add_decayed_weights(
                o.weight_decay, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
            )
        )
    parts.append(optax.sgd(schedule, momentum=o.momentum, nesterov=o.nesterov))
    return optax.chain(*parts), schedule


def total_steps(config: ml_collections.ConfigDict) -> int:
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    info = input_pipeline.get_dataset_info(config)
    return math.ceil(config.num_epochs * info.num_train / config.batch_size)


def _has_dropout(rest) -> bool:
    return any(
        "dropout" in map(str, path) for path, _ in jax.tree_util.tree_flatten_with_path(rest)[0]
    )


class Trainer:
    """Owns the compiled functions for one config; the state is passed around explicitly."""

    def __init__(self, config: ml_collections.ConfigDict, mesh, steps_per_epoch: int):
        self.config = config
        self.mesh = mesh
        self.graphdef, abs_params, abs_stats, _ = abstract_model(config)
        self.tx, self.schedule = make_optimizer(config, steps_per_epoch)
        self.repl = parallel.replicated(mesh)
        self.data = parallel.data_sharding(mesh)
        self.abstract_state = jax.eval_shape(self._init_state, jax.random.key(0))[0]
        self.state_sharding = jax.tree.map(lambda _: self.repl, self.abstract_state)
        self.init = jax.jit(self._init_state, out_shardings=self.repl)
        self.train_step = jax.jit(
            self._train_step, out_shardings=(self.state_sharding, self.repl), donate_argnums=0
        )
        self.eval_step = jax.jit(self._eval_step, out_shardings=self.repl)
        self.resize_images = jax.jit(self._resize_images)
        self._eval_batches = None
        self.last_predictions = None  # IQA: every eval example's probs, hist, mask
        self.iqa_task = config.task == "iqa"
        self.targets = ("hist",) if self.iqa_task else ("label",)
        self._last_eval_images = None
        del abs_params, abs_stats

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

    def _loss(self, logits, batch):
        if self.iqa_task:  # `logits` are score probabilities here.
            return jnp.mean(iqa.emd_loss(logits, batch["hist"]))
        n = logits.shape[-1]
        targets = optax.smooth_labels(
            jax.nn.one_hot(batch["label"], n), self.config.optim.label_smoothing
        )
        return optax.softmax_cross_entropy(logits, targets).mean()

    def _train_step(self, state, batch, rest):
        rest = self._reseed(state, rest)

        def loss_fn(params):
            model = self._model(params, state["batch_stats"], rest)
            logits = model(batch["image"], train=True)
            stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
            return self._loss(logits, batch), (logits, stats)

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "step": state["step"] + 1,
            "params": optax.apply_updates(state["params"], updates),
            "batch_stats": stats,
            "opt_state": opt_state,
        }
        if self.iqa_task:
            error = jnp.abs(iqa.mean_score(logits) - iqa.mean_score(batch["hist"]))
            task_metric = {"mean_score_abs_error": jnp.mean(error)}
        else:
            task_metric = {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}
        metrics = {
            "loss": loss,
            **task_metric,
            "learning_rate": self.schedule(state["step"]),
            "grad_norm": optax.global_norm(grads),
            "skipped_images": jnp.sum(batch["skipped"]),
        }
        return new_state, metrics

    def _eval_step(self, state, batch, rest):
        model = self._model(state["params"], state["batch_stats"], rest)
        logits = model(batch["image"], train=False)
        mask = batch["mask"]
        if self.iqa_task:  # Correlations need every prediction: gathered on the host.
            return {
                "probs": logits,
                "hist": batch["hist"],
                "mask": mask,
                "skipped": jnp.sum(batch["skipped"]),
            }
        labels = batch["label"]
        top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return {
            "correct_top1": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
            "correct_top5": jnp.sum(jnp.any(top5 == labels[:, None], -1) * mask),
            "loss_sum": jnp.sum(loss * mask),
            "count": jnp.sum(mask),
            "skipped": jnp.sum(batch["skipped"]),
        }

    def _resize_images(self, state, images, rest):
        model = self._model(state["params"], state["batch_stats"], rest)
        out = self.config.resizer.output_size
        bilinear = resizers.resize(
            model.normalise(images), out, "bilinear", self.config.resizer.antialias
        )
        learned = model.resize(images, train=False)
        return [model.denormalise(x) for x in (model.normalise(images), bilinear, learned)]

    def evaluate(self, state, rest) -> dict:
        """Top-1/top-5 and loss over the whole eval split (padding masked out)."""
        config = self.config
        if self._eval_batches is None:  # Opened once: re-iterable, keeps grain workers alive.
            self._eval_batches, _ = input_pipeline.create_eval_iterator(
                config, image_size=tuple(config.input_size)
            )
        batches = self._eval_batches
        totals = None
        gathered = []
        first = None
        for local in batches:
            if first is None:
                first = local["image"][: config.num_eval_images]
            # `skipped` goes through the global batch so every process's corrupt images count.
            batch = parallel.global_batch(
                {k: local[k] for k in ("image", "mask", "skipped", *self.targets)}, self.mesh
            )
            out = self.eval_step(state, batch, rest)
            if self.iqa_task:
                gathered.append(jax.device_get(out))
                continue
            totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
        self._last_eval_images = first
        if self.iqa_task:
            joined = {
                k: np.concatenate([g[k] for g in gathered]) for k in ("probs", "hist", "mask")
            }
            self.last_predictions = joined
            metrics = iqa.iqa_eval_metrics(joined["probs"], joined["hist"], joined["mask"])
            metrics = {k: float(v) for k, v in metrics.items()}
            metrics["skipped_images"] = float(sum(g["skipped"] for g in gathered))
            return metrics
        totals = jax.device_get(totals)
        count = max(float(totals["count"]), 1.0)
        metrics = {
            "top1": float(totals["correct_top1"]) / count,
            "top5": float(totals["correct_top5"]) / count,
            "loss": float(totals["loss_sum"]) / count,
            "num_examples": float(totals["count"]),
            "skipped_images": float(totals["skipped"]),
        }
        self._last_eval_images = first
        return metrics

    def image_grid(self, state, rest) -> np.ndarray | None:
        images = self._last_eval_images
        if jax.process_index() != 0 or images is None or not len(images):
            return None  # Only process 0 writes images.
        # Process 0's own images through its local copy of the replicated state: the other
        # processes hold other images, so a computation over the global mesh would not agree.
        device = jax.local_devices()[0]
        local = lambda tree: jax.tree.map(
            lambda x: jax.device_put(x.addressable_data(0), device), tree
        )
        images = jax.device_put(jnp.asarray(images), device)
        cols = self.resize_images(local(state), images, local(rest))
        return image_grid.resizer_grid([np.asarray(c) for c in jax.device_get(cols)])


# --------------------------------------------------------------------------- checkpoints


def _leaves_by_path(tree) -> dict:
    """{'a/0/kernel': leaf}: checkpoints may store integer keys (nnx.List) as strings."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): leaf
        for path, leaf in flat
    }


def _merge_parts(state: dict, loaded: dict, where: str) -> dict:
    """Replaces the loaded sub-trees of `state`, checking that every name and shape matches.

    Leaves the source has and this model lacks are left out (e.g. a 1000-class head when
    an IQA model takes only the backbone); a leaf this model has and the source lacks, or
    one of another shape, is an error.
    """
    for key in ("params", "batch_stats"):
        for part, tree in loaded[key].items():
            target = state[key][part]
            found = _leaves_by_path(tree)
            expected = _leaves_by_path(target)
            bad = [
                p
                for p, t in expected.items()
                if p not in found or np.shape(found[p]) != np.shape(t)
            ]
            if bad:
                raise ValueError(
                    f"The {part} in {where} does not match this config's {part} (e.g. "
                    f"{key}/{part}/{bad[0]} is missing or has another shape); initialise from a "
                    "run with the same config.model / config.resizer settings."
                )
            unused = sorted(set(found) - set(expected))
            if unused:
                log(
                    f"Not loaded from {where} (this model has no such {part} leaves): "
                    f"{', '.join(unused[:4])}{' ...' if len(unused) > 4 else ''}"
                )
            leaves, treedef = jax.tree_util.tree_flatten(target)
            state[key][part] = jax.tree_util.tree_unflatten(
                treedef,
                [
                    jax.device_put(jnp.asarray(found[p], t.dtype), t.sharding)
                    for p, t in zip(expected, leaves, strict=True)
                ],
            )
    return state


def initialise(trainer: Trainer, manager, config) -> tuple[dict, object, int]:
    """Resumes from the workdir, else initialises (with `config.init_from` parts)."""
    state, rest = trainer.init(jax.random.key(config.seed))
    meta = checkpoints.model_meta(config)
    latest = manager.latest_step()
    if latest is not None:
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            trainer.abstract_state,
            trainer.state_sharding,
        )
        state = checkpoints.restore(manager, latest, abstract, meta)
        log(f"Resumed from checkpoint at step {latest}.")
        return state, rest, latest
    sources = []
    if config.init_from.path:
        parts = [
            p
            for p in config.init_from.parts
            if not (p == "resizer" and config.init_from.resizer_path)
        ]
        sources.append((config.init_from.path, parts))
    if config.init_from.resizer_path:
        sources.append((config.init_from.resizer_path, ["resizer"]))
    for path, parts in sources:
        loaded = checkpoints.load_parts(path, parts, meta)
        state = _merge_parts(state, loaded, path)
        log(f"Initialised {', '.join(sorted(loaded['params']))} from {path}.")
    return state, rest, 0


# --------------------------------------------------------------------------- main loops


def _save_config(config, workdir):
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains `config` in `workdir` (resuming if it has checkpoints), returns final eval metrics."""
    config_lib.validate_config(config)
    workdir = workdir if "://" in workdir else os.path.abspath(workdir)  # Orbax wants absolute.
    info = input_pipeline.get_dataset_info(config)  # Fails early if the data is missing.
    steps_per_epoch = max(1, info.num_train // config.batch_size)
    num_steps = total_steps(config)
    mesh = parallel.create_mesh()
    trainer = Trainer(config, mesh, steps_per_epoch)
    _save_config(config, workdir)
    writer = metric_writers.MetricWriter(workdir)
    manager = checkpoints.create_manager(workdir, config)
    meta = checkpoints.model_meta(config)
    state, rest, step = initialise(trainer, manager, config)

    preempted = []
    previous = None
    # With several processes, JAX's preemption service owns SIGTERM and picks one step at which
    # every process stops (manager.reached_preemption). A Python handler would replace its
    # handler, and each process would stop at its own step and hang in the next collective.
    if jax.process_count() == 1:
        previous = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
    log(
        f"Training {config.model.name} behind a {config.resizer.kind} resizer "
        f"{tuple(config.input_size)} -> {tuple(config.resizer.output_size)} for {num_steps} steps "
        f"({steps_per_epoch} per epoch), global batch {config.batch_size} on "
        f"{jax.device_count()} devices / {jax.process_count()} processes."
    )
    train_iter = input_pipeline.create_train_iterator(
        config, image_size=tuple(config.input_size), seed=config.seed, start_step=step
    )
    progress = metric_writers.Progress(num_steps, step)
    pending = []
    eval_metrics = {}
    start = time.time()
    try:
        while step < num_steps:
            local = next(train_iter)
            batch = parallel.global_batch(
                {k: local[k] for k in ("image", "skipped", *trainer.targets)}, mesh
            )
            state, metrics = trainer.train_step(state, batch, rest)
            step += 1
            if step == _KILL_AT_STEP:
                os.kill(os.getpid(), signal.SIGKILL)
            pending.append(metrics)
            if step % config.log_every_steps == 0 or step == num_steps:
                host = jax.device_get(pending)
                summary = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
                summary["skipped_images"] = float(np.sum([m["skipped_images"] for m in host]))
                pending = []
                rate, eta = progress.report(step)
                summary["steps_per_second"] = rate
                writer.write_scalars(step, summary, prefix="train/")
                task = (
                    f"acc {summary['accuracy']:.3f}"
                    if "accuracy" in summary
                    else f"score MAE {summary['mean_score_abs_error']:.3f}"
                )
                log(
                    f"step {step}/{num_steps}  loss {summary['loss']:.4f}  "
                    f"{task}  lr {summary['learning_rate']:.4g}  "
                    f"{rate:.2f} steps/s  ETA {metric_writers.format_eta(eta)}"
                )
            stop = bool(preempted) or manager.reached_preemption(step)
            if step % config.checkpoint_every_steps == 0 or step == num_steps or stop:
                checkpoints.save(manager, step, state, meta, force=stop or step == num_steps)
            if stop:
                manager.wait_until_finished()
                log(f"Preempted: saved checkpoint at step {step}; run the same command to resume.")
                return {"preempted_at": step}
            if (config.eval_every_steps and step % config.eval_every_steps == 0) or (
                step == num_steps
            ):
                eval_metrics = run_eval(trainer, state, rest, writer, step)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        manager.wait_until_finished()
        writer.close()
    if not eval_metrics:  # Resumed at the last step: evaluate what was restored.
        eval_metrics = run_eval(trainer, state, rest, writer, step)
    eval_metrics["train_seconds"] = time.time() - start
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(eval_metrics, f, indent=2)
    return eval_metrics


def run_eval(trainer: Trainer, state, rest, writer, step: int) -> dict:
    t0 = time.time()
    metrics = trainer.evaluate(state, rest)
    writer.write_scalars(step, metrics, prefix="eval/")
    if trainer.last_predictions is not None and jax.process_index() == 0:
        # Per-example predictions (padding has mask 0), for analyses beyond PLCC/SRCC.
        np.savez(os.path.join(writer.workdir, "eval_predictions.npz"), **trainer.last_predictions)
    grid = trainer.image_grid(state, rest)
    if grid is not None:
        writer.write_image(step, "resizer_grid", grid)
    if trainer.iqa_task:
        shown = f"PLCC {metrics['plcc']:.4f}  SRCC {metrics['srcc']:.4f}  EMD {metrics['emd']:.4f}"
    else:
        shown = (
            f"top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  loss {metrics['loss']:.4f}"
        )
    log(
        f"eval at step {step}: {shown} on {int(metrics['num_examples'])} images "
        f"({metrics['skipped_images']:.0f} skipped) in {time.time() - t0:.1f}s"
    )
    return metrics


def evaluate_checkpoint(config: ml_collections.ConfigDict, path: str) -> dict:
    """Eval-only mode: restores the newest checkpoint under `path` and evaluates it."""
    config_lib.validate_config(config)
    input_pipeline.get_dataset_info(config)
    path = path if "://" in path else os.path.abspath(path)
    directory, step = checkpoints.resolve_checkpoint(path)
    mesh = parallel.create_mesh()
    trainer = Trainer(config, mesh, steps_per_epoch=1)
    _, rest = trainer.init(jax.random.key(config.seed))
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        trainer.abstract_state,
        trainer.state_sharding,
    )
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(directory, item_names=("state", "meta")) as manager:
        state = checkpoints.restore(manager, step, abstract, checkpoints.model_meta(config))
    log(f"Evaluating checkpoint {directory}/{step}.")
    metrics = trainer.evaluate(state, rest)
    metrics["step"] = step
    return metrics
