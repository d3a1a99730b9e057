"""Command-line plumbing shared by the entry points: flags and config errors as one line,
and logging as JAX users expect it.

absl logging at INFO goes to stdout (progress lines, one per log step); stderr is
kept for warnings from libraries and for `error: ...`, so a user mistake is one line
on stderr. Orbax's and grain's INFO chatter (every save, every worker) is dropped;
their warnings still show. `-v=1`/`--verbosity` and `--logtostderr` work as usual.
"""

import importlib.machinery
import logging as std_logging
import os
import re
import sys
import types

from absl import flags, logging

from learned_resize.runtime import errors

# INFO from these is chatter on every run (every save, every split opened, no libtpu on a CPU).
QUIET_LIBRARIES = (
    *(f"{os.sep}{name}{os.sep}" for name in ("orbax", "grain", "etils", "tensorflow_datasets")),
    f"{os.sep}xla_bridge.py",
)


class _QuietLibraries:
    """A logging filter: INFO and below from QUIET_LIBRARIES is dropped."""

    def filter(self, record) -> bool:
        if record.levelno >= std_logging.WARNING:
            return True
        return not any(part in record.pathname for part in QUIET_LIBRARIES)


def setup_logging() -> None:
    handler = logging.get_absl_handler()
    handler.python_handler.stream = sys.stdout
    handler.addFilter(_QuietLibraries())


def cli_config_keys(argv) -> list[str]:
    """Dotted config keys set on the command line: `--config.optim.lr=1` -> 'optim.lr'.

    Every spelling ml_collections reads as an override: one or two dashes, and `no` before
    a boolean (`--noconfig.flag`).
    """
    keys = []
    for arg in argv[1:]:
        found = re.match(r"-{1,2}(?:no)?config\.([^=]+)", arg)
        if found:
            keys.append(found.group(1))
    return keys


def _config_path(argv) -> str | None:
    """The last --config=PATH[:ARG] (absl's rule: the last value of a flag wins)."""
    found = None
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith("--config="):
            found = arg[len("--config=") :]
        elif arg == "--config" and i + 1 < len(argv):
            found = argv[i + 1]
    return found


def default_workdir(argv) -> str:
    """`workdirs/<config name>` for `--config=configs/NAME.py[:ARG]` (`NAME_ARG` with an
    argument), relative to the current directory."""
    spec = _config_path(argv) or "run"
    path, _, arg = spec.partition(":")
    name = os.path.splitext(os.path.basename(path))[0] or "run"
    if arg:
        name += "_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in arg)
    return os.path.join("workdirs", name)


def load_config(spec: str):
    """Loads `path[:arg]` like config_flags does; UserError if it cannot."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise errors.UserError(
            f"config file {path} does not exist; give one of configs/*.py, e.g. "
            "--config=configs/default.py."
        )
    try:
        loader = importlib.machinery.SourceFileLoader("user_config", path)
        module = types.ModuleType(loader.name)
        module.__file__ = path
        loader.exec_module(module)
    except Exception as e:
        raise errors.UserError(
            f"config file {path} could not be loaded ({type(e).__name__}: {e}); it must be a "
            "Python file with get_config()."
        ) from None
    if not hasattr(module, "get_config"):
        raise errors.UserError(
            f"config file {path} has no get_config(); define one that returns a ConfigDict."
        )
    try:
        return module.get_config(arg) if arg else module.get_config()
    except Exception as e:
        raise errors.UserError(
            f"get_config({arg!r}) of {path} failed ({type(e).__name__}: {e})."
        ) from None


def _has_key(config, key: str) -> bool:
    node = config
    for part in key.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            return False
    return True


def unknown_config_key(
    argv, config, defaults: str = "learned_resize/config/defaults.py"
) -> errors.UserError | None:
    """The error for the first --config.KEY of argv that config lacks (None if none):
    it names the closest valid key, or the flag of that name (`--config.workdir`), else
    `defaults`, the file that lists the keys."""
    from learned_resize.config import stages

    for key in cli_config_keys(argv):
        if _has_key(config, key):
            continue
        if key in flags.FLAGS:
            return errors.UserError(
                f"unknown config key config.{key}; did you mean the flag --{key}?"
            )
        return errors.UserError(stages.unknown_key_message(key, config, defaults))
    return None


def explain_flag_error(argv, exc: BaseException) -> errors.UserError:
    """One sentence for a failed flag parse: unknown config keys name the closest key."""
    spec = _config_path(argv)
    if spec is not None:
        unknown = unknown_config_key(argv, load_config(spec))
        if unknown is not None:
            return unknown
    message = " ".join(str(exc).split())
    if isinstance(exc, flags.Error):
        return errors.UserError(f"{message}; see --helpfull for the flags and their values.")
    return errors.UserError(message or type(exc).__name__)


def parse_flags(argv) -> list[str]:
    """absl's flag parse with every failure turned into `error: <one sentence>`, exit 1."""
    try:
        remaining = flags.FLAGS(argv)
        config = flags.FLAGS["config"].value if "config" in flags.FLAGS else None
        if config is not None:
            # config_flags loads the file lazily: touch the result so load errors surface here.
            config.keys  # noqa: B018
        return remaining
    except Exception as e:  # config_flags raises assorted types (see explain_flag_error).
        try:
            error = explain_flag_error(argv, e)
        except errors.UserError as user_error:
            error = user_error
        errors.exit_with(error, errors.EXIT_USER_ERROR)
        raise  # not reached


def run_tool(define_flags, main) -> None:
    """Runs a tool as a program: defines its flags (only now, so that importing the tool
    defines none), sets up logging, and calls `main(argv, flags)` through absl with this
    module's one-line flag errors (an `app.UsageError` from `main` is one line too). The
    body of every tool's `console()`."""
    from absl import app

    flag_values = define_flags()
    setup_logging()

    def run(argv):
        try:
            return main(argv, flag_values)
        except app.UsageError as e:  # a bad flag value: one line, not absl's usage text
            print(f"error: {e}", file=sys.stderr)
            return errors.EXIT_USER_ERROR

    app.run(run, flags_parser=parse_flags)
