"""Multi-host training on one machine, and the Cloud TPU script.

The slow tests start `launch/local_multiprocess.py`: 2 processes of 4 simulated
CPU devices each, joined by `jax.distributed` and gloo collectives, which is the
same code path as the 4 hosts of a v4-32 slice. The reference is the same
config on 1 process of 8 devices (run in this process, which has 8 devices).
"""

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from ml_collections import config_flags  # noqa: F401  (registers the config flag type)

from configs import tiny
from learned_resize import train
from learned_resize.data import builders
from learned_resize.runtime import checkpoints, errors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(REPO, "launch", "local_multiprocess.py")
POD_SCRIPT = os.path.join(REPO, "launch", "tpu_pod.sh")
# Eval split size: not a multiple of the global batch (16) nor of the local one (8).
EVAL_SIZE = 37
# A multi-process run starts in ~20-40 s on an idle 2-core machine; allow for a busy one.
TIMEOUT = 900


def _load_launcher():
    spec = importlib.util.spec_from_file_location("local_multiprocess", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def data(small_fmnist):
    """(manual dir, data dir) with the TFDS dataset prepared once, before processes share it."""
    source, data_dir, _ = small_fmnist
    builders.prepare("fashion_mnist_local", data_dir, source)
    return source, data_dir


def overrides(data, **extra) -> dict:
    source, data_dir = data
    values = {
        "data.manual_dir": source,
        "data.data_dir": data_dir,
        "data.eval_split": f"test[:{EVAL_SIZE}]",
        "log_every_steps": 1,
    }
    values.update(extra)
    return values


def main_flags(workdir, values: dict) -> list:
    return ["--config=configs/tiny.py", f"--workdir={workdir}"] + [
        f"--config.{k}={v}" for k, v in values.items()
    ]


def tiny_config(values: dict):
    config = tiny.get_config()
    for key, value in values.items():
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return config


def launch(flags, log_dir, *, processes=2, devices=4, process_env=()):
    cmd = [
        sys.executable,
        LAUNCHER,
        f"--num_processes={processes}",
        f"--devices_per_process={devices}",
        f"--log_dir={log_dir}",
        f"--timeout={TIMEOUT - 60}",
        *[f"--process_env={e}" for e in process_env],
        "--",
        *flags,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)


def train_losses(workdir) -> dict:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    return {x["step"]: x["train/loss"] for x in lines if "train/loss" in x}


def final_params(workdir):
    """The newest checkpoint's params, whatever topology saved them, on one local device.

    (`checkpoints.load_parts` restores onto the saving run's devices, which a 2-process
    checkpoint does not have in this 1-process test.)
    """
    directory, step = checkpoints.resolve_checkpoint(str(workdir))
    path = os.path.join(directory, str(step), "state")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with ocp.StandardCheckpointer() as checkpointer:
        saved = checkpointer.metadata(path)
        saved = getattr(saved, "item_metadata", saved)  # orbax >= 0.11: a StepMetadata
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), saved
        )
        return jax.device_get(checkpointer.restore(path, target)["params"])


def assert_trees_close(a, b, rtol, atol):
    flat_a, flat_b = checkpoints._leaves_by_path(a), checkpoints._leaves_by_path(b)
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_allclose(flat_a[key], flat_b[key], rtol=rtol, atol=atol, err_msg=key)


@pytest.fixture(scope="module")
def reference_runs(data, tmp_path_factory):
    """The tiny config trained on 1 process x 8 devices and on 2 processes x 4 devices."""
    root = tmp_path_factory.mktemp("multihost")
    values = overrides(data)
    one = root / "one_process"
    assert jax.device_count() == 8
    train.train_and_evaluate(tiny_config(values), str(one))
    two = root / "two_processes"
    result = launch(main_flags(two, values), root / "logs_two")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {"one": one, "two": two, "two_output": result.stdout, "logs": root / "logs_two"}


# --------------------------------------------------------------------------- slow: real processes


@pytest.mark.slow
def test_two_processes_train_like_one(reference_runs):
    """2 hosts x 4 devices = 1 host x 8 devices: same global batches, same BN statistics."""
    one, two = train_losses(reference_runs["one"]), train_losses(reference_runs["two"])
    assert sorted(two) == [1, 2, 3, 4, 5, 6]  # each step logged once: only process 0 writes
    np.testing.assert_allclose([two[s] for s in sorted(two)], [one[s] for s in sorted(one)], 1e-4)
    assert_trees_close(
        final_params(reference_runs["two"]),
        final_params(reference_runs["one"]),
        rtol=1e-4,
        atol=1e-5,
    )
    output = reference_runs["two_output"]
    assert "global batch 16 on 8 devices / 2 processes" in output
    # Process 0 logs and writes images; process 1 prints no progress.
    with open(reference_runs["logs"] / "process_1.log") as f:
        assert "step 1/6" not in f.read()
    assert "step 6/6" in output
    images = os.listdir(reference_runs["two"] / "images")
    assert images == ["resizer_grid_0000006.png"]


