r"""Is this host ready to train? One line per check: OK, or FIX with what to run.

    python -m learned_resize.tools.doctor [--data_dir=DIR] [--cache_dir=DIR] [--distributed=auto]

Checks the accelerator platform (and whether an NVIDIA driver or TPU chips are
present that jax does not use), the processes and devices per process (after
joining the other processes the way `learned_resize.main` does: SLURM, Open MPI,
Cloud TPU, see `learned_resize.runtime.distributed`), memory per device, the jax, jaxlib and
CUDA plugin / libtpu versions and the runtime's, the host allocator, the TFDS data
dir and each dataset the configs use, and the cached VGG weights for retargeting.
Under several processes every line starts with `[process I]`. The exit status is 0
whatever the checks find (a pod's `check` keeps going); 1 for bad flags, as one line
`error: ...` on stderr. `launch/tpu_pod.sh check` and `launch/slurm.sbatch` run it on
every host.
"""

import dataclasses
import importlib.metadata
import os
import sys

from absl import flags
from etils import epath

from learned_resize.runtime import cli, distributed, errors

# Datasets the configs in configs/ read, beyond the project's own builders.
CATALOG_DATASETS = ("imagenet2012",)
# Optional packages that carry the accelerator runtime, reported with jax and jaxlib.
RUNTIME_PACKAGES = ("jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu")
CUDA_FIX = 'pip install -e ".[cuda12]"  (jax with its CUDA 12 wheels; see docs/gpu_clusters.md)'
_GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the report; `fix` is None when all is well."""

    name: str
    detail: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.fix is None

    def line(self) -> str:
        text = f"{'OK ' if self.ok else 'FIX'} {self.name}: {self.detail}"
        return text if self.ok else f"{text} -> {self.fix}"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_platform(devices, nvidia_driver: bool, tpu_chips: int) -> Check:
    """The platform jax runs on, and a fix when it ignores an accelerator that is there."""
    platform = devices[0].platform
    detail = f"{platform} ({', '.join(sorted({d.device_kind for d in devices}))})"
    if platform == "cpu" and nvidia_driver:
        return Check("platform", f"{detail}, but an NVIDIA driver is present", CUDA_FIX)
    if platform == "cpu" and tpu_chips:
        import jax

        fix = f'pip install "jax[tpu]=={jax.__version__}"'
        return Check("platform", f"{detail}, but {tpu_chips} TPU chips are attached", fix)
    return Check("platform", detail)


def check_processes(process_index: int, process_count: int, local: int, total: int) -> Check:
    detail = (
        f"process {process_index} of {process_count}, {local} devices per process, {total} in all"
    )
    if local * process_count != total:
        return Check(
            "processes",
            detail + ": processes see different numbers of devices",
            "give every host the same GPUs per task (srun --gpus-per-task / --ntasks-per-node)",
        )
    return Check("processes", detail)


def check_memory(devices) -> Check:
    """Each local device's memory limit and use, where the runtime reports them."""
    stats = []
    for device in devices:
        try:
            stats.append(device.memory_stats())
        except Exception:  # Some runtimes raise instead of returning None.
            stats.append(None)
    if not any(stats):
        pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        detail = f"not reported on {devices[0].platform}; host RAM {pages / _GIB:.1f} GiB"
        return Check("memory", detail)
    parts = []
    for device, s in zip(devices, stats, strict=True):
        if s:
            limit, used = s.get("bytes_limit", 0) / _GIB, s.get("bytes_in_use", 0) / _GIB
            parts.append(f"{device.id}: {limit:.1f} GiB ({used:.1f} in use)")
    return Check("memory", "per device " + ", ".join(parts))


def check_versions(runtime_version: str) -> Check:
    """jax, jaxlib, the accelerator packages, and the runtime; plugins must match jaxlib."""
    jaxlib = _version("jaxlib")
    found = {p: v for p in ("jax", "jaxlib", *RUNTIME_PACKAGES) if (v := _version(p))}
    detail = ", ".join(f"{p} {v}" for p, v in found.items()) + f"; runtime {runtime_version}"
    for package in ("jax-cuda12-plugin", "jax-cuda13-plugin"):
        if package in found and found[package] != jaxlib:
            extra = package.split("-")[1]
            fix = f'pip install "jax[{extra}]=={found["jax"]}"'
            return Check("versions", f"{detail}: {package} differs from jaxlib", fix)
    return Check("versions", detail)


def check_allocator(platform: str) -> Check:
    from learned_resize.runtime import allocator as allocator_lib

    library = allocator_lib.tcmalloc_library()
    loaded = allocator_lib.loaded_allocator()
    if platform != "cpu":
        return Check("allocator", f"{loaded} (device memory is XLA's own; malloc matters on CPU)")
    if library:
        return Check("allocator", f"tcmalloc installed ({library}); the trainer runs under it")
    return Check(
        "allocator",
        "no tcmalloc: XLA:CPU's large buffers fault every page again each step",
        "sudo apt-get install libtcmalloc-minimal4  (launch/install.sh does it)",
    )


