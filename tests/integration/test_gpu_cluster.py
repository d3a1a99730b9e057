"""A faked 2-task SLURM job on 127.0.0.1: the start-up path a GPU cluster takes.

Two `python -m learned_resize.main` processes get exactly the variables jax's
`SlurmCluster` reads from `srun` (SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS,
SLURM_PROCID, SLURM_LOCALID) plus the layout ones `learned_resize.runtime.distributed`
reads (SLURM_NODEID, SLURM_STEP_TASKS_PER_NODE) and no coordinator flags: they find
each other through `--distributed=auto`, as on a SLURM cluster, and talk through gloo
CPU collectives. Each has 4 CPU devices standing in for GPUs, so the mesh has 8 devices;
the reference is the tiny config on 1 process of 8 devices, run in this process.
Helpers come from test_multihost.py and launch/local_multiprocess.py.

The launch scripts (launch/gpu_host.sh, launch/slurm.sbatch) are run for real with
fake `srun`, `scontrol` and `python` on PATH that record their argv and environment:
dry runs print exactly what the real runs execute, and only srun's status 75
(preempted, checkpoint saved) requeues the job.
"""

import json
import os
import shlex
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from learned_resize import train
from tests.integration import test_multihost as multihost
from tests.integration.test_multihost import data  # noqa: F401  (fixture: the dataset prepared once)

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


def start_tasks(flags: list, log_dir, module: str = "learned_resize.main") -> list:
    """Starts `python -m module flags` as the TASKS tasks of one fake srun step."""
    job_id = free_slurm_job_id()
    procs = []
    for task in range(TASKS):
        env = multihost.launcher.child_env(os.environ, DEVICES, srun_env(job_id, task))
        with open(log_dir / f"task_{task}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", module, *flags],
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


@pytest.mark.slow
def test_doctor_on_every_task_of_a_fake_slurm_job(data, tmp_path):  # noqa: F811
    """slurm.sbatch's check step: each task joins the job and reports its share."""
    _, data_dir = data
    procs = start_tasks([f"--data_dir={data_dir}"], tmp_path, "learned_resize.tools.doctor")
    codes = wait_all(procs, multihost.TIMEOUT)
    logs = [(tmp_path / f"task_{t}.log").read_text() for t in range(TASKS)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    for task, log in enumerate(logs):
        assert (
            f"[process {task}] OK  processes: process {task} of 2, 4 devices per process, "
            "8 in all\n"
        ) in log
        assert f"[process {task}] OK  dataset fashion_mnist_local: prepared" in log


# --------------------------------------------------------------------------- launch scripts

GPU_HOST = os.path.join(multihost.REPO, "launch", "gpu_host.sh")
SBATCH = os.path.join(multihost.REPO, "launch", "slurm.sbatch")
# What the fake programs record: their argv and the GPU settings they were started with.
RECORDED_ENV = ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "CUDA_VISIBLE_DEVICES")


def fake_program(path, calls, status_if=None):
    """An executable that appends {argv, env} to `calls`; exits 75/3/.. if `status_if` says so.

    status_if: (word, environment variable): exit with that variable's value when `word`
    is among the arguments (how the fake srun plays a preempted or failed run).
    """
    exit_line = ""
    if status_if:
        word, var = status_if
        exit_line = f"sys.exit(int(os.environ.get({var!r}, 0)) if {word!r} in sys.argv else 0)\n"
    path.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"env = {{k: os.environ[k] for k in {RECORDED_ENV!r} if k in os.environ}}\n"
        f"open({str(calls)!r}, 'a').write(json.dumps([sys.argv[1:], env]) + '\\n')\n" + exit_line
    )
    path.chmod(0o755)


