"""Start-up detection (`learned_resize.runtime.distributed`) in the environment each launcher makes.

Each test fakes what one mode sees: nothing (a laptop), explicit flags, SLURM's
srun variables, Open MPI's mpirun variables, a GKE TPU pod, and a Cloud TPU VM whose
workers are listed only by the GCE metadata server (faked at jax's `get_metadata`).
The expected coordinator ports are computed here by hand from the rules jax
documents in `jax._src.clusters` (job id mod 4096 above 61440; TPU port 8482).
"""

import os
import subprocess
import sys

import jax
import pytest
from jax._src.clusters import cloud_tpu_cluster

from learned_resize.runtime import distributed

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIXES = ("SLURM_", "OMPI_", "TPU_", "MEGASCALE_", "JAX_COORDINATOR", "CUDA_VISIBLE")


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher variables, and not a Cloud TPU VM (what this machine is)."""
    for key in list(os.environ):
        if key.startswith(PREFIXES):
            monkeypatch.delenv(key)
    monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", False)
    return monkeypatch


def slurm(monkeypatch, **values):
    """An srun task's variables: job 1234, 2 nodes x 4 tasks, this is task 5 (node 1, rank 1)."""
    env = {
        "SLURM_JOB_ID": "1234",
        "SLURM_STEP_NODELIST": "gpu[017-018]",
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
    }
    env.update(values)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_nothing_detected_runs_one_process(clean_env):
    assert distributed.plan("auto") == distributed.Plan("no launcher detected")
    assert not distributed.plan("auto").distributed
    assert distributed.plan("off") == distributed.Plan("off")
    with pytest.raises(distributed.StartupError, match="no launcher found"):
        distributed.plan("on")


def test_explicit_flags_win_over_the_environment(clean_env):
    slurm(clean_env)
    got = distributed.plan("auto", "10.1.2.3:5000", 3, 2)
    assert got == distributed.Plan("explicit", 3, 2, "10.1.2.3:5000", None)


@pytest.mark.parametrize(
    "args, message",
    [
        (("auto", "h:1", None, 0), "needs --num_processes and --process_id"),
        (("auto", "h:1", 2, 2), r"--process_id=2 must be in \[0, --num_processes=2\)"),
        (("auto", "host-without-port", 2, 0), "is not HOST:PORT"),
        (("off", "h:1", 2, 0), "contradicts"),
        (("auto", None, 2, None), "need --coordinator_address"),
        (("sometimes", None, None, None), "is not one of auto, on, off"),
    ],
)
def test_bad_flags_say_what_to_do(clean_env, args, message):
    with pytest.raises(distributed.StartupError, match=message):
        distributed.plan(*args)


def test_slurm_one_process_per_gpu(clean_env):
    slurm(clean_env)
    # Port: 1234 % 4096 + (65535 - 4096 + 1); coordinator: the first node of gpu[017-018].
    assert distributed.plan("auto") == distributed.Plan("slurm", 8, 5, "gpu017:62674", (1,))


def test_slurm_one_process_per_host_drives_every_gpu(clean_env):
    slurm(clean_env, SLURM_NTASKS="2", SLURM_PROCID="1", SLURM_LOCALID="0")
    clean_env.setenv("SLURM_STEP_TASKS_PER_NODE", "1(x2)")
    assert distributed.plan("auto") == distributed.Plan("slurm", 2, 1, "gpu017:62674", None)


def test_slurm_gpu_bound_per_task_is_not_narrowed_again(clean_env):
    """--gpus-per-task=1: CUDA_VISIBLE_DEVICES already holds this task's one GPU."""
    slurm(clean_env, CUDA_VISIBLE_DEVICES="0")
    assert distributed.plan("auto").local_device_ids is None


