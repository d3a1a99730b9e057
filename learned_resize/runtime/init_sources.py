"""`config.init_from`'s sources checked before anything is written: each must exist,
hold a finished checkpoint and be of a model whose requested parts fit this config.
Reads only the small meta files. An earlier stage of the same command is judged by its
config until it has saved (`plan_run`)."""

import os

import ml_collections

from learned_resize.runtime import checkpoint_meta, checkpoints, errors
from learned_resize.runtime import workdir as workdir_lib

# Workdirs this process will train, in stage order (train.preflight records each), so that
# a later stage's init_from may name an earlier stage's run before it has a checkpoint.
_PLANNED_RUNS: dict[str, ml_collections.ConfigDict] = {}


def _run_key(path) -> str:
    return os.fspath(workdir_lib.as_path(path)).rstrip("/")


def plan_run(workdir, config: ml_collections.ConfigDict) -> None:
    """Records that this process trains `config` in `workdir` (see check_init_sources)."""
    _PLANNED_RUNS[_run_key(workdir)] = config


def _source_meta(key: str, path: str) -> dict:
    """The model meta of the newest checkpoint under `path` (config.init_from.`key`)."""
    if not workdir_lib.as_path(path).exists():
        raise errors.UserError(
            f"config.init_from.{key}={path} does not exist; give the workdir of a finished run "
            "(or its checkpoints/ directory), or '' to start from scratch."
        )
    try:
        directory, steps = checkpoints.checkpoint_steps(path)
    except errors.UserError:
        raise errors.UserError(
            f"config.init_from.{key}={path} holds no finished checkpoint; train a run there "
            "first or give the workdir of one that has a checkpoints/ directory."
        ) from None
    meta = workdir_lib.read_json(directory / str(steps[0]) / "meta" / "metadata")
    if not isinstance(meta, dict):
        raise errors.UserError(
            f"config.init_from.{key}={path}: the newest checkpoint (step {steps[0]}) has no "
            "readable meta/metadata; give the workdir of an intact run."
        )
    return meta


def check_init_sources(config: ml_collections.ConfigDict, workdir) -> None:
    """Refuses an init_from source that will not give the requested parts: a missing path, a
    path without a finished checkpoint, or a checkpoint of another model. Reads only the
    small meta files. Skipped when `workdir` resumes from its own checkpoints (init_from is
    then not read); a source that is an earlier stage of this process is judged by that
    stage's config."""
    init = config.init_from
    own = workdir_lib.as_path(workdir) / checkpoints.CHECKPOINT_DIR
    if own.is_dir() and any(p.name.isdigit() for p in own.iterdir()):
        return
    sources = []
    if init.path:
        parts = [p for p in init.parts if p != "resizer" or not init.resizer_path]
        sources.append(("path", init.path, parts))
    if init.resizer_path:
        sources.append(("resizer_path", init.resizer_path, ["resizer"]))
    expected = checkpoint_meta.model_meta(config)
    for key, path, parts in sources:
        planned = _PLANNED_RUNS.get(_run_key(path))
        # An earlier stage of this process that has not saved yet (its folder may exist:
        # a run killed early): judged by its config.
        if planned is not None and not checkpoints.step_dirs(
            workdir_lib.as_path(path) / checkpoints.CHECKPOINT_DIR
        ):
            found = checkpoint_meta.model_meta(planned)
        else:
            found = _source_meta(key, path)
        checkpoint_meta.check_parts_meta(found, expected, parts, f"{path} (config.init_from.{key})")
