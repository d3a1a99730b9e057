r"""Entry point: train and evaluate (every stage of a staged config), or evaluate a checkpoint.

    python -m learned_resize.main --config=configs/default.py --workdir=/tmp/lr
    python -m learned_resize.main --config=configs/default.py --workdir=/tmp/lr \
        --mode=eval --stages=learned --checkpoint=/tmp/lr/learned

Run the same command again to continue: finished stages are read back, an
unfinished one resumes from its newest readable checkpoint. Exit statuses (0 done,
1 `error: ...`, 75 preempted: run again) are in `learned_resize/runtime/errors.py`. A training
run holds `<workdir>/trainer.lock` while it runs: a second trainer on the same workdir
is refused in one line (`learned_resize/runtime/workdir_lock.py`); `--mode=eval` only reads.
Compiled programs are kept in `<workdir>/compile_cache/` (`--compile_cache=`, '' = off;
`learned_resize/runtime/compile_cache.py`), so a restarted run does not compile again.

On a Cloud TPU pod or a SLURM cluster run the same command on every host/task;
`--distributed=auto` initialises jax.distributed there. Elsewhere pass
--coordinator_address/--num_processes/--process_id (see `launch/local_multiprocess.py`).
"""

# First, before the slower imports: a SIGTERM from the moment the process starts ends in
# exit status 75 (nothing to save yet), not in a kill.
from learned_resize.runtime import preemption

_WATCHER = preemption.Watcher()
if __name__ == "__main__":
    _WATCHER.install()

import json  # noqa: E402
import logging as std_logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from learned_resize.runtime import cli, errors  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory (or gs:// URL) for checkpoints, logs, results; default workdirs/<config name>.",
)
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval"], "Train (and evaluate) or only evaluate."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "For --mode=eval: a workdir or checkpoint directory (default: --workdir)."
)
_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache",
    None,
    "JAX's persistent compilation cache, so a restarted run compiles nothing; '' = off. "
    "Default: JAX_COMPILATION_CACHE_DIR's if set, else $LEARNED_RESIZE_CACHE/jax if set, "
    "else <workdir>/compile_cache (none in eval mode, which writes nothing there).",
)
_STAGES = flags.DEFINE_list("stages", None, "Run only these of config.stages (default: all).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "auto: initialise jax.distributed on TPU pods, SLURM, or when a coordinator is given.",
)


def _initialise_distributed() -> None:
    # Flags, then SLURM / Open MPI / Cloud TPU, else one process. Its StartupError is a
    # UserError: main() turns it into one `error:` line.
    from learned_resize.runtime import distributed

    distributed.initialise(
        _DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
    )


def _select_stages(stages: list, names) -> list:
    if not names:
        return stages
    known = [name for name, _, _ in stages]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise errors.UserError(f"unknown --stages {unknown}; config.stages has {known}.")
    return [s for s in stages if s[0] in names]


def _use_compile_cache(workdir) -> None:
    """JAX's compilation cache where --compile_cache says (runtime/compile_cache.py);
    workdir None: no default inside a workdir (eval mode writes nothing there)."""
    from learned_resize.runtime import compile_cache

    path = _COMPILE_CACHE.value
    if path is None:
        if workdir is None and not os.environ.get("LEARNED_RESIZE_CACHE"):  # eval mode
            return
        path = compile_cache.default_dir(workdir)
        if path is None:  # JAX_COMPILATION_CACHE_DIR is set: JAX's settings stay
            return
    compile_cache.use(path)


def _eval_config(config, checkpoint: str):
    """The config of the stage `--mode=eval` evaluates (staged configs need --stages=NAME)."""
    from learned_resize.config import stages as stages_lib

    stages = stages_lib.stage_configs(config, "", cli.cli_config_keys(sys.argv))
    if len(stages) == 1:
        return stages[0][2]
    names = _STAGES.value or [n for n, _, _ in stages if checkpoint.rstrip("/").endswith(n)]
    if len(names) != 1:
        raise errors.UserError(
            f"this config has stages {[n for n, _, _ in stages]}; say which one the checkpoint "
            "belongs to with --stages=NAME."
        )
    return _select_stages(stages, names)[0][2]


def _evaluate(config) -> None:
    from learned_resize import train
    from learned_resize.config import validation
    from learned_resize.runtime import metric_writers

    path = _CHECKPOINT.value or _WORKDIR.value
    if not path:
        raise errors.UserError("--mode=eval needs --checkpoint=DIR (or --workdir=DIR).")
    config = _eval_config(config, path)
    validation.validate_config(config)
    _use_compile_cache(None)
    metrics = train.evaluate_checkpoint(config, path)
    metric_writers.log(json.dumps(metrics, indent=2))
    print(json.dumps(metrics))


