"""Orbax checkpoints: async saves, keep-last-N, resume, and partial init from other runs.

A checkpoint holds the train state as plain nested dicts of arrays (`params`,
`batch_stats`, `opt_state`, `step`) plus a small JSON `meta` item describing the
model (`checkpoint_meta.model_meta`: backbone, classes, channels, the resizer and its
sizes). The meta item lets a resume, `--mode=eval` and `config.init_from` refuse another model's
checkpoint in one sentence naming the differing values, before anything is written or
compiled.

Resuming walks back from the newest step to the newest one that restores; an
unreadable step is renamed `<step>.unreadable` (kept, never deleted) so that the
run can save that step again. Each skipped step costs one `warning:` line on stderr:
the libraries' own logging of the failed read is silenced while reading.
"""

import contextlib
import logging as std_logging
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from learned_resize.runtime import checkpoint_meta, errors
from learned_resize.runtime import workdir as workdir_lib

CHECKPOINT_DIR = "checkpoints"
PARTS = ("classifier", "resizer", "score_head")


def create_manager(workdir, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints, create=True, enable_async_checkpointing=True
    )
    return ocp.CheckpointManager(
        workdir_lib.as_path(workdir) / CHECKPOINT_DIR,
        item_names=("state", "meta"),
        options=options,
    )


class WriteError(errors.UserError):
    """A checkpoint could not be written (full disk, lost permissions, bucket gone)."""


def _write_error(exc: Exception, directory) -> WriteError:
    reason = errors.brief(exc, 200)
    return WriteError(
        f"could not write a checkpoint under {directory} ({reason}); free space or fix "
        "access there, then run the same command again to resume from the last saved step."
    )


