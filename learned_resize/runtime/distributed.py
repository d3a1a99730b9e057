"""Multi-process start-up: which launcher started this process, then `jax.distributed`.

`--distributed=auto` (main.py's default) finds the other processes in this order:

1. explicit flags `--coordinator_address/--num_processes/--process_id` (what
   `launch/local_multiprocess.py` passes);
2. the cluster environments jax itself knows (`jax._src.clusters`, in jax's order):
   Open MPI's `mpirun` (`OMPI_MCA_orte_hnp_uri`, Open MPI <= 4), SLURM's `srun`
   (`SLURM_JOB_ID`, `SLURM_STEP_NODELIST`, `SLURM_NTASKS`, `SLURM_PROCID`,
   `SLURM_LOCALID`), GKE TPU pods (`TPU_WORKER_HOSTNAMES`) and Cloud TPU VMs (the GCE
   metadata server's `agent-worker-number` and `worker-network-endpoints`, which is
   how the same command started by hand on every worker of a slice finds the others;
   nothing in the environment says so);
3. otherwise one process, without `jax.distributed`.

A detected job of one process (`srun -n 1`, a single-host TPU VM) also runs without
`jax.distributed`. `--distributed=on` initialises even then, and is an error when
nothing is detected; `--distributed=off` never initialises. Kubernetes detection is
left out of `auto` (jax's says yes inside any pod, multi-process job or not); there,
`--distributed=on` hands over to `jax.distributed.initialize()`'s own detection.

GPUs per process, as the launcher configured it: one task per node (`srun
--ntasks-per-node=1`) drives every GPU of its node; several tasks per node run one
GPU each, the GPU at the task's local rank, unless the launcher already bound one
GPU per task (`--gpus-per-task=1` leaves one entry in `CUDA_VISIBLE_DEVICES`).
torchrun's variables (`MASTER_ADDR`, `RANK`, ...) are not read: jax has no detector
for them; pass the explicit flags instead.
"""

import dataclasses
import os
import re
from collections.abc import Mapping

from learned_resize.runtime import errors

MODES = ("auto", "on", "off")
# Seconds process 0 may take to come up before the others give up (jax's default).
_TIMEOUT = 300
_NOTHING = "no launcher detected"


class StartupError(errors.UserError):
    """A wrong combination of flags or environment; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `initialise` does: run alone, or join `num_processes` processes."""

    source: str  # "explicit", a jax cluster name ("slurm", "ompi", "gcetpu", ...), or "off"
    num_processes: int = 1
    process_id: int = 0
    coordinator_address: str | None = None
    local_device_ids: tuple[int, ...] | None = None  # None: every device the process sees

    @property
    def distributed(self) -> bool:
        return self.coordinator_address is not None

    def describe(self) -> str:
        if not self.distributed:
            return f"distributed: single process ({self.source})"
        devices = (
            "all local devices"
            if self.local_device_ids is None
            else (f"local devices {list(self.local_device_ids)}")
        )
        return (
            f"distributed: process {self.process_id} of {self.num_processes} via "
            f"{self.source}, coordinator {self.coordinator_address}, {devices}"
        )


def cluster_types() -> list:
    """The cluster environments jax auto-detects, in jax's order, minus opt-in ones and K8s."""
    from jax._src import clusters

    return [
        env
        for env in clusters.ClusterEnv._cluster_types
        if not env.opt_in_only_method and env is not clusters.K8sCluster
    ]


def detect_cluster():
    """The first jax cluster environment present in this process's environment, or None."""
    return next((env for env in cluster_types() if env.is_env_present()), None)


def _expand_tasks_per_node(value: str) -> list[int]:
    """SLURM's '2(x3),1' -> [2, 2, 2, 1]."""
    counts = []
    for item in value.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not match:
            return []
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def local_process_count(name: str, environ: Mapping[str, str] = os.environ) -> int | None:
    """How many processes of this job share this node, when the launcher says so."""
    if name == "ompi" and environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", "").isdigit():
        return int(environ["OMPI_COMM_WORLD_LOCAL_SIZE"])
    if name == "slurm":
        value = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
        counts = _expand_tasks_per_node(value or "")
        node = int(environ.get("SLURM_NODEID", "0") or 0)
        if node < len(counts):
            return counts[node]
    return None