def _train(config, watcher: preemption.Watcher) -> None:
    import jax

    from learned_resize import tasks, train
    from learned_resize.config import stages as stages_lib
    from learned_resize.config import validation
    from learned_resize.runtime import metric_writers, workdir_lock
    from learned_resize.runtime import workdir as workdir_lib

    given = _WORKDIR.value or cli.default_workdir(sys.argv)
    workdir = workdir_lib.as_path(given)
    if not workdir_lib.is_remote(workdir) and workdir.exists() and not workdir.is_dir():
        raise errors.UserError(f"--workdir={given} is a file; give a directory.")
    cli_keys = cli.cli_config_keys(sys.argv)
    stages = stages_lib.stage_configs(config, str(workdir), cli_keys)
    stages = _select_stages(stages, _STAGES.value)
    for _, stage_workdir, stage_config in stages:  # Every stage checked before anything runs.
        validation.validate_config(stage_config)
        train.preflight(stage_config, stage_workdir)
    if not _WORKDIR.value:
        metric_writers.log(f"Workdir: {given} (the config's name; set another with --workdir).")
    results = {}
    # One writer per workdir (every stage's is inside it): taken after the read-only
    # checks above, before anything is written; released however the run ends.
    with workdir_lock.held(workdir):
        _use_compile_cache(workdir)
        for name, stage_workdir, stage_config in stages:
            if watcher.signalled():
                raise errors.Preempted(f"preempted before stage {name}")
            metric_writers.log(f"=== stage {name} -> {stage_workdir}")
            results[name] = train.train_and_evaluate(
                stage_config, stage_workdir, name=name, watcher=watcher, checked=True
            )
        table = tasks.results_table(tasks.get_task(config), results)
        metric_writers.log("\n" + table)
        if jax.process_index() == 0 and len(stages) > 1:
            workdir_lib.write_text(workdir / workdir_lib.TABLE_FILE, table + "\n")


def main(argv):
    watcher = _WATCHER
    try:
        if len(argv) > 1:
            raise errors.UserError(
                f"unexpected arguments {' '.join(argv[1:])}; flags start with --."
            )
        if _CONFIG.value is None:
            raise errors.UserError("give a config: --config=configs/default.py")
        _initialise_distributed()
        if _MODE.value == "eval":
            _evaluate(_CONFIG.value)
        else:
            _train(_CONFIG.value, watcher)
        if _LIBRARY_ERRORS.dropped:  # none stopped the run: say so once
            print(
                f"warning: the checkpoint library logged {_LIBRARY_ERRORS.dropped} error(s) "
                f"that did not stop this run; set {errors.TRACEBACK_ENV}=1 to see them.",
                file=sys.stderr,
            )
    except errors.Preempted as e:
        logging.warning(
            "%s; run the same command again to continue (exit status %d).", e, errors.EXIT_PREEMPTED
        )
        errors.exit_quietly(errors.EXIT_PREEMPTED)
    except (ValueError, OSError) as e:
        # UserError is a ValueError; an OSError is a path, a disk or access to fix (a
        # missing file, a read-only or full disk): one line either way.
        errors.exit_with(e, errors.EXIT_USER_ERROR)


class _LibraryErrorLogs:
    """A logging filter: Orbax's and asyncio's ERROR records are counted, not shown.

    A failed asynchronous checkpoint write logs every failing thread's traceback from
    Orbax (hundreds of lines) before the failure reaches the trainer, which reports it as
    one `error:` line; a failed read is silenced where it is tried (`checkpoints`). If
    the run ends well despite such records, `main` says so in one warning line.
    LEARNED_RESIZE_TRACEBACK=1 shows them all.
    """

    def __init__(self):
        self.dropped = 0

    def filter(self, record) -> bool:
        if record.levelno < std_logging.ERROR:
            return True
        if record.name == "asyncio" or f"{os.sep}orbax{os.sep}" in record.pathname:
            self.dropped += 1
            return False
        return True


_LIBRARY_ERRORS = _LibraryErrorLogs()


def run() -> None:
    _WATCHER.install()
    # Before anything allocates: XLA:CPU's buffers under tcmalloc (see allocator.py).
    # The re-exec resets signal handlers but keeps blocked signals pending: SIGTERM is
    # blocked across it and delivered to the new image's handler once unblocked.
    from learned_resize.runtime import allocator

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    if not _WATCHER.signalled():  # (one that came already would be lost with this image)
        allocator.reexec_under_tcmalloc()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    errors.quiet_background_noise()  # after the re-exec: it puts a pipe behind stderr
    import jax

    jax.config.config_with_absl()  # --jax_debug_nans and friends
    from learned_resize.runtime import fault_injection

    fault_injection.install_from_environment()  # only when a test asks for a fault
    cli.setup_logging()
    if not errors.show_tracebacks():
        logging.get_absl_handler().addFilter(_LIBRARY_ERRORS)
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
