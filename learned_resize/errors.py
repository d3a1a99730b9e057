"""What a run reports to the user and to its job controller.

Exit statuses of `python -m learned_resize.main`:

  0   finished (every stage trained and evaluated; results written).
  1   a mistake the user can fix: one line `error: <what and how to fix it>` on
      stderr and no traceback (set LEARNED_RESIZE_TRACEBACK=1 to see one). Also a
      run that diverged or could not write its checkpoints.
  75  preempted (SIGTERM, or JAX's preemption notice on a pod): the newest state is
      saved; run the same command again to continue. 75 is EX_TEMPFAIL from
      sysexits.h ("try again later"); give it to your job controller as the
      restart condition (launch/tpu_pod.sh, launch/slurm.sbatch, README).
"""

import os
import sys

EXIT_USER_ERROR = 1
EXIT_PREEMPTED = 75

TRACEBACK_ENV = "LEARNED_RESIZE_TRACEBACK"


class UserError(ValueError):
    """A mistake the user can fix, said in one sentence (what is wrong, what to do)."""


class Preempted(Exception):  # noqa: N818  (a signal to stop, not an error)
    """Raised to stop a run whose newest state is safely saved (or that had none yet)."""

    def __init__(self, message: str):
        super().__init__(message)


class Diverged(UserError):
    """The loss or gradient norm became non-finite; nothing non-finite was saved."""


def one_line(exc: BaseException) -> str:
    """`error: <message>` on one line (the message's own newlines folded)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"error: {message}"


def show_tracebacks() -> bool:
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def exit_with(exc: BaseException, status: int) -> None:
    """Prints `exc` as one line on stderr and ends the process with `status` at once.

    os._exit, not sys.exit: after a failed checkpoint write Orbax's non-daemon
    threads would otherwise keep the interpreter alive (or print asyncio noise
    while it shuts down). Streams are flushed first.
    """
    if show_tracebacks():
        import traceback

        traceback.print_exception(exc)
    print(one_line(exc), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(status)


def exit_quietly(status: int) -> None:
    """Ends the process with `status` at once, streams flushed (see exit_with)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def quiet_background_noise() -> None:
    """Drops one known message from background threads: after a failed asynchronous
    checkpoint write, tensorstore's callbacks into Orbax's closed event loop print
    `RuntimeError: Event loop is closed` tracebacks by the hundred. The run itself
    reports the failure as one `error:` line; every other exception still prints."""

    def hook(exc_type, exc, tb, default=sys.excepthook):
        if exc_type is RuntimeError and str(exc) == "Event loop is closed":
            return
        default(exc_type, exc, tb)

    sys.excepthook = hook