def local_device_ids(env, environ: Mapping[str, str] = os.environ) -> tuple[int, ...] | None:
    """The GPUs this process drives (None: all it sees), following the launcher's layout."""
    local_rank = env.get_local_process_id()
    if local_rank is None or env.name in ("gketpu", "gcetpu"):
        return None  # TPUs: one process per host, always every chip (jax's rule too).
    if local_process_count(env.name, environ) == 1:
        return None  # One process per host: all of its GPUs.
    visible = environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible and "," not in visible:
        return None  # The launcher bound one GPU to this task already.
    return (local_rank,)  # One process per GPU, the one at this task's local rank.


def _explicit(coordinator: str, num_processes: int | None, process_id: int | None) -> Plan:
    if num_processes is None or process_id is None:
        raise StartupError(
            "--coordinator_address needs --num_processes and --process_id too "
            "(e.g. --num_processes=2 --process_id=0 on the first host)."
        )
    if not re.fullmatch(r"\S+:\d+", coordinator):
        raise StartupError(
            f"--coordinator_address={coordinator!r} is not HOST:PORT; "
            "give process 0's address, e.g. 10.0.0.2:1234."
        )
    if not 0 <= process_id < num_processes:
        raise StartupError(
            f"--process_id={process_id} must be in [0, --num_processes={num_processes})."
        )
    return Plan("explicit", num_processes, process_id, coordinator)


def plan(
    mode: str = "auto",
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Plan:
    """Decides how this process starts, from the flags and os.environ (which jax reads).

    Raises:
      StartupError: contradictory flags, or `--distributed=on` with no launcher found.
    """
    if mode not in MODES:
        raise StartupError(f"--distributed={mode!r} is not one of {', '.join(MODES)}.")
    if coordinator:
        if mode == "off":
            raise StartupError("--distributed=off contradicts --coordinator_address; drop one.")
        return _explicit(coordinator, num_processes, process_id)
    if num_processes is not None or process_id is not None:
        raise StartupError(
            "--num_processes/--process_id need --coordinator_address=HOST:PORT of process 0."
        )
    if mode == "off":
        return Plan("off")
    env = detect_cluster()
    if env is None:
        if mode == "on":
            raise StartupError(
                "--distributed=on but no launcher found (looked for Open MPI, SLURM srun, "
                "Cloud TPU); start under one, or pass --coordinator_address, "
                "--num_processes and --process_id."
            )
        return Plan(_NOTHING)
    count = env.get_process_count()
    if count == 1 and mode == "auto":
        return Plan(f"{env.name} job of one process")
    port = os.environ.get("JAX_COORDINATOR_PORT")
    return Plan(
        env.name,
        count,
        env.get_process_id(),
        env.get_coordinator_address(timeout_secs=_TIMEOUT, override_coordinator_port=port),
        local_device_ids(env),
    )


def initialise(
    mode: str = "auto",
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Plan:
    """Plans, prints the plan on every process, and calls `jax.distributed.initialize`."""
    import jax

    decided = plan(mode, coordinator, num_processes, process_id)
    if decided.source not in ("off", _NOTHING):  # Plain runs stay quiet.
        print(decided.describe(), flush=True)
    if decided.distributed:
        jax.distributed.initialize(
            coordinator_address=decided.coordinator_address,
            num_processes=decided.num_processes,
            process_id=decided.process_id,
            local_device_ids=(
                None if decided.local_device_ids is None else list(decided.local_device_ids)
            ),
            # Everything is decided above; jax must not re-detect (and e.g. pin a GPU).
            cluster_detection_method="deactivate",
        )
    return decided