def _prepare_command(name: str, data_dir: str) -> str:
    if name in CATALOG_DATASETS:
        return (
            f"tfds build {name} --file_format=array_record --data_dir={data_dir}  "
            f"(source files in {data_dir}/downloads/manual)"
        )
    manual = " --manual_dir=DIR_WITH_AVA.txt_AND_images" if name == "ava" else ""
    return f"python -m learned_resize.data.prepare --dataset={name} --data_dir={data_dir}{manual}"


def check_datasets(data_dir: str) -> list[Check]:
    """The data dir, then each dataset: prepared (its TFDS versions) or how to prepare it."""
    from learned_resize.data import builders as builders_lib

    root = epath.Path(data_dir)
    exists = root.exists()
    checks = [Check("data dir", f"{data_dir} {'exists' if exists else 'does not exist'}")]
    for name in (*builders_lib.LOCAL_BUILDERS, *CATALOG_DATASETS):
        found = []
        if exists and (root / name).exists():
            # name/version/ or name/config/version/ (no `**`: on GCS that is one RPC per dir).
            infos = [*root.glob(f"{name}/*/dataset_info.json")]
            infos += root.glob(f"{name}/*/*/dataset_info.json")
            found = sorted(str(p.parent.relative_to(root)) for p in infos)
        if found:
            checks.append(Check(f"dataset {name}", f"prepared ({', '.join(found)})"))
        else:
            fix = _prepare_command(name, data_dir)
            checks.append(Check(f"dataset {name}", "not prepared", fix))
    return checks


def check_weights(cache_dir: str | None) -> Check:
    from learned_resize.retarget import weights

    paths = [weights.cache_path(depth, cache_dir) for depth in (19, 16)]
    missing = [str(p) for p in paths if not p.is_file()]
    if not missing:
        return Check("VGG weights", f"{paths[0].parent} has {', '.join(p.name for p in paths)}")
    fix = weights.FETCH_COMMAND + (f" --cache_dir={cache_dir}" if cache_dir else "")
    return Check("VGG weights", f"missing {', '.join(missing)}", fix)


def run_checks(data_dir: str | None = None, cache_dir: str | None = None) -> list[Check]:
    """Every check, in the order printed. Call after `jax.distributed` (if any) is up."""
    import jax
    from jax._src import hardware_utils  # jax's own probes for attached accelerators

    from learned_resize.data import builders as builders_lib

    local = jax.local_devices()
    platform = local[0].platform
    tpu_chips, _ = hardware_utils.num_available_tpu_chips_and_device_id()
    return [
        check_platform(local, hardware_utils.has_visible_nvidia_gpu(), tpu_chips),
        check_processes(jax.process_index(), jax.process_count(), len(local), jax.device_count()),
        check_memory(local),
        check_versions(local[0].client.platform_version.strip() or platform),
        check_allocator(platform),
        *check_datasets(builders_lib.resolve_data_dir(data_dir)),
        check_weights(cache_dir),
    ]


def define_flags(values: flags.FlagValues = flags.FLAGS) -> dict:
    """The command line's flags, in `values`. Defined only when this module runs as a
    program (or by a test, in its own FlagValues): importing it claims no flag names."""
    define = dict(flag_values=values)
    return dict(
        data_dir=flags.DEFINE_string(
            "data_dir", None, "TFDS data dir (default $TFDS_DATA_DIR or ~/...).", **define
        ),
        cache_dir=flags.DEFINE_string(
            "cache_dir", None, "VGG weights cache (default $LEARNED_RESIZE_CACHE).", **define
        ),
        distributed=flags.DEFINE_enum(
            "distributed",
            "auto",
            distributed.MODES,
            "auto: join the other processes on TPU pods, SLURM, or when a coordinator is given.",
            **define,
        ),
        coordinator_address=flags.DEFINE_string(
            "coordinator_address", None, "host:port of process 0 (as main.py).", **define
        ),
        num_processes=flags.DEFINE_integer(
            "num_processes", None, "Number of processes (hosts).", **define
        ),
        process_id=flags.DEFINE_integer("process_id", None, "This process's index.", **define),
    )


def main(argv: list[str], flag: dict) -> int:
    """Prints the checks; `flag` holds the parsed flags of `define_flags`. 1 on a user error."""
    if len(argv) > 1:
        print(
            f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.",
            file=sys.stderr,
        )
        return 1
    try:
        distributed.initialise(
            flag["distributed"].value,
            flag["coordinator_address"].value,
            flag["num_processes"].value,
            flag["process_id"].value,
        )
    except distributed.StartupError as e:
        print(errors.one_line(e), file=sys.stderr)
        return 1
    import jax

    checks = run_checks(flag["data_dir"].value, flag["cache_dir"].value)
    prefix = f"[process {jax.process_index()}] " if jax.process_count() > 1 else ""
    for check in checks:
        print(prefix + check.line())
    fixes = sum(not c.ok for c in checks)
    print(f"{prefix}{len(checks) - fixes} of {len(checks)} OK, {fixes} to fix.", flush=True)
    return 0


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    cli.run_tool(define_flags, main)


if __name__ == "__main__":
    console()
