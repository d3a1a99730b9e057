"""Orbax checkpoints: async saves, keep-last-N, resume, and partial init from other runs.

A checkpoint holds the train state as plain nested dicts of arrays (`params`,
`batch_stats`, `opt_state`, `step`) plus a small JSON `meta` item describing the
model (classifier, resizer, sizes). The meta item lets us tell a user that a
checkpoint belongs to a different model in one sentence, before any shape error
or compilation.
"""

import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

CHECKPOINT_DIR = "checkpoints"


def model_meta(config: ml_collections.ConfigDict) -> dict:
    """What a checkpoint must agree on to be restored into this config's model."""
    return {
        "task": config.task,
        "model": config.model.name,
        "num_classes": int(config.data.num_classes),
        "channels": int(config.data.channels),
        "resizer": config.resizer.kind,
        "resizer_filters": int(config.resizer.num_filters),
        "resizer_blocks": int(config.resizer.num_res_blocks),
    }


def create_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints,
        create=True,
        enable_async_checkpointing=True,
    )
    return ocp.CheckpointManager(
        epath.Path(workdir) / CHECKPOINT_DIR,
        item_names=("state", "meta"),
        options=options,
    )


def save(manager: ocp.CheckpointManager, step: int, state: dict, meta: dict, force=False) -> bool:
    """Starts an async save of `state` at `step` (returns whether a save started)."""
    return manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=force,
    )


def _check_meta(found: dict, expected: dict, where: str, keys=None) -> None:
    keys = keys or expected.keys()
    diffs = [
        f"{k}={found.get(k)!r} (this config: {expected[k]!r})"
        for k in keys
        if found.get(k) != expected[k]
    ]
    if diffs:
        raise ValueError(
            f"The checkpoint at {where} is of a different model ({', '.join(diffs)}); "
            "point to a checkpoint of this model or change the config to match it."
        )


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: dict, meta: dict) -> dict:
    """Restores `step` into `abstract_state` (ShapeDtypeStructs with shardings)."""
    where = os.fspath(manager.directory / str(step))
    found = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    _check_meta(found, meta, where)
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return restored["state"]


def resolve_checkpoint(path: str) -> tuple[str, int]:
    """Finds the newest finished checkpoint under `path`.

    `path` may be a workdir (containing `checkpoints/`), a checkpoints directory,
    or one step's directory.

    Returns:
      (checkpoints directory, step).
    """
    p = epath.Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"No checkpoint at {path}: the path does not exist; give a workdir of a finished run "
            "or a checkpoint directory."
        )
    if (p / "state").exists() and p.name.isdigit():
        return os.fspath(p.parent), int(p.name)
    if (p / CHECKPOINT_DIR).exists():
        p = p / CHECKPOINT_DIR
    steps = ocp.utils.checkpoint_steps(p)
    if not steps:
        raise FileNotFoundError(
            f"No finished checkpoint under {path}; train a run there first or point to one "
            "that has a checkpoints/ directory."
        )
    return os.fspath(p), max(steps)


def load_parts(path: str, parts, meta: dict) -> dict:
    """Reads `params` and `batch_stats` sub-trees named by `parts` from a checkpoint.

    Used to start stage 2 from stage 1 (classifier) or to transfer a resizer.
    Restores on the host as numpy arrays; the caller places them.

    Returns:
      {'params': {part: tree}, 'batch_stats': {part: tree}} for each part found.
    """
    directory, step = resolve_checkpoint(path)
    where = f"{directory}/{step}"
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    with ocp.CheckpointManager(directory, item_handlers=handlers) as manager:
        found = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        found_meta = found["meta"]
        keys = ["channels"]
        if "classifier" in parts:  # Head sizes may differ (IQA from ImageNet): shapes decide.
            keys += ["model"]
        if "resizer" in parts:
            if found_meta.get("resizer") != "learned":
                raise ValueError(
                    f"The checkpoint at {where} has no learned resizer (resizer="
                    f"{found_meta.get('resizer')!r}); take the resizer from a run with "
                    "config.resizer.kind='learned'."
                )
            keys += ["resizer_filters", "resizer_blocks"]
        _check_meta(found_meta, meta, where, keys)
        # Restore every array whole onto this process's first device, not onto the
        # saving run's device layout: the source may come from another topology (a pod
        # slice's checkpoint initialising a run on one GPU, or the reverse).
        local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
            manager.item_metadata(step)["state"],
        )
        state = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
        )["state"]
    return {
        k: {part: jax.tree.map(np.asarray, state[k][part]) for part in parts if part in state[k]}
        for k in ("params", "batch_stats")
    }
