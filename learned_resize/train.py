"""Training one run: `train_and_evaluate(config, workdir)` resumes, trains, evaluates.

One linear story, in the style of big_vision's train.py:

  1. finished already? (results.json at the final step) -> return its metrics;
  2. data sizes, and refuse another model's checkpoints -- before writing or compiling;
  3. the compiled steps (`steps.Steps`) and the checkpoint manager;
  4. state: the newest readable checkpoint, else a fresh init (+ `config.init_from` parts);
     only once these checks have passed is anything written: the config (below), the
     metric writer;
  5. the loop: step, log (loss/grad-norm must stay finite), checkpoint (never a non-finite
     state), periodic eval, preemption;
  6. the final eval -> results.json, and for IQA per-example predictions.

A run killed at any moment and started again with the same command ends with the same
parameters and results.json as one that was never interrupted (tests/test_resume.py).

What a run never rewrites: `config.json` is written once, by the first run in a workdir.
A later run there whose config values differ (more steps, another learning rate: a
checkpoint of another model is refused before this point) keeps its config as
`config_history/1.json`, then `2.json`, ... (the next free number; a run with the
values of the newest one writes nothing), so config.json is always the config the
workdir was started with and the history lists every change, in order. A diverged,
refused or failed run therefore leaves config.json, results.json and the earlier
checkpoints byte-identical. `results.json` is written only by a run that finished.
"""

import contextlib
import time

import jax
import ml_collections
import numpy as np

from learned_resize import evaluation, optim
from learned_resize import steps as steps_lib
from learned_resize.data import pipeline, sources
from learned_resize.runtime import (
    checkpoint_meta,
    checkpoints,
    errors,
    init_sources,
    metric_writers,
    preemption,
    profiling,
)
from learned_resize.runtime import mesh as mesh_lib
from learned_resize.runtime import workdir as workdir_lib

log = metric_writers.log

CONFIG_HISTORY = "config_history"

# Callbacks told the named points a run passes (`<stage>:step<N>`, `<stage>:eval`,
# `<stage>:done`); runtime/fault_injection.py uses them to kill a run at a chosen moment.
_POINT_HOOKS = []


def add_point_hook(hook) -> None:
    """Calls `hook(point)` at each named point of every run in this process."""
    _POINT_HOOKS.append(hook)


def _point(name: str, point: str) -> None:
    for hook in _POINT_HOOKS:
        hook(f"{name}:{point}")


_DATASET_INFO = {}  # config.data as JSON -> DatasetInfo: the splits are opened once per run.


def dataset_info(config) -> sources.DatasetInfo:
    key = config.data.to_json()
    if key not in _DATASET_INFO:
        _DATASET_INFO[key] = sources.get_dataset_info(config)
    return _DATASET_INFO[key]


def preflight(config: ml_collections.ConfigDict, workdir) -> None:
    """A stage's checks that need the data or the workdir, before anything is written or
    compiled: the data and manual dirs exist, the dataset opens, has
    config.data.num_classes classes and at least config.batch_size training images, the
    workdir holds no other model's checkpoints, and config.init_from's sources hold
    checkpoints with the requested parts (`init_sources.check_init_sources`)."""

    data_dir = config.data.data_dir
    if data_dir and not workdir_lib.as_path(data_dir).exists():
        raise errors.UserError(
            f"config.data.data_dir={data_dir} does not exist; fix the path (or create the "
            "directory to prepare the dataset there)."
        )
    manual_dir = config.data.manual_dir
    if manual_dir and not workdir_lib.as_path(manual_dir).is_dir():
        raise errors.UserError(
            f"config.data.manual_dir={manual_dir} is not a directory; point it at the "
            "dataset's source files, or set it to '' for the default location."
        )
    info = dataset_info(config)
    if info.num_classes != config.data.num_classes:
        raise errors.UserError(
            f"config.data.num_classes={config.data.num_classes} but {config.data.name} has "
            f"{info.num_classes} classes; set --config.data.num_classes={info.num_classes}."
        )
    if config.batch_size > info.num_train:
        raise errors.UserError(
            f"config.batch_size={config.batch_size} is more than the {info.num_train} training "
            f"images of {config.data.name} (split {config.data.train_split!r}); use a batch of "
            f"at most {info.num_train}."
        )
    checkpoints.check_workdir(workdir, config)
    init_sources.check_init_sources(config, workdir)
    init_sources.plan_run(workdir, config)