def run_script(script, args, tmp_path, env_extra=None):
    """Runs a launch script with fake srun/scontrol/python on PATH; returns (result, calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls.jsonl"
    fake_program(bin_dir / "srun", calls, status_if=("run", "FAKE_RUN_STATUS"))
    fake_program(bin_dir / "scontrol", calls)
    fake_program(bin_dir / "python", calls)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "XLA_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", HOME=str(tmp_path), **(env_extra or {}))
    for key in ("PYTHON", "XLA_CACHE_DIR", "CUDA_VISIBLE_DEVICES"):
        env.pop(key, None)
    result = subprocess.run(
        ["bash", script, *args], env=env, capture_output=True, text=True, timeout=60
    )
    recorded = []
    if calls.exists():
        recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    return result, recorded


def printed(result) -> list:
    return [shlex.split(x) for x in result.stdout.splitlines() if not x.startswith("#")]


def test_gpu_host_dry_run_prints_settings_and_commands(tmp_path):
    flags = ["--config=configs/tiny.py", "--workdir=/data/it's here"]
    result, recorded = run_script(
        GPU_HOST, ["--dry-run", "--gpus=0,1", "check", "run", "--", *flags], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert recorded == []  # a dry run runs nothing
    cache = tmp_path / ".cache" / "learned_resize" / "xla"
    assert printed(result) == [
        [
            "export",
            "XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true "
            f"--xla_gpu_per_fusion_autotune_cache_dir={cache}/autotune",
        ],
        ["export", f"JAX_COMPILATION_CACHE_DIR={cache}/jax"],
        ["export", "CUDA_VISIBLE_DEVICES=0,1"],
        ["python", "-m", "learned_resize.tools.doctor"],
        ["python", "-m", "learned_resize.main", *flags],
    ]
    assert not cache.exists()


def test_gpu_host_runs_what_it_prints(tmp_path):
    """The same argv and environment reach Python; the user's own XLA flags come last."""
    args = ["--cache-dir", str(tmp_path / "c"), "check", "run", "--", "--workdir=/w", "--x=a b"]
    result, recorded = run_script(GPU_HOST, args, tmp_path, {"XLA_FLAGS": "--xla_mine=1"})
    assert result.returncode == 0, result.stderr
    lines = printed(result)
    exports = dict(x[1].split("=", 1) for x in lines if x[0] == "export")
    assert exports["XLA_FLAGS"].endswith(f"cache_dir={tmp_path}/c/autotune --xla_mine=1")
    assert [argv for argv, _ in recorded] == [x[1:] for x in lines if x[0] == "python"]
    assert [env for _, env in recorded] == [exports, exports]
    assert (tmp_path / "c" / "jax").is_dir() and (tmp_path / "c" / "autotune").is_dir()


def test_gpu_host_xla_flags_exist_in_this_jaxlib(tmp_path):
    """XLA rejects unknown flags at start-up: the script's flags must all be known."""
    result, _ = run_script(GPU_HOST, ["--dry-run", "check"], tmp_path)
    flags = printed(result)[0][1].removeprefix("XLA_FLAGS=")
    probe = [sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    ok = subprocess.run(probe, env=dict(env, XLA_FLAGS=flags), capture_output=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = dict(env, XLA_FLAGS=flags + " --xla_gpu_no_such_flag=true")
    assert subprocess.run(probe, env=bad, capture_output=True, timeout=120).returncode != 0


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "no command given"),
        (["run"], "run needs main flags with a --workdir"),
        (["run", "check", "--", "--workdir=w"], "run must come last"),
        (["--gpus=all", "check"], "--gpus=all is not a list of GPU indices"),
        (["launch"], "unknown argument 'launch'"),
    ],
)
def test_gpu_host_user_errors(tmp_path, args, message):
    result, recorded = run_script(GPU_HOST, args, tmp_path)
    assert result.returncode == 2 and message in result.stderr and recorded == []


def test_sbatch_dry_run_prints_every_step(tmp_path):
    flags = ["--config=configs/tiny.py", "--workdir=/shared/r 1"]
    result, recorded = run_script(SBATCH, ["--dry-run", *flags], tmp_path)
    assert result.returncode == 0, result.stderr
    assert recorded == []
    srun = ["srun", "--kill-on-bad-exit=1", "--label", "bash", "launch/gpu_host.sh"]
    assert printed(result) == [
        [*srun, "check"],
        [*srun, "run", "--", *flags],
        ["scontrol", "requeue", "JOBID"],
    ]
    assert "# if srun exits with 75 (preempted, checkpoint saved):" in result.stdout


@pytest.mark.parametrize("status, requeued", [(75, True), (0, False), (3, False)])
def test_sbatch_requeues_only_a_preempted_run(tmp_path, status, requeued):
    """The fake srun exits `status` for the run step; 75 means checkpoint saved, run again."""
    env = {"SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": multihost.REPO}
    env["FAKE_RUN_STATUS"] = str(status)
    result, recorded = run_script(SBATCH, ["--workdir=/shared/r"], tmp_path, env)
    argvs = [argv for argv, _ in recorded]
    assert argvs[:2] == [
        ["--kill-on-bad-exit=1", "--label", "bash", "launch/gpu_host.sh", "check"],
        ["--kill-on-bad-exit=1", "--label", "bash", "launch/gpu_host.sh", "run", "--"]
        + ["--workdir=/shared/r"],
    ]
    assert argvs[2:] == ([["requeue", "4242"]] if requeued else [])
    assert result.returncode == (0 if requeued else status)


def test_sbatch_header_requeues_and_signals_before_the_limit():
    with open(SBATCH) as f:
        header = [line.split()[1] for line in f if line.startswith("#SBATCH")]
    assert "--requeue" in header and "--signal=TERM@120" in header


def test_sbatch_needs_a_workdir(tmp_path):
    result, recorded = run_script(SBATCH, ["--config=configs/tiny.py"], tmp_path)
    assert result.returncode == 2 and "--workdir on storage every node sees" in result.stderr
    assert recorded == []
