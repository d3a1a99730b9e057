"""JAX's persistent compilation cache for the trainer: a restarted run compiles nothing.

A run killed and started again (a preemption, a crash, `kill -9`) traces its steps
again but finds XLA's compiled programs on disk. Where they live:

  - `--compile_cache=PATH` when given ('' turns the cache off);
  - else JAX's own setting, when JAX_COMPILATION_CACHE_DIR (or --jax_compilation_cache_dir)
    names a cache: it is left as it is (the test suite shares one cache this way);
  - else `$LEARNED_RESIZE_CACHE/jax` when that variable is set (one cache shared by
    every run of the machine's user; `executables.cache_root` reads it);
  - else `<workdir>/compile_cache/`, inside the run's own workdir.

Why inside the workdir by default: it is the one place a run may write (the workdir
lock guards it, a refused command writes nothing there, deleting a run deletes its
cache), it outlives the process, and it is where a restarted run looks whatever the
machine: on a pod with a `gs://` workdir every host reads the same entries (JAX reads
and writes such paths through etils.epath; only process 0 writes), where a host-local
directory would be empty on a fresh VM. The stages of one command share it (it sits in
the top-level workdir, beside the stages' directories).

Every program is kept (`jax_persistent_cache_min_compile_time_secs=0`, no minimum
entry size): at the tiny config's sizes the small programs (init, the finiteness check,
the eval step) are a large part of the start-up. A cache entry that cannot be written
(a full or read-only disk) is skipped without a warning, as a cache miss is.
"""

import os
import warnings

import jax
from jax.experimental.compilation_cache import compilation_cache

from learned_resize.runtime import executables
from learned_resize.runtime import workdir as workdir_lib

SUBDIR = "compile_cache"

# JAX's warnings for an entry it could not read or write: the program is compiled (or
# kept in memory) as without a cache, so they are not the user's concern.
_CACHE_WARNINGS = (
    r"Error writing persistent compilation cache entry",
    r"Error reading persistent compilation cache entry",
)


def configured_by_jax() -> bool:
    """Whether JAX's own configuration names a cache directory already."""
    return jax.config.jax_compilation_cache_dir is not None


def default_dir(workdir) -> str | None:
    """None when JAX's configuration names a cache (kept as it is), else
    `$LEARNED_RESIZE_CACHE/jax` when that is set, else `<workdir>/compile_cache`."""
    if configured_by_jax():
        return None
    if os.environ.get("LEARNED_RESIZE_CACHE"):
        return str(executables.cache_root() / "jax")
    return str(workdir_lib.as_path(workdir) / SUBDIR)


def use(path: str) -> None:
    """Turns JAX's persistent compilation cache on in `path` for every program ('' = off).

    May be called after programs were compiled: JAX decides whether to use a cache at
    its first compile and keeps the answer, so the decision is reset here.
    """
    if path:
        for message in _CACHE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    else:
        jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
