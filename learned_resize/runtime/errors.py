"""What a run reports to the user and to its job controller.

Exit statuses of `python -m learned_resize.main`:

  0   finished (every stage trained and evaluated; results written).
  1   a mistake the user can fix: one line `error: <what and how to fix it>` on
      stderr and no traceback (set LEARNED_RESIZE_TRACEBACK=1 to see one). Also a
      run that diverged or could not write its checkpoints.
  75  preempted (SIGTERM, or JAX's preemption notice on a pod): the newest state is
      saved; run the same command again to continue. 75 is EX_TEMPFAIL from
      sysexits.h ("try again later"); give it to your job controller as the
      restart condition (launch/tpu_pod.sh, launch/slurm.sbatch, docs/pods.md).
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


def brief(exc: BaseException, limit: int | None = None) -> str:
    """exc's message on one line (its newlines folded), cut at `limit` characters; its
    type's name if the message is empty."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def one_line(exc: BaseException) -> str:
    """`error: <message>` on one line (the message's own newlines folded)."""
    return f"error: {brief(exc)}"


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
    _drain_stderr()
    os._exit(status)


def exit_quietly(status: int) -> None:
    """Ends the process with `status` at once, streams flushed (see exit_with)."""
    sys.stdout.flush()
    _drain_stderr()
    os._exit(status)


_NOISE = "RuntimeError: Event loop is closed"
_stderr_fd = None  # the real stderr once quiet_background_noise() has run
_filter_thread = None


def _filter_stderr(read_fd: int, out_fd: int) -> None:
    """Copies lines from `read_fd` to `out_fd`, dropping every traceback whose last line
    is _NOISE (a traceback: 'Traceback ...', indented lines, then its exception line)."""
    block: list[bytes] = []
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        for line in iter(pipe.readline, b""):
            if block or line.startswith(b"Traceback (most recent call last):"):
                block.append(line)
                if line[:1] in (b" ", b"\t") or len(block) == 1:
                    continue
                if line.decode(errors="replace").strip() != _NOISE:
                    os.write(out_fd, b"".join(block))
                block = []
                continue
            os.write(out_fd, line)
    if block:
        os.write(out_fd, b"".join(block))


def quiet_background_noise() -> None:
    """Drops one known message: after a failed asynchronous checkpoint write,
    tensorstore's callbacks into Orbax's closed event loop print `RuntimeError: Event
    loop is closed` tracebacks by the hundred (from C++, with PyErr_Print, so only a
    filter on the stderr file descriptor catches them). The run reports the failure
    itself as one `error:` line; everything else written to stderr passes unchanged."""
    global _stderr_fd, _filter_thread
    if _stderr_fd is not None:
        return
    import atexit
    import threading

    sys.stderr.flush()
    _stderr_fd = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    _filter_thread = threading.Thread(
        target=_filter_stderr, args=(read_fd, _stderr_fd), daemon=True, name="stderr-filter"
    )
    _filter_thread.start()
    atexit.register(_drain_stderr)


def _drain_stderr() -> None:
    """Closes the filtered stderr and waits until everything written to it is out."""
    if _filter_thread is None:
        return
    sys.stderr.flush()
    os.dup2(_stderr_fd, 2)  # the pipe's last writer is gone: the filter reads to the end
    _filter_thread.join(timeout=2)  # (a child still holding stderr: don't wait for it)
