"""A faked 2-task SLURM job on 127.0.0.1: the start-up path a GPU cluster takes.

Two `python -m learned_resize.main` processes get exactly the variables jax's
`SlurmCluster` reads from `srun` (SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS,
SLURM_PROCID, SLURM_LOCALID) plus the layout ones `learned_resize.distributed`
reads (SLURM_NODEID, SLURM_STEP_TASKS_PER_NODE) and no coordinator flags: they find
each other through `--distributed=auto`, as on a SLURM cluster, and talk through gloo
CPU collectives. Each has 4 CPU devices standing in for GPUs, so the mesh has 8 devices;
the reference is the tiny config on 1 process of 8 devices, run in this process.
Helpers come from test_multihost.py and launch/local_multiprocess.py.
"""

import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import test_multihost as multihost
from test_multihost import data  # noqa: F401  (fixture: the dataset prepared once)

from learned_resize import train

TASKS, DEVICES = 2, 4
NODE = "127.0.0.1"


def free_slurm_job_id() -> int:
    """A job id whose coordinator port (jax: id % 4096 + 61440) is free on NODE right now."""
    for job_id in range(4000, 4096):
        port = job_id % 2**12 + (65535 - 2**12 + 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        return job_id
    raise RuntimeError("no free port in 65440..65535 for the fake SLURM coordinator")


def srun_env(job_id: int, task: int) -> dict:
    """What `srun --ntasks=2 --nodes=1` gives task `task` (on one node, NODE)."""
    return {
        "SLURM_JOB_ID": str(job_id),
        "SLURM_STEP_NODELIST": NODE,
        "SLURM_NTASKS": str(TASKS),
        "SLURM_PROCID": str(task),
        "SLURM_LOCALID": str(task),
        "SLURM_NODEID": "0",
        "SLURM_STEP_NUM_NODES": "1",
        "SLURM_STEP_TASKS_PER_NODE": str(TASKS),
    }


def start_tasks(flags: list, log_dir) -> list:
    job_id = free_slurm_job_id()
    procs = []
    for task in range(TASKS):
        env = multihost.launcher.child_env(os.environ, DEVICES, srun_env(job_id, task))
        with open(log_dir / f"task_{task}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "learned_resize.main", *flags],
                    cwd=multihost.REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def wait_all(procs: list, timeout: float) -> list:
    """Exit codes; when one task fails the other is killed (it would wait forever)."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
    return [p.wait() for p in procs]


@pytest.mark.slow
def test_fake_slurm_job_trains_like_one_process(data, tmp_path):  # noqa: F811
    values = multihost.overrides(data)
    two = tmp_path / "slurm"
    procs = start_tasks(multihost.main_flags(two, values), tmp_path)
    one = tmp_path / "one_process"
    assert jax.device_count() == 8
    train.train_and_evaluate(multihost.tiny_config(values), str(one))  # while they run
    codes = wait_all(procs, multihost.TIMEOUT)
    logs = [(tmp_path / f"task_{t}.log").read_text() for t in range(TASKS)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)

    for task, log in enumerate(logs):  # Both found the job through SLURM's variables.
        assert f"distributed: process {task} of 2 via slurm, coordinator 127.0.0.1:" in log
    assert "global batch 16 on 8 devices / 2 processes" in logs[0]  # one mesh of 8
    a, b = multihost.train_losses(two), multihost.train_losses(one)
    assert sorted(a) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([a[s] for s in sorted(a)], [b[s] for s in sorted(b)], 1e-4)
    multihost.assert_trees_close(
        multihost.final_params(two), multihost.final_params(one), rtol=1e-4, atol=1e-5
    )