@pytest.mark.slow
def test_eval_counts_every_example_once_with_two_processes(reference_runs):
    """37 eval examples, global batch 16: 11 padded rows masked out, none counted twice."""
    with open(reference_runs["two"] / "results.json") as f:
        two = json.load(f)
    with open(reference_runs["one"] / "results.json") as f:
        one = json.load(f)
    assert EVAL_SIZE % 16 and EVAL_SIZE % 8
    assert two["num_examples"] == EVAL_SIZE
    # Correct counts are whole numbers of the 37 examples.
    for key in ("top1", "top5"):
        assert abs(two[key] * EVAL_SIZE - round(two[key] * EVAL_SIZE)) < 1e-6
        np.testing.assert_allclose(two[key], one[key], atol=1e-9)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)


@pytest.mark.slow
def test_kill_one_process_then_resume_both(reference_runs, data, tmp_path):
    """Process 1 is SIGKILLed after step 5; the relaunch resumes and ends like a straight run."""
    values = overrides(data)
    workdir = tmp_path / "run"
    killed = launch(
        main_flags(workdir, values),
        tmp_path / "logs_killed",
        process_env=["1:LEARNED_RESIZE_KILL_AT_STEP=5"],
    )
    assert killed.returncode == 128 + signal.SIGKILL, killed.stdout[-4000:]
    assert "process 1 failed with signal SIGKILL; stopped the others" in killed.stdout
    _, step = checkpoints.resolve_checkpoint(str(workdir))
    assert step in (2, 4)  # the step-4 save may not have finished when process 1 died

    resumed = launch(main_flags(workdir, values), tmp_path / "logs_resumed")
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert f"Resumed from checkpoint at step {step}." in resumed.stdout
    assert_trees_close(
        final_params(workdir),
        final_params(reference_runs["two"]),
        rtol=1e-6,
        atol=1e-7,
    )
    # The replayed steps saw the same batches: the same losses as the straight run.
    np.testing.assert_allclose(
        [train_losses(workdir)[s] for s in range(1, 7)],
        [train_losses(reference_runs["two"])[s] for s in range(1, 7)],
        rtol=1e-6,
    )


@pytest.mark.slow
def test_sigterm_to_every_host_saves_at_an_agreed_step(data, tmp_path):
    """SIGTERM to the launcher reaches both processes; they stop at one step and save it."""
    values = overrides(data, num_train_steps=100000, checkpoint_every_steps=100000)
    cmd = [sys.executable, LAUNCHER, f"--log_dir={tmp_path / 'logs'}", "--"]
    cmd += main_flags(tmp_path / "run", values)
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    watchdog = threading.Timer(TIMEOUT, proc.kill)
    watchdog.start()
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "] step 3/" in line:
                proc.send_signal(signal.SIGTERM)
                break
        lines += proc.stdout.readlines()
        code = proc.wait()
    finally:
        watchdog.cancel()
    output = "".join(lines)
    assert code == errors.EXIT_PREEMPTED, output[-4000:]
    assert "sending SIGTERM to all" in output
    saved = [x for x in lines if "preempted: saved a checkpoint at step" in x]
    assert len(saved) == 1, output[-4000:]
    step = int(saved[0].split("at step ")[1].split(";")[0].rstrip("."))
    assert step >= 3
    assert checkpoints.resolve_checkpoint(str(tmp_path / "run"))[1] == step


# --------------------------------------------------------------------------- fast: launcher pieces


def test_child_environment_and_command():
    env = launcher.child_env(
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_foo=1", "PATH": "/bin"},
        devices=4,
        extra={"LEARNED_RESIZE_KILL_AT_STEP": "5"},
    )
    assert env["XLA_FLAGS"].split() == ["--xla_foo=1", "--xla_force_host_platform_device_count=4"]
    assert env["JAX_NUM_CPU_DEVICES"] == "4"
    assert env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] == "gloo"
    assert env["JAX_PLATFORMS"] == "cpu"
    assert env["LEARNED_RESIZE_KILL_AT_STEP"] == "5"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == REPO
    cmd = launcher.child_command("py", ["--config=c.py"], num_processes=2, process_id=1, port=7)
    assert cmd == [
        "py",
        "-m",
        "learned_resize.main",
        "--config=c.py",
        "--coordinator_address=127.0.0.1:7",
        "--num_processes=2",
        "--process_id=1",
    ]
    # One process: no coordinator, so main.py skips jax.distributed.
    assert launcher.child_command("py", ["--x"], 1, 0, 7) == [
        "py",
        "-m",
        "learned_resize.main",
        "--x",
    ]