def finished_results(workdir, num_steps: int) -> dict | None:
    """results.json of a run that trained all `num_steps` and was evaluated, else None."""
    results = workdir_lib.read_json(workdir_lib.as_path(workdir) / workdir_lib.RESULTS_FILE)
    if results is not None and results.get("step") == num_steps:
        return results
    return None


def initialise(
    steps: steps_lib.Steps, manager, config, meta: dict | None = None
) -> tuple[dict, object, int]:
    """Resumes from the newest readable checkpoint, else initialises (+ init_from parts).
    `meta`: the config's `checkpoint_meta.model_meta`, when the caller has it already."""
    meta = meta if meta is not None else checkpoint_meta.model_meta(config)
    state, rest = steps.init(jax.random.key(config.seed))
    restored, step = checkpoints.restore_newest(manager, steps.sharded_abstract_state(), meta)
    if restored is not None:
        log(f"Resumed from checkpoint at step {step}.")
        return restored, rest, step
    sources = []
    if config.init_from.path:
        parts = [
            p for p in config.init_from.parts if p != "resizer" or not config.init_from.resizer_path
        ]
        sources.append((config.init_from.path, parts))
    if config.init_from.resizer_path:
        sources.append((config.init_from.resizer_path, ["resizer"]))
    for path, parts in sources:
        loaded = checkpoints.load_parts(path, parts, meta)
        state = checkpoints.merge_parts(state, loaded, path)
        log(f"Initialised {', '.join(sorted(loaded['params']))} from {path}.")
    return state, rest, 0


def _diverged(what: str, step: int, manager) -> errors.Diverged:
    checkpoints.wait(manager)
    latest = manager.latest_step()
    newest = (
        f"the newest checkpoint (all finite) is step {latest} in {manager.directory}"
        if latest is not None
        else "no checkpoint was saved yet"
    )
    return errors.Diverged(
        f"training diverged: {what} became non-finite by step {step}; {newest}; lower "
        "config.optim.learning_rate (or set config.optim.grad_clip_norm) and run again."
    )


class _Logger:
    """Averages the step metrics since the last report, logs them, checks they are finite."""

    def __init__(self, task, writer, num_steps: int, start_step: int):
        self.task, self.writer, self.num_steps = task, writer, num_steps
        self.pending = []
        self.progress = metric_writers.Progress(num_steps, start_step)

    def check(self, step: int, manager) -> list[dict]:
        """The pending metrics on the host; raises Diverged if a loss or norm is not finite."""
        host = jax.device_get(self.pending)
        for key in ("loss", "grad_norm"):
            if not all(np.isfinite(m[key]) for m in host):
                raise _diverged(key, step, manager)
        return host

    def report(self, step: int, manager) -> None:
        host = self.check(step, manager)
        if not host:
            return
        self.pending = []
        summary = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
        summary["skipped_images"] = float(np.sum([m["skipped_images"] for m in host]))
        rate, eta = self.progress.report(step)
        summary["steps_per_second"] = rate
        self.writer.write_scalars(step, summary, prefix="train/")
        log(
            f"step {step}/{self.num_steps}  loss {summary['loss']:.4f}  "
            f"{self.task.train_summary(summary)}  lr {summary['learning_rate']:.4g}  "
            f"{rate:.2f} steps/s  ETA {metric_writers.format_eta(eta)}"
        )


def _save(steps, manager, step, state, meta, logger, force) -> None:
    """Saves `state` after checking it is finite: a diverged state is never written, so a
    divergence cannot rotate the good checkpoints out."""
    logger.check(step, manager)
    if not bool(steps.all_finite(state)):
        raise _diverged("the train state", step, manager)
    checkpoints.save(manager, step, state, meta, force=force)


