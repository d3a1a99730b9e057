"""Compiled programs kept on disk and loaded by a fresh process without tracing.

JAX's persistent compilation cache skips XLA's compile, but a fresh process still
traces the Python function and lowers it to StableHLO to find the cache entry: for the
pixel seam carving at 256 px that is most of a 0.2-0.3 s first call, where numba's
cached `seam-carving` takes 0.06 s (`bench/seam_cold.py`). `stored_jit(fn)` names a
program by what decides it without tracing it:

  - the function's module and qualified name, and the source of this whole package
    (so any edit to the code gives new names);
  - jax and jaxlib versions, the backend, its devices, XLA_FLAGS, the CPU-forms switch,
    the preloaded allocator, x64 mode and the CPU;
  - the arguments' tree structure, shapes, dtypes (weak or not), devices and static
    values.

A hit deserialises the stored executable onto the devices it was compiled for (~0.02 s;
if it then cannot run, it is compiled again); a miss compiles as `jax.jit`
would and writes the executable atomically (a temporary file renamed into place), so
concurrent processes never read a partial file. A file that cannot be read or loaded
is compiled again and replaced; a store that cannot be written is skipped. Only this
package's functions may be wrapped: the fingerprint covers no other code.

The store is `$LEARNED_RESIZE_CACHE/executables` (default
`~/.cache/learned_resize/executables`); `LEARNED_RESIZE_EXECUTABLES=0` turns it off,
leaving plain `jax.jit`.
"""

import functools
import hashlib
import os
import pathlib
import pickle
import platform
import tempfile
from collections.abc import Callable

import jax
import jaxlib
from jax.experimental import serialize_executable

# What the store did in this process (tests and benches read it).
STATS = {"loaded": 0, "compiled": 0}


def cache_root() -> pathlib.Path:
    """$LEARNED_RESIZE_CACHE, or ~/.cache/learned_resize: the package's user cache
    (this store, the VGG weights)."""
    env = os.environ.get("LEARNED_RESIZE_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "learned_resize"


def store_dir() -> pathlib.Path | None:
    """The store's directory, or None when LEARNED_RESIZE_EXECUTABLES=0."""
    if os.environ.get("LEARNED_RESIZE_EXECUTABLES", "1") == "0":
        return None
    return cache_root() / "executables"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


PACKAGE = pathlib.Path(__file__).resolve().parent.parent  # learned_resize/


def package_sources() -> list[pathlib.Path]:
    """Every source file of the package, the code a stored program's name covers."""
    return sorted(PACKAGE.rglob("*.py"))


@functools.cache
def environment_fingerprint() -> str:
    """Digest of the package source, the JAX install, the devices and the CPU."""
    digest = hashlib.sha256()
    for path in package_sources():
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    devices = jax.devices()
    facts = (
        jax.__version__,
        jaxlib.__version__,
        jax.default_backend(),
        [d.device_kind for d in devices],
        os.environ.get("XLA_FLAGS", ""),
        # What decides the traced program besides the code: the CPU-forms switch and
        # the allocator (models/cpu/narrow_conv.py picks its form by it).
        os.environ.get("LEARNED_RESIZE_CPU_FORMS", ""),
        os.environ.get("LD_PRELOAD", ""),
        jax.config.jax_enable_x64,
        _cpu(),
    )
    digest.update(repr(facts).encode())
    return digest.hexdigest()


def _leaf_signature(x) -> str:
    aval = jax.typeof(x)
    weak = "~" if getattr(aval, "weak_type", False) else ""
    sharding = getattr(x, "sharding", None)  # where an array lives decides the program's devices
    devices = sorted(d.id for d in sharding.device_set) if sharding is not None else ""
    return f"{aval.str_short()}{weak}{devices}"


def _device_ids(compiled) -> list[int]:
    shardings = jax.tree.leaves(compiled.input_shardings)
    return sorted({d.id for s in shardings for d in s.device_set})


def program_key(fn: Callable, args: tuple, dynamic: dict, static: dict, name: str = "") -> str:
    """The file name of fn's program for these arguments (name: what a closure captured)."""
    leaves, tree = jax.tree.flatten((args, dynamic))
    signature = (
        fn.__module__,
        fn.__qualname__,
        name,
        str(tree),
        tuple(_leaf_signature(x) for x in leaves),
        sorted((k, repr(v)) for k, v in static.items()),
        environment_fingerprint(),
    )
    name = fn.__qualname__.replace("<", "").replace(">", "")
    return f"{name}-{hashlib.sha256(repr(signature).encode()).hexdigest()[:40]}"


def _load(path: pathlib.Path):
    try:
        with open(path, "rb") as f:
            payload, in_tree, out_tree, ids = pickle.load(f)
        # On the devices it was compiled for: by default the loader would spread it
        # over every local device (with 8 of them, a 1-device program then expects
        # 8 shards of each argument).
        devices = [d for d in jax.devices() if d.id in ids]
        if len(devices) != len(ids):
            return None
        return serialize_executable.deserialize_and_load(
            payload, in_tree, out_tree, execution_devices=devices
        )
    except Exception:  # noqa: BLE001 (missing, partial or foreign file: compile again)
        return None


def _save(path: pathlib.Path, compiled) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = pickle.dumps((*serialize_executable.serialize(compiled), _device_ids(compiled)))
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
            f.write(data)
        os.replace(f.name, path)
    except Exception:  # noqa: BLE001 (read-only or full disk: the program still runs)
        pass


def stored_jit(fn: Callable, *, static_argnames: tuple[str, ...] = (), name: str = "") -> Callable:
    """`jax.jit(fn, static_argnames=...)` whose executables live in `store_dir()`.

    Static arguments must be passed by keyword. A closure must describe what it captured
    in name (a stable string: the same text for the same program in every process).
    """
    jitted = jax.jit(fn, static_argnames=static_argnames)
    programs = {}

    @functools.wraps(fn)
    def call(*args, **kwargs):
        directory = store_dir()
        if directory is None:
            return jitted(*args, **kwargs)
        static = {k: v for k, v in kwargs.items() if k in static_argnames}
        dynamic = {k: v for k, v in kwargs.items() if k not in static_argnames}
        key = program_key(fn, args, dynamic, static, name)
        if key in programs:
            return programs[key](*args, **dynamic)
        path = directory / f"{key}.bin"
        loaded = _load(path)
        if loaded is not None:
            try:
                # Blocking: a program that cannot run here (e.g. object code missing a
                # function it calls) fails only once its result is awaited.
                out = jax.block_until_ready(loaded(*args, **dynamic))
            except Exception:  # noqa: BLE001 (a program this process cannot run: compile)
                loaded = None
            else:
                STATS["loaded"] += 1
                programs[key] = loaded
                return out
        compiled = jitted.lower(*args, **kwargs).compile()
        _save(path, compiled)
        STATS["compiled"] += 1
        programs[key] = compiled
        return compiled(*args, **dynamic)

    return call
