"""Runs the process under tcmalloc when it is installed, for XLA:CPU's buffers.

On CPU, XLA allocates every array and every executable's temporary buffers with the
host's malloc. glibc's malloc hands each allocation above 32 MB to a fresh `mmap`
and unmaps it when freed, so every step of a training program touches its large
buffers for the first time again: one page fault per 4 KiB. A [8, 448, 448, 16]
float32 activation (103 MB, the learned resizer's full-resolution layers in
ResNet-50's recipe) costs ~25,000 faults each time. tcmalloc keeps freed memory for
reuse. `python bench/train_step.py --allocator=both` measures the trainer's step
under each, with its page faults (docs/performance.md has the numbers);
tests/test_host_allocator.py checks the fault counts.

The allocator is bound when a process starts, so switching takes `LD_PRELOAD`
before start: `reexec_under_tcmalloc()` re-executes the same command line with it
(once; the PID stays the same, so signals and launchers are unaffected). glibc's own
knobs (MALLOC_MMAP_MAX_=0, GLIBC_TUNABLES=glibc.malloc.mmap_max=0) left the faults
as they were here. GPU and TPU buffers live in device memory, where this does not
matter; where tcmalloc is loaded already, nothing happens.

Set LEARNED_RESIZE_MALLOC=system to keep the system allocator.
"""

import ctypes.util
import os
import sys

ENV_VAR = "LEARNED_RESIZE_MALLOC"
_REEXEC_VAR = "_LEARNED_RESIZE_REEXEC"  # set in a re-executed process: never twice
_CHOICES = ("tcmalloc", "system")


def choice() -> str:
    """The allocator asked for by LEARNED_RESIZE_MALLOC (default tcmalloc)."""
    value = os.environ.get(ENV_VAR, "tcmalloc")
    if value not in _CHOICES:
        raise ValueError(f"{ENV_VAR} is {value!r}; set it to one of {', '.join(_CHOICES)}.")
    return value


def tcmalloc_library() -> str | None:
    """The shared library name of tcmalloc (the minimal build first), or None."""
    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def loaded_allocator() -> str:
    """'tcmalloc' if this process has tcmalloc mapped, else 'system'."""
    try:
        with open("/proc/self/maps") as f:
            return "tcmalloc" if "libtcmalloc" in f.read() else "system"
    except OSError:  # Not Linux: the platform's allocator.
        return "system"


def environment(allocator: str) -> dict:
    """A copy of os.environ for a process that should run under `allocator`.

    For tcmalloc its library goes first in LD_PRELOAD (when it is installed); for the
    system malloc any preloaded tcmalloc is dropped.
    """
    env = dict(os.environ, **{ENV_VAR: allocator})
    env.pop(_REEXEC_VAR, None)
    kept = [p for p in env.get("LD_PRELOAD", "").split() if "tcmalloc" not in p]
    library = tcmalloc_library() if allocator == "tcmalloc" else None
    env["LD_PRELOAD"] = " ".join(([library] if library else []) + kept)
    return env


def reexec_under(allocator: str) -> None:
    """Replaces this process by the same command under `allocator`, if that applies.

    Does nothing off Linux, when the process runs under `allocator` already, when
    tcmalloc is asked for but not installed (`launch/install.sh` installs it), or
    when this process is itself the result of a re-execution. Call it first thing in
    a program's `__main__` block, before JAX allocates anything.
    """
    if not sys.platform.startswith("linux") or loaded_allocator() == allocator:
        return
    if os.environ.get(_REEXEC_VAR) or (allocator == "tcmalloc" and tcmalloc_library() is None):
        return
    env = dict(environment(allocator), **{_REEXEC_VAR: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def reexec_under_tcmalloc() -> None:
    """`reexec_under('tcmalloc')` unless LEARNED_RESIZE_MALLOC=system (the trainer's default)."""
    if choice() == "tcmalloc":
        reexec_under("tcmalloc")