def save(manager: ocp.CheckpointManager, step: int, state: dict, meta: dict, force=False) -> bool:
    """Starts an async save of `state` at `step`; a failed write (this one's or the
    previous async one's) raises WriteError."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    try:
        return manager.save(step, args=args, force=force)
    except Exception as e:  # Orbax/tensorstore raise assorted types for I/O failures.
        raise _write_error(e, manager.directory) from e


def wait(manager: ocp.CheckpointManager) -> None:
    """Waits for the async save in flight; a failed write raises WriteError."""
    try:
        manager.wait_until_finished()
    except Exception as e:
        raise _write_error(e, manager.directory) from e


def close(manager: ocp.CheckpointManager) -> None:
    """Waits for the async save in flight and closes; a failed write raises WriteError."""
    try:
        manager.close()
    except Exception as e:
        raise _write_error(e, manager.directory) from e


def step_dirs(directory: epath.Path) -> list[int]:
    """Finished steps under `directory`, newest first (Orbax's own listing)."""
    if not directory.exists():
        return []
    return sorted(ocp.utils.checkpoint_steps(directory), reverse=True)


def _check_newest_meta(directory: epath.Path, expected: dict) -> None:
    """Checks the newest readable meta under a checkpoints `directory` against `expected`;
    reads only the small JSON files, so it runs before anything is written or compiled."""
    for step in step_dirs(directory):
        found = workdir_lib.read_json(directory / str(step) / "meta" / "metadata")
        if found is not None:  # The newest readable meta decides.
            checkpoint_meta.check_meta(found, expected, os.fspath(directory / str(step)))
            return


def check_workdir(workdir, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir whose checkpoints are of another model (before anything is
    written or compiled)."""
    _check_newest_meta(
        workdir_lib.as_path(workdir) / CHECKPOINT_DIR, checkpoint_meta.model_meta(config)
    )


def check_checkpoint(path, config: ml_collections.ConfigDict) -> None:
    """Refuses a checkpoint (`--checkpoint=`, any form `checkpoint_steps` takes) of another
    model, before anything is compiled."""
    directory, steps = checkpoint_steps(path)
    if len(steps) == 1 and directory.name != CHECKPOINT_DIR:  # One step's directory.
        found = workdir_lib.read_json(directory / str(steps[0]) / "meta" / "metadata")
        if found is not None:
            checkpoint_meta.check_meta(
                found, checkpoint_meta.model_meta(config), os.fspath(directory / str(steps[0]))
            )
        return
    _check_newest_meta(directory, checkpoint_meta.model_meta(config))


# Python loggers that a failed read floods: Orbax (absl), tensorstore, and asyncio's
# "unhandled exception during asyncio.run() shutdown" with a TensorStore spec per array.
_READER_LOGGERS = ("absl", "orbax", "tensorstore", "asyncio")


@contextlib.contextmanager
def _quiet_readers():
    """Silences _READER_LOGGERS while a checkpoint is read: a torn checkpoint costs the one
    warning `_skip` prints, not thousands of lines of tracebacks."""
    loggers = [std_logging.getLogger(name) for name in _READER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(std_logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _reason(exc: BaseException) -> str:
    """The root cause of a failed read in a few words: Orbax wraps tensorstore's errors
    ('OUT_OF_RANGE: Error reading ...') in messages that embed a whole TensorStore spec."""
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        exc, cause = cause, cause.__cause__ or cause.__context__
        seen.add(id(exc))
    message = errors.brief(exc).split(" See full TensorStore details")[0]
    return f"{type(exc).__name__}: {message[:160]}"


def _skip(where: str, exc: Exception, kept_as: str | None) -> None:
    """One line on stderr for an unreadable step (process 0 only)."""
    if jax.process_index() != 0:
        return
    kept = f"kept as {kept_as}, " if kept_as else ""
    print(
        f"warning: checkpoint {where} is unreadable ({_reason(exc)}); {kept}trying the "
        "previous step.",
        file=sys.stderr,
        flush=True,
    )


def _set_aside(directory: epath.Path, step: int) -> None:
    """Renames an unreadable step so it is kept but no longer counts as a checkpoint."""
    if jax.process_index() == 0:
        src = directory / str(step)
        dst = directory / f"{step}.unreadable"
        n = 1
        while dst.exists():
            dst, n = directory / f"{step}.unreadable{n}", n + 1
        src.rename(dst)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"set aside checkpoint {step}")


def restore_newest(
    manager: ocp.CheckpointManager, abstract_state: dict, meta: dict
) -> tuple[dict | None, int]:
    """Restores the newest step that reads back whole into `abstract_state`.

    Returns:
      (state, step), or (None, 0) if the workdir has no readable checkpoint.
    """
    directory = epath.Path(manager.directory)
    for step in step_dirs(directory):
        where = os.fspath(directory / str(step))
        try:
            with _quiet_readers():
                found = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            checkpoint_meta.check_meta(found["meta"], meta, where)
            with _quiet_readers():
                restored = manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
                )
            return restored["state"], step
        except errors.UserError:
            raise
        except Exception as e:  # A torn or corrupt step: any reader error.
            _skip(where, e, f"{where}.unreadable")
            _set_aside(directory, step)
            manager.reload()
    return None, 0


def resolve_checkpoint(path) -> tuple[str, int]:
    """(checkpoints directory, newest finished step) under `path` (see checkpoint_steps)."""
    directory, steps = checkpoint_steps(path)
    return os.fspath(directory), steps[0]


def checkpoint_steps(path) -> tuple[epath.Path, list[int]]:
    """Finds the finished checkpoints under `path`.

    `path` may be a workdir (containing `checkpoints/`), a checkpoints directory,
    or one step's directory.

    Returns:
      (checkpoints directory, steps newest first).
    """
    p = workdir_lib.as_path(path)
    if not p.exists():
        raise errors.UserError(
            f"no checkpoint at {path}: the path does not exist; give a workdir of a finished "
            "run or a checkpoint directory."
        )
    if (p / "state").exists() and p.name.isdigit():
        return p.parent, [int(p.name)]
    if (p / CHECKPOINT_DIR).exists():
        p = p / CHECKPOINT_DIR
    steps = step_dirs(p)
    if not steps:
        raise errors.UserError(
            f"no finished checkpoint under {path}; train a run there first or point to one "
            "that has a checkpoints/ directory."
        )
    return p, steps


def restore_for_eval(path, abstract_state: dict, meta: dict) -> tuple[dict, int]:
    """Restores the newest readable checkpoint under `path` (read-only: nothing renamed).

    Each unreadable step skipped costs one warning line; if none is readable, the one
    `error:` line says so instead (with the newest step's reason).
    """
    directory, steps = checkpoint_steps(path)
    skipped = []
    with ocp.CheckpointManager(directory, item_names=("state", "meta")) as manager:
        for step in steps:
            where = os.fspath(directory / str(step))
            try:
                with _quiet_readers():
                    found = manager.restore(
                        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                    )
            except Exception as e:
                skipped.append((where, e))
                continue
            checkpoint_meta.check_meta(found["meta"], meta, where)
            try:
                with _quiet_readers():
                    restored = manager.restore(
                        step,
                        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
                    )
            except Exception as e:
                skipped.append((where, e))
                continue
            for where, e in skipped:
                _skip(where, e, None)
            return restored["state"], step
    raise errors.UserError(
        f"every checkpoint under {path} is unreadable (steps {steps}; the newest: "
        f"{_reason(skipped[0][1])}); point --checkpoint at an intact run."
    )


def load_parts(path, parts, meta: dict) -> dict:
    """Reads `params` and `batch_stats` sub-trees named by `parts` from a checkpoint.

    Used to start stage 2 from stage 1 (classifier, score head) or to transfer a
    resizer. Restores on the host as numpy arrays; `merge_parts` places them.

    Returns:
      {'params': {part: tree}, 'batch_stats': {part: tree}} for each part found.
    """
    directory, step = resolve_checkpoint(path)
    where = f"{directory}/{step}"
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    with ocp.CheckpointManager(directory, item_handlers=handlers) as manager:
        try:
            with _quiet_readers():
                found = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:
            raise _unreadable_source(where, e) from e
        checkpoint_meta.check_parts_meta(found["meta"], meta, parts, where)
        # Restore every array whole onto this process's first device, not onto the
        # saving run's device layout: the source may come from another topology (a pod
        # slice's checkpoint initialising a run on one GPU, or the reverse).
        local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        try:
            with _quiet_readers():
                target = jax.tree.map(
                    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
                    manager.item_metadata(step)["state"],
                )
                state = manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
                )["state"]
        except Exception as e:
            raise _unreadable_source(where, e) from e
    return {
        k: {part: jax.tree.map(np.asarray, state[k][part]) for part in parts if part in state[k]}
        for k in ("params", "batch_stats")
    }


def _unreadable_source(where: str, exc: Exception) -> errors.UserError:
    return errors.UserError(
        f"the checkpoint at {where} is unreadable ({_reason(exc)}); initialise from an "
        "intact run (config.init_from)."
    )


def _leaves_by_path(tree) -> dict:
    """{'a/0/kernel': leaf}: checkpoints may store integer keys (nnx.List) as strings."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): leaf
        for path, leaf in flat
    }


def merge_parts(state: dict, loaded: dict, where: str) -> dict:
    """Replaces the loaded sub-trees of `state`, checking that every name and shape matches.

    Leaves the source has and this model lacks are left out (e.g. a 1000-class head when
    an IQA model takes only the backbone); a leaf this model has and the source lacks, or
    one of another shape, is an error.
    """
    for key in ("params", "batch_stats"):
        for part, tree in loaded[key].items():
            if part not in state[key]:
                raise errors.UserError(
                    f"this config's model has no {part}, so it cannot be initialised from "
                    f"{where}; drop {part!r} from config.init_from.parts."
                )
            target = state[key][part]
            found, expected = _leaves_by_path(tree), _leaves_by_path(target)
            bad = [
                p
                for p, t in expected.items()
                if p not in found or np.shape(found[p]) != np.shape(t)
            ]
            if bad:
                raise errors.UserError(
                    f"the {part} in {where} does not match this config's {part} (e.g. "
                    f"{key}/{part}/{bad[0]} is missing or has another shape); initialise from "
                    "a run with the same config.model / config.resizer settings."
                )
            unused = sorted(set(found) - set(expected))
            if unused:
                logging.info(
                    "Not loaded from %s (this model has no such %s leaves): %s%s",
                    where,
                    part,
                    ", ".join(unused[:4]),
                    " ..." if len(unused) > 4 else "",
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
