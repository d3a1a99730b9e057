"""`python -m learned_resize.tools.device_check --smoke`, run as a user runs it (subprocess).

The JSON's rows are checked against references computed here: the ResNet-50 step's FLOPs
against XLA's count of the same program compiled in this process, images/s against the
batch over the step time, the learning check's held-out top-1 against chance. Hosts
without tensorflow-datasets, grain, array-record and tensorboardX (or also without
ml-collections) are simulated by making their imports fail in the child.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from learned_resize.retarget import weights
from learned_resize.tools import device_check

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_PACKAGES = ("tensorflow_datasets", "grain", "array_record", "tensorboardX")


def run_check(tmp_path, *args, blocked=()):
    """The device check in a child process; `blocked` modules raise ImportError there."""
    out = tmp_path / "device_check.json"
    block = "".join(f"sys.modules[{m!r}] = None; " for m in blocked)
    code = (
        f"import runpy, sys; {block}"
        f"sys.argv = ['device_check', *{list(args)!r}, '--out={out}']; "
        "runpy.run_module('learned_resize.tools.device_check', run_name='__main__')"
    )
    command = [sys.executable, "-m", "learned_resize.tools.device_check", *args, f"--out={out}"]
    if blocked:
        command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    report = json.loads(out.read_text()) if out.exists() else None
    return result, report


def rows_of(report):
    return {row["name"]: row for row in report["rows"]}


@pytest.mark.slow
def test_smoke_run_measures_what_it_reports(tmp_path):
    result, report = run_check(tmp_path, "--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = rows_of(report)
    assert list(rows) == ["doctor", "learning", "resnet50", "retarget"]
    assert report["device_kind"] == jax.devices()[0].device_kind
    assert rows["doctor"]["status"] in ("ok", "fix")
    assert any(line.startswith("OK  platform: cpu") for line in rows["doctor"]["values"]["lines"])

    learning = rows["learning"]
    assert learning["status"] == "ok", learning["summary"]
    values = learning["values"]
    assert values["data"] == "Fashion-MNIST"  # Debian's dataset-fashion-mnist is installed
    assert values["chance"] == pytest.approx(0.1)
    assert values["top1"] >= 0.1 + device_check.LEARNING_MARGIN
    assert values["loss_last"] < values["loss_first"]
    assert values["eval_images"] == 2048  # 16 full batches of 128

    r50 = rows["resnet50"]
    assert r50["status"] == "ok", r50["summary"]
    v = r50["values"]
    assert (v["batch"], v["devices"], v["input_px"], v["output_px"]) == (2, 1, 64, 32)
    assert v["images_per_s"] > 0
    assert v["images_per_s"] == pytest.approx(v["batch"] / v["step_seconds"])
    assert v["peak_bf16_flops_per_device"] is None and v["mfu"] is None  # no peak for a CPU

    # The same program compiled here, on a one-device mesh like the child's.
    from configs import imagenet
    from learned_resize import steps as steps_lib
    from learned_resize.config import stages
    from learned_resize.runtime import compiled_stats
    from learned_resize.runtime import mesh as mesh_lib

    config = dict((n, c) for n, _, c in stages.stage_configs(imagenet.get_config("resnet50"), "w"))
    config = config["learned"]
    with config.unlocked():
        config.init_from.path = ""
        config.batch_size = 2
        config.model.dtype = "bfloat16"
        config.input_size = (64, 64)
        config.resizer.output_size = (32, 32)
    assert config.resizer.kind == "learned" and config.model.name == "resnet50"
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    trainer = steps_lib.Steps(config, mesh, steps_per_epoch=1000, num_steps=10_000)
    state, rest = trainer.init(jax.random.key(0))
    rng = np.random.default_rng(1)
    batch = {
        "image": rng.integers(0, 256, (2, 64, 64, 3), np.uint8),
        "label": rng.integers(0, 1000, 2, np.int32),
        "skipped": np.zeros(2, np.int32),
    }
    batch = mesh_lib.global_batch(batch, mesh)
    flops = compiled_stats.xla_flops(trainer.train_step.lower(state, batch, rest).compile())
    assert v["step_flops_per_device"] == pytest.approx(flops, rel=1e-6)
    assert v["achieved_flops_per_device"] == pytest.approx(flops / v["step_seconds"])

    retarget = rows["retarget"]
    if weights.cache_path(19).is_file() and weights.cache_path(16).is_file():
        assert retarget["status"] == "ok", retarget["summary"]
        assert retarget["values"]["output"] == [64, 48]
        assert retarget["values"]["first_seconds"] > 0
    else:
        assert retarget["status"] == "skipped"
        assert weights.FETCH_COMMAND in retarget["summary"]
    # the table printed names every row with its status
    for name, row in rows.items():
        assert f"| {name} | {row['status']} |" in result.stdout


@pytest.mark.slow
def test_runs_without_the_data_packages(tmp_path):
    """No TFDS, grain, array-record, tensorboardX: the learning check still trains."""
    result, report = run_check(
        tmp_path, "--smoke", "--checks=doctor,learning", "--train_steps=30", blocked=DATA_PACKAGES
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = rows_of(report)
    assert list(rows) == ["doctor", "learning"]
    assert (
        "dataset checks left out (tensorflow_datasets not installed)" in rows["doctor"]["summary"]
    )
    assert not any("dataset" in line for line in rows["doctor"]["values"]["lines"])
    assert rows["learning"]["status"] == "ok", rows["learning"]["summary"]
    assert rows["learning"]["values"]["steps"] == 30
    assert rows["learning"]["values"]["top1"] >= 0.1 + device_check.LEARNING_MARGIN


def test_without_ml_collections_the_rows_that_need_it_are_skipped(tmp_path):
    result, report = run_check(tmp_path, "--smoke", blocked=(*DATA_PACKAGES, "ml_collections"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = rows_of(report)
    assert rows["doctor"]["status"] in ("ok", "fix")
    for name in ("learning", "resnet50", "retarget"):
        assert rows[name]["status"] == "skipped"
        assert (
            rows[name]["summary"] == "needs ml-collections~=1.0: pip install 'ml-collections~=1.0'"
        )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checks=doctor,speed"], "error: --checks takes some of doctor,learning,"),
        (["--train_steps=0"], "error: --train_steps must be at least 1, got 0."),
        (["--out=/nonexistent/dir/x.json"], "error: --out=/nonexistent/dir/x.json: directory"),
        (["--smoke", "extra"], "error: unexpected arguments extra; flags start with --."),
        (["--photo_px=many"], "error: flag --photo_px=many"),
    ],
)
def test_bad_flags_are_one_line(args, message):
    command = [sys.executable, "-m", "learned_resize.tools.device_check", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