def test_slurm_tasks_per_node_forms():
    assert (
        distributed.local_process_count(
            "slurm", {"SLURM_STEP_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "3"}
        )
        == 1
    )
    assert (
        distributed.local_process_count("slurm", {"SLURM_TASKS_PER_NODE": "8", "SLURM_NODEID": "0"})
        == 8
    )
    assert distributed.local_process_count("slurm", {"SLURM_TASKS_PER_NODE": "junk"}) is None


def test_slurm_job_of_one_task_runs_alone_unless_on(clean_env):
    slurm(clean_env, SLURM_NTASKS="1", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0")
    clean_env.setenv("SLURM_STEP_TASKS_PER_NODE", "1")
    clean_env.setenv("JAX_COORDINATOR_PORT", "7000")
    assert distributed.plan("auto") == distributed.Plan("slurm job of one process")
    assert distributed.plan("on") == distributed.Plan("slurm", 1, 0, "gpu017:7000", None)


def test_open_mpi(clean_env):
    clean_env.setenv("OMPI_MCA_orte_hnp_uri", "1531576320.0;tcp://10.96.0.1,10.148.0.1:34911")
    for key, value in (("SIZE", "8"), ("RANK", "3"), ("LOCAL_RANK", "3"), ("LOCAL_SIZE", "8")):
        clean_env.setenv(f"OMPI_COMM_WORLD_{key}", value)
    # Port: (1531576320 // 4096) % 4096 + 61440 = 373920 % 4096 + 61440 = 1184 + 61440.
    assert distributed.plan("auto") == distributed.Plan("ompi", 8, 3, "10.96.0.1:62624", (3,))


def fake_gce_metadata(monkeypatch, worker: int, endpoints: str):
    """A Cloud TPU VM: the metadata server lists the slice's workers; the environment doesn't."""
    values = {"agent-worker-number": str(worker), "worker-network-endpoints": endpoints}
    values["tpu-env"] = "ACCELERATOR_TYPE: 'v4-32'\n"
    monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
    monkeypatch.setattr(cloud_tpu_cluster, "get_metadata", lambda key: (values[key], 200))


def test_cloud_tpu_vm_slice_is_detected_from_metadata(clean_env):
    """Issue 13 item 9: no TPU_WORKER_HOSTNAMES on a TPU VM, yet 4 workers join."""
    endpoints = ",".join(f"w{i}:{i}:10.0.0.{i + 1}" for i in range(4))
    fake_gce_metadata(clean_env, worker=2, endpoints=endpoints)
    assert "TPU_WORKER_HOSTNAMES" not in os.environ
    assert distributed.plan("auto") == distributed.Plan("gcetpu", 4, 2, "10.0.0.1:8482", None)


def test_single_host_tpu_vm_runs_alone(clean_env):
    fake_gce_metadata(clean_env, worker=0, endpoints="10.0.0.1")
    assert distributed.plan("auto") == distributed.Plan("gcetpu job of one process")


def test_gke_tpu_pod(clean_env):
    clean_env.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
    # A pod's metadata server has no TPU worker number (else jax picks GCE first), and its
    # tpu-env, which jax reads for multislice settings, has none.
    clean_env.setattr(
        cloud_tpu_cluster, "get_metadata", lambda key: ("", 200 if key == "tpu-env" else 404)
    )
    clean_env.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.7,10.0.0.8")
    clean_env.setenv("TPU_WORKER_ID", "1")
    assert distributed.plan("auto") == distributed.Plan("gketpu", 2, 1, "10.0.0.7:8482", None)


def test_initialise_passes_the_plan_to_jax(clean_env, capsys):
    slurm(clean_env)
    calls = []
    clean_env.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    distributed.initialise("auto")
    assert calls == [
        dict(
            coordinator_address="gpu017:62674",
            num_processes=8,
            process_id=5,
            local_device_ids=[1],
            cluster_detection_method="deactivate",
        )
    ]
    expected = "distributed: process 5 of 8 via slurm, coordinator gpu017:62674, local devices [1]"
    assert capsys.readouterr().out == expected + "\n"
    calls.clear()
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            clean_env.delenv(key)
    distributed.initialise("auto")
    assert calls == [] and capsys.readouterr().out == ""  # A laptop run stays quiet.


def test_main_reports_a_bad_start_up_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env["PYTHONPATH"] = REPO
    result = subprocess.run(
        [sys.executable, "-m", "learned_resize.main", "--config=configs/tiny.py"]
        + [f"--workdir={tmp_path / 'run'}", "--distributed=on"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --distributed=on but no launcher found (looked for Open MPI, SLURM srun, "
        "Cloud TPU); start under one, or pass --coordinator_address, --num_processes "
        "and --process_id."
    ]
    assert not (tmp_path / "run").exists()
