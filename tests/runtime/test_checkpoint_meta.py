"""The checkpoint knows what it is: sizes included, checked at eval, resume and init_from.

A tiny run trained at output 8x8 is evaluated and resumed at 20x20 through the real
CLI: both are refused in one `error:` line naming the two sizes, before anything is
written. A continuation that diverges leaves config.json, results.json and every
checkpoint file byte-identical. A checkpoint saved before the sizes were recorded
still loads.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from learned_resize.runtime import checkpoint_meta, errors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    return env


def run(small_fmnist, *extra):
    source, data_dir, _ = small_fmnist
    command = [
        sys.executable,
        "-m",
        "learned_resize.main",
        "--config=configs/tiny.py",
        f"--config.data.manual_dir={source}",
        f"--config.data.data_dir={data_dir}",
        *extra,
    ]
    return subprocess.run(
        command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600
    )


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def snapshot(workdir) -> dict:
    """{relative path: bytes} of config.json, results.json and every checkpoint file."""
    files = [workdir / "config.json", workdir / "results.json"]
    files += [p for p in (workdir / "checkpoints").rglob("*") if p.is_file()]
    return {str(p.relative_to(workdir)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def finished(small_fmnist, tmp_path_factory):
    """A finished 6-step tiny run at output 8x8 (checkpoints at 2, 4, 6)."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    result = run(small_fmnist, f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def copy_of(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def test_meta_records_sizes(finished):
    meta = json.loads((finished / "checkpoints" / "6" / "meta" / "metadata").read_text())
    assert meta["input_size"] == [28, 28] and meta["output_size"] == [8, 8]
    assert meta["resizer"] == "learned" and meta["resizer_filters"] == 4
    assert meta["resizer_interpolation"] == "bilinear" and meta["resizer_antialias"] is False


@pytest.mark.slow
def test_eval_at_another_output_size_is_refused_in_one_line(small_fmnist, finished):
    result = run(
        small_fmnist,
        "--mode=eval",
        f"--checkpoint={finished}",
        "--config.resizer.output_size=(20,20)",
    )
    assert result.returncode == errors.EXIT_USER_ERROR
    line = one_error_line(result)
    assert f"checkpoint at {finished}/checkpoints/6 is of a different model" in line, line
    assert "resizer output size (8, 8) (this config: (20, 20))" in line, line
    assert "Evaluating" not in result.stdout


@pytest.mark.slow
def test_resume_at_another_size_is_refused_before_anything_is_written(
    small_fmnist, finished, tmp_path
):
    workdir = copy_of(finished, tmp_path)
    listing = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in workdir.rglob("*")}
    result = run(
        small_fmnist,
        f"--workdir={workdir}",
        "--config.num_train_steps=8",
        "--config.input_size=(32,32)",
        "--config.resizer.output_size=(20,20)",
    )
    assert result.returncode == errors.EXIT_USER_ERROR
    line = one_error_line(result)
    assert "input size (28, 28) (this config: (32, 32))" in line, line
    assert "resizer output size (8, 8) (this config: (20, 20))" in line, line
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in workdir.rglob("*")} == listing
    assert "Compiling" not in result.stdout


@pytest.mark.slow
def test_diverged_continuation_leaves_config_results_and_checkpoints_byte_identical(
    small_fmnist, finished, tmp_path
):
    workdir = copy_of(finished, tmp_path)
    before = snapshot(workdir)
    result = run(
        small_fmnist,
        f"--workdir={workdir}",
        "--config.num_train_steps=14",
        "--config.optim.learning_rate=1e30",
    )
    assert result.returncode == errors.EXIT_USER_ERROR
    assert "diverged" in one_error_line(result)
    after = snapshot(workdir)
    assert sorted(after) == sorted(before)
    for name, data in before.items():
        assert after[name] == data, name
    # The attempt's own config is kept beside, not over, the workdir's.
    history = json.loads((workdir / "config_history" / "1.json").read_text())
    assert history["optim"]["learning_rate"] == 1e30 and history["num_train_steps"] == 14
    assert json.loads((workdir / "config.json").read_text())["optim"]["learning_rate"] == 0.05
    assert not (workdir / "trainer.lock").exists()


@pytest.mark.slow
def test_checkpoint_saved_before_sizes_were_recorded_still_loads(small_fmnist, finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    for meta_file in (workdir / "checkpoints").glob("*/meta/metadata"):
        meta = json.loads(meta_file.read_text())
        for key in ("input_size", "output_size", "resizer_interpolation", "resizer_antialias"):
            del meta[key]
        meta_file.write_text(json.dumps(meta))
    result = run(small_fmnist, "--mode=eval", f"--checkpoint={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["step"] == 6
    # What the old meta does record is still checked.
    refused = run(
        small_fmnist, "--mode=eval", f"--checkpoint={workdir}", "--config.resizer.num_filters=8"
    )
    assert refused.returncode == errors.EXIT_USER_ERROR
    assert "resizer filters 4 (this config: 8)" in one_error_line(refused)


def _meta(**changes):
    from configs import tiny

    config = tiny.get_config()
    for key, value in changes.items():
        node = config
        *parents, last = key.split(".")
        for parent in parents:
            node = node[parent]
        node[last] = value
    return checkpoint_meta.model_meta(config)


def test_init_from_resizer_needs_the_same_scale_not_the_same_sizes():
    found = _meta()  # 28x28 -> 8x8: a 3.5x downscale
    # The same scale at other sizes: the convolutional resizer fits.
    checkpoint_meta.check_parts_meta(
        found, _meta(input_size=(56, 56), **{"resizer.output_size": (16, 16)}), ["resizer"], "W"
    )
    with pytest.raises(errors.UserError) as e:
        checkpoint_meta.check_parts_meta(
            found, _meta(**{"resizer.output_size": (20, 20)}), ["resizer"], "W"
        )
    assert "resizer scale (28, 28) -> (8, 8) (this config: (28, 28) -> (20, 20))" in str(e.value)
    # A classifier may be fine-tuned at another size; its backbone must match.
    checkpoint_meta.check_parts_meta(
        found, _meta(**{"resizer.output_size": (20, 20)}), ["classifier"], "W"
    )
    with pytest.raises(errors.UserError, match="backbone 'small_cnn' .this config: 'resnet18'."):
        checkpoint_meta.check_parts_meta(
            found, _meta(**{"model.name": "resnet18"}), ["classifier"], "W"
        )


def test_fixed_resizers_ignore_learned_only_settings():
    found = _meta(**{"resizer.kind": "bilinear"})
    expected = _meta(**{"resizer.kind": "bilinear", "resizer.num_filters": 16})
    assert checkpoint_meta.meta_differences(found, expected) == []
    assert checkpoint_meta.meta_differences(_meta(), _meta(**{"resizer.num_filters": 16})) == [
        "resizer filters 4 (this config: 16)"
    ]