def test_process_env_parsing():
    assert launcher.parse_process_env(["1:A=x=y", "0:B="], 2) == {1: {"A": "x=y"}, 0: {"B": ""}}
    for bad in ("2:A=1", "A=1", "1:=3"):
        with pytest.raises(ValueError, match="is not I:KEY=VALUE"):
            launcher.parse_process_env([bad], 2)
    with pytest.raises(ValueError, match="must both be at least 1"):
        launcher.launch(["--x"], num_processes=0, devices_per_process=4)


# --------------------------------------------------------------------------- the Cloud TPU script


def _pod_script(args, tmp_path, dry_run=True):
    """Runs tpu_pod.sh with a fake `gcloud` on PATH that records each call's argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "gcloud_calls.jsonl"
    fake = bin_dir / "gcloud"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp_path))
    for key in ("TPU_NAME", "ZONE", "PROJECT", "ACCELERATOR_TYPE", "RUNTIME_VERSION", "WORKDIR"):
        env.pop(key, None)
    result = subprocess.run(
        ["bash", POD_SCRIPT, *(["--dry-run"] if dry_run else []), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    recorded = []
    if calls.exists():
        recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    return result, recorded


def test_pod_dry_run_prints_every_gcloud_command(tmp_path):
    commands = ["create", "install", "check", "run", "logs", "stop", "delete"]
    result, recorded = _pod_script(
        ["--project=my-proj", "--workdir=gs://bucket/r50", *commands], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert recorded == []  # a dry run runs nothing
    printed = [shlex.split(x) for x in result.stdout.splitlines() if not x.startswith("#")]
    gcloud = [x[1:] for x in printed if x[0] == "gcloud"]
    tpu = ["compute", "tpus", "tpu-vm"]
    where = ["--zone=us-central2-b", "--project=my-proj"]
    assert gcloud[0] == [
        *tpu,
        "create",
        "learned-resize",
        *where,
        "--accelerator-type=v4-32",
        "--version=tpu-ubuntu2204-base",
    ]
    archive = str(tmp_path / "learned_resize_src.tar.gz")
    assert printed[1][0] == "tar" and printed[1][-2:] == [archive, "."]  # then scp'd
    assert gcloud[1] == [
        *tpu,
        "scp",
        archive,
        "learned-resize:~/learned_resize_src.tar.gz",
        *where,
        "--worker=all",
    ]
    ssh = [x for x in gcloud if x[3] == "ssh"]
    assert [x[:-1] for x in ssh] == [
        [*tpu, "ssh", "learned-resize", *where, f"--worker={w}"]
        for w in ("all", "all", "all", "0", "all")
    ]
    install, check, run, logs, stop = (x[-1].removeprefix("--command=") for x in ssh)
    assert "PYTHON=~/lr-venv/bin/python bash launch/install.sh" in install
    assert '"jax[tpu]==$(~/lr-venv/bin/python -c ' in install
    assert "python -m learned_resize.tools.doctor --distributed=on" in check
    assert (
        "~/lr-venv/bin/python -m learned_resize.main --config=configs/imagenet_resnet50.py "
        "--workdir=gs://bucket/r50 --distributed=on > ~/learned_resize_run.log" in run
    )
    assert logs == "tail -n 200 -F ~/learned_resize_run.log"
    assert stop == "kill -TERM $(cat ~/learned_resize_run.pid)"
    assert gcloud[-1] == [*tpu, "delete", "learned-resize", *where, "--quiet"]


def test_pod_script_runs_what_it_prints(tmp_path):
    """Without --dry-run the same argv reaches gcloud, awkward quoting included."""
    args = ["--spot", "--name=pod1", "create", "run", "delete", "--"]
    args += ["--config=configs/tiny.py", "--workdir=gs://b/it's here", "--config.seed=3"]
    result, recorded = _pod_script(args, tmp_path, dry_run=False)
    assert result.returncode == 0, result.stderr
    printed = [shlex.split(x)[1:] for x in result.stdout.splitlines() if x.startswith("gcloud")]
    assert recorded == printed
    assert recorded[0][-1] == "--spot"
    remote = shlex.split(recorded[1][-1].removeprefix("--command="))
    main = remote[remote.index("learned_resize.main") + 1 : remote.index(">")]
    assert main == [
        "--config=configs/tiny.py",
        "--workdir=gs://b/it's here",
        "--config.seed=3",
        "--distributed=on",
    ]


def test_pod_script_user_errors(tmp_path):
    result, _ = _pod_script(["run"], tmp_path)
    assert result.returncode == 2 and "run needs a workdir" in result.stderr
    result, _ = _pod_script(["launch"], tmp_path)
    assert result.returncode == 2 and "unknown argument 'launch'" in result.stderr
    result, _ = _pod_script([], tmp_path)
    assert result.returncode == 2 and "no command given" in result.stderr