def _final_eval(name, config, steps, state, rest, writer, step, watcher, batches) -> dict:
    _point(name, "eval")
    t0 = time.time()
    result = evaluation.evaluate(
        steps, state, rest, batches, config.num_eval_images, watcher.signalled
    )
    metrics = result.metrics
    writer.write_scalars(step, metrics, prefix="eval/")
    if result.predictions is not None and jax.process_index() == 0:
        # Per-example predictions (padding has mask 0), for analyses beyond PLCC/SRCC.
        workdir_lib.write_npz(writer.workdir / workdir_lib.PREDICTIONS_FILE, **result.predictions)
    if result.grid is not None:
        writer.write_image(step, "resizer_grid", result.grid)
    log(
        f"eval at step {step}: {steps.task.eval_summary(metrics)} on "
        f"{int(metrics['num_examples'])} images ({metrics['skipped_images']:.0f} skipped) in "
        f"{time.time() - t0:.1f}s"
    )
    return metrics


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir,
    *,
    name: str = "run",
    watcher: preemption.Watcher | None = None,
    checked: bool = False,
) -> dict:
    """Trains `config` in `workdir` (resuming if it has checkpoints) and evaluates it.

    Args:
      config: a validated config (`validation.validate_config`).
      workdir: local path or gs:// URL.
      name: the stage's name (logs and fault injection).
      watcher: SIGTERM/preemption watcher (main installs one at start-up).
      checked: `preflight` has passed for this stage already (main checks every stage
        before the first one runs).

    Returns:
      The final eval metrics, as written to results.json.

    Raises:
      errors.Preempted: stopped by preemption with the state saved (exit status 75).
      errors.UserError: bad data or checkpoints, divergence, a failed checkpoint write.
    """
    watcher = watcher or preemption.Watcher()
    workdir = workdir_lib.as_path(workdir)
    if not checked:
        preflight(config, workdir)
    meta = checkpoint_meta.model_meta(config)
    info = dataset_info(config)
    steps_per_epoch = max(1, info.num_train // config.batch_size)
    num_steps = optim.total_steps(config, info.num_train)
    done = finished_results(workdir, num_steps)
    if done is not None:
        log(f"Stage {name} finished already (step {num_steps}); results read from {workdir}.")
        return done
    mesh = mesh_lib.create_mesh()
    steps = steps_lib.Steps(config, mesh, steps_per_epoch, num_steps)
    manager = checkpoints.create_manager(workdir, config)
    writer = None
    try:
        if watcher.signalled():
            raise errors.Preempted("preempted during start-up")
        state, rest, step = initialise(steps, manager, config, meta)
        # Every check has passed (preflight, the checkpoint's meta, init_from's sources,
        # and in the CLI the workdir lock): only now is anything of this run written.
        if jax.process_index() == 0:
            record_config(workdir, config)
        writer = metric_writers.MetricWriter(workdir)
        writer.write_hparams(config.to_dict(), [f"eval/{key}" for _, key in steps.task.columns])
        results = _run(
            name, config, workdir, steps, mesh, writer, manager, watcher, num_steps,
            (state, rest, step), meta,
        )  # fmt: skip
    except BaseException:
        # The failure in flight is the one to report: a full disk that also fails the
        # writers' final flush or the async save that close() waits for must not replace it.
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        with contextlib.suppress(Exception):
            manager.close()
        raise
    writer.close()
    checkpoints.close(manager)
    return results


def record_config(workdir, config: ml_collections.ConfigDict) -> None:
    """Writes the run's config: `config.json` if the workdir has none, else (values changed
    since) the next `config_history/<N>.json`; see the module docstring."""
    workdir = workdir_lib.as_path(workdir)
    text = config.to_json_best_effort(indent=2)
    current = workdir / workdir_lib.CONFIG_FILE
    if not current.exists():
        workdir_lib.write_text(current, text)
        return
    history = workdir / CONFIG_HISTORY
    numbers = sorted(
        int(p.stem) for p in (history.iterdir() if history.exists() else ()) if p.stem.isdigit()
    )
    newest = history / f"{numbers[-1]}.json" if numbers else current
    if newest.read_text() == text:
        return  # The same values as the last run here (a resume): nothing new to keep.
    number = numbers[-1] + 1 if numbers else 1
    workdir_lib.write_text(history / f"{number}.json", text)
    log(f"This run's config differs from {newest}; kept as {history / f'{number}.json'}.")


def _run(name, config, workdir, steps, mesh, writer, manager, watcher, num_steps, start, meta):
    state, rest, step = start
    log(
        f"Training {config.model.name} behind a {config.resizer.kind} resizer "
        f"{tuple(config.input_size)} -> {tuple(config.resizer.output_size)} for {num_steps} steps, "
        f"global batch {config.batch_size} on {jax.device_count()} devices / "
        f"{jax.process_count()} processes; starting at step {step}."
    )
    train_iter = pipeline.create_train_iterator(
        config, image_size=tuple(config.input_size), seed=config.seed, start_step=step
    )
    eval_batches, _ = pipeline.create_eval_iterator(config, image_size=tuple(config.input_size))
    logger = _Logger(steps.task, writer, num_steps, step)
    profiler = profiling.StepProfiler(config.profile_steps, workdir / "tensorboard")
    keys = ("image", "skipped", *steps.task.targets)
    start = time.time()
    if watcher.signalled():  # SIGTERM while starting up: nothing new to save.
        raise errors.Preempted("preempted during start-up")
    if step < num_steps:
        log("Compiling the train step (the first step takes longer) ...")
    while step < num_steps:
        batch = mesh_lib.global_batch(
            {k: v for k, v in next(train_iter).items() if k in keys}, mesh
        )
        profiler.step(step)
        state, metrics = steps.train_step(state, batch, rest)
        step += 1
        logger.pending.append(metrics)
        _point(name, f"step{step}")
        if step % config.log_every_steps == 0 or step == num_steps:
            logger.report(step, manager)
        stop = watcher.requested(step, manager)
        if step % config.checkpoint_every_steps == 0 or step == num_steps or stop:
            _save(steps, manager, step, state, meta, logger, force=stop or step == num_steps)
            writer.flush()  # metrics up to a checkpoint are kept (a bucket's file is rewritten)
        if stop:
            checkpoints.wait(manager)
            raise errors.Preempted(f"preempted: saved a checkpoint at step {step}")
        if config.eval_every_steps and step % config.eval_every_steps == 0 and step < num_steps:
            metrics = evaluation.evaluate(steps, state, rest, eval_batches).metrics
            writer.write_scalars(step, metrics, prefix="eval/")
            log(f"eval at step {step}: {steps.task.eval_summary(metrics)}")
    profiler.close()
    checkpoints.wait(manager)
    train_seconds = time.time() - start
    eval_metrics = _final_eval(
        name, config, steps, state, rest, writer, step, watcher, eval_batches
    )
    # train_seconds: this process's training time (after a resume, since the resume).
    results = {**eval_metrics, "step": step, "train_seconds": train_seconds}
    if jax.process_index() == 0:
        workdir_lib.write_json(workdir / workdir_lib.RESULTS_FILE, results)
    _point(name, "done")
    return results


def evaluate_checkpoint(config: ml_collections.ConfigDict, path) -> dict:
    """Eval-only mode: restores the newest readable checkpoint under `path`, evaluates it."""
    checkpoints.check_checkpoint(path, config)  # another model's: refused before compiling
    dataset_info(config)
    mesh = mesh_lib.create_mesh()
    steps = steps_lib.Steps(config, mesh, steps_per_epoch=1, num_steps=1)
    state, step = checkpoints.restore_for_eval(
        path, steps.sharded_abstract_state(), checkpoint_meta.model_meta(config)
    )
    _, rest = steps.init(jax.random.key(config.seed))
    log(f"Evaluating checkpoint {path} at step {step}.")
    batches, _ = pipeline.create_eval_iterator(config, image_size=tuple(config.input_size))
    metrics = evaluation.evaluate(steps, state, rest, batches).metrics
    metrics["step"] = step
    return metrics
