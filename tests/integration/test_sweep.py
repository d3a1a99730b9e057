"""launch/sweep.py: grid, command lines the configs accept, a real 2-point sweep and its table."""

import json
import os
import shlex
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from learned_resize.config import stages as stages_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP = os.path.join(REPO, "launch", "sweep.py")
sys.path.insert(0, os.path.join(REPO, "launch"))
import sweep  # noqa: E402


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    return env


def _run_sweep(*args):
    return subprocess.run(
        [sys.executable, SWEEP, *args], cwd=REPO, env=_env(), capture_output=True, text=True
    )


def _parse_config(config_file, overrides):
    """The config `learned_resize.main` would build from these flags."""
    argv = ["main", f"--config={config_file}", *overrides]
    values = flags.FlagValues()
    # The override flags are found in `sys_argv` when the config flag is defined.
    config_flags.DEFINE_config_file(
        "config", None, flag_values=values, lock_config=True, sys_argv=argv
    )
    values(argv)
    return values.config


def test_grid_is_the_product_of_the_given_axes():
    points = sweep.grid_points([16, 32], [1, 2], [(448, 448), (368, 320)])
    assert len(points) == 8
    assert [p["name"] for p in points[:3]] == ["n16_r1_in448", "n16_r1_in368x320", "n16_r2_in448"]
    assert points[-1]["overrides"] == {
        "resizer.num_filters": 32,
        "resizer.num_res_blocks": 2,
        "input_size": (368, 320),
    }
    assert [p["name"] for p in sweep.grid_points(num_res_blocks=[3])] == ["r3"]
    with pytest.raises(ValueError, match="Nothing to sweep"):
        sweep.grid_points()


def test_stage_sweep_commands_are_accepted_by_the_imagenet_config(tmp_path):
    """The printed overrides parse against the locked config and reach the learned stage."""
    out = _run_sweep(
        "--config=configs/imagenet_resnet50.py",
        f"--workdir={tmp_path}/sweep",
        "--stage=learned",
        f"--init_from={tmp_path}/base",
        "--num_filters=32",
        "--num_res_blocks=1,3",
        "--input_sizes=368",
        "--dry_run",
        "--",
        "--config.batch_size=512",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and not os.path.exists(tmp_path / "sweep")  # nothing run or written
    args = shlex.split(lines[1])
    assert args[1:3] == ["-m", "learned_resize.main"]
    assert f"--workdir={tmp_path}/sweep/n32_r3_in368" in args and "--stages=learned" in args
    overrides = [a for a in args if a.startswith("--config.")]
    config = _parse_config(os.path.join(REPO, "configs/imagenet_resnet50.py"), overrides)
    stages = {name: (w, c) for name, w, c in stages_lib.stage_configs(config, "/w")}
    learned = stages["learned"][1]
    assert learned.resizer.kind == "learned"
    assert (learned.resizer.num_filters, learned.resizer.num_res_blocks) == (32, 3)
    assert tuple(learned.input_size) == (368, 368)
    assert learned.init_from.path == f"{tmp_path}/base"  # the shared baseline, not /w/baseline
    assert learned.init_from.parts == ("classifier",)
    assert learned.batch_size == 512 and learned.optim.learning_rate == 0.005
    assert tuple(stages["baseline"][1].input_size) == (224, 224)  # untouched


# (sweep arguments, a fragment of the one `error:` line). {tmp}: a scratch dir.
BAD_SWEEPS = [
    (["--config=configs/tiny.py", "--input_sizes=big"], "--input_sizes value 'big' is not a size"),
    (["--config=configs/tiny.py", "--input_sizes=0"], "--input_sizes value '0' must be positive"),
    (["--config=configs/tiny.py", "--num_filters=a"], "--num_filters takes integers, got a"),
    (["--config=configs/tiny.py"], "Nothing to sweep"),
    (["--num_filters=8"], "give --config"),
    (["--config=configs/tiny.py", "--init_from=x", "--num_filters=8"], "--init_from needs --stage"),
    (["--config=configs/tiny.py", "--nosuchflag"], "Unknown command line flag 'nosuchflag'"),
    (["--config=configs/nope.py", "--num_filters=8"], "config file configs/nope.py does not exist"),
    (["--collect"], "No sweep.json in {tmp}/sweep; run the sweep there first"),
    (
        ["--config=configs/tiny.py", "--num_res_blocks=1,-1", "--dry_run"],
        "point r-1: config.resizer.num_res_blocks must be an integer >= 0, got -1.",
    ),
    (
        ["--config=configs/tiny.py", "--num_filters=0"],
        "point n0: config.resizer.num_filters must be an integer >= 1, got 0.",
    ),
    (
        ["--config=configs/imagenet_resnet50.py", "--stage=nosuch", "--num_filters=8"],
        "--stage=nosuch is not a stage of configs/imagenet_resnet50.py",
    ),
    (
        ["--config=configs/imagenet_resnet50.py", "--stage=learned", "--num_res_blocks=-1"],
        "point r-1, stage learned: config.resizer.num_res_blocks must be an integer >= 0",
    ),
    (
        ["--config=configs/tiny.py", "--num_filters=8", "--", "--config.optim.momentum=1"],
        "point n8: config.optim.momentum must be a finite number in [0, 1), got 1.0",
    ),
    (
        ["--config=configs/tiny.py", "--num_filters=8", "--", "--config.optim.lr=1"],
        "unknown config key config.optim.lr; did you mean config.optim.learning_rate?",
    ),
]


@pytest.mark.parametrize("args, fragment", BAD_SWEEPS, ids=[" ".join(a) for a, _ in BAD_SWEEPS])
def test_bad_sweep_arguments_fail_in_one_line(tmp_path, args, fragment):
    """Exit status 1, one `error:` line on stderr (no usage text, no traceback), and
    nothing run or written."""
    workdir = tmp_path / "sweep"
    out = _run_sweep(f"--workdir={workdir}", *args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1, out.stderr[-2000:]
    assert len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith("error: ") and fragment.format(tmp=tmp_path) in lines[0]
    assert out.stdout == ""
    assert not workdir.exists()


def test_collect_on_an_empty_folder_is_one_line(tmp_path):
    out = _run_sweep(f"--workdir={tmp_path}", "--collect")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"error: No sweep.json in {tmp_path}; run the sweep there first (without --collect)."
    ]
    assert list(tmp_path.iterdir()) == []


def test_point_configs_are_the_trainers():
    """validate_points builds each point's stages as learned_resize.main would."""
    point = sweep.grid_points(num_filters=[8], num_res_blocks=[2])[0]
    stages = sweep.point_configs("configs/imagenet_resnet50.py", "/w", point, "learned")
    assert [name for name, _ in stages] == ["learned"]
    learned = stages[0][1]
    assert (learned.resizer.num_filters, learned.resizer.num_res_blocks) == (8, 2)
    assert learned.init_from.path == "/w/n8_r2/baseline"
    sweep.validate_points("configs/imagenet_resnet50.py", "/w", [point], "learned")
    plain = sweep.point_configs("configs/tiny.py", "/w", point, extra=["--config.seed=3"])
    assert [(name, c.seed, c.resizer.num_filters) for name, c in plain] == [("run", 3, 8)]


@pytest.mark.slow
def test_two_point_sweep_runs_and_collects_a_table(small_fmnist, tmp_path):
    source, data_dir, _ = small_fmnist
    args = [
        "--config=configs/tiny.py",
        f"--workdir={tmp_path}/sweep",
        "--num_filters=2",
        "--input_sizes=28,16",
        "--",
        f"--config.data.manual_dir={source}",
        f"--config.data.data_dir={data_dir}",
        "--config.num_train_steps=2",
    ]
    out = _run_sweep(*args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = (tmp_path / "sweep" / "sweep_results.md").read_text().strip().splitlines()
    assert table[0].split("|")[1:6] == [" point ", " resizer.num_filters ", " input_size ",
                                       " status ", " step "]  # fmt: skip
    rows = {line.split("|")[1].strip(): line.split("|") for line in table[2:]}
    assert set(rows) == {"n2_in28", "n2_in16"}
    for name, size in (("n2_in28", 28), ("n2_in16", 16)):
        run = tmp_path / "sweep" / name
        config = json.loads((run / "config.json").read_text())
        assert config["resizer"]["num_filters"] == 2 and config["input_size"] == [size, size]
        results = json.loads((run / "results.json").read_text())
        cells = [c.strip() for c in rows[name]]
        assert cells[4:6] == ["done", "2"]
        assert float(cells[6]) == pytest.approx(results["top1"], abs=5e-5)
        assert float(cells[8]) == pytest.approx(results["loss"], abs=5e-5)
        last_loss = [json.loads(x) for x in open(run / "metrics.jsonl") if "train/loss" in x][-1]
        assert float(cells[9]) == pytest.approx(last_loss["train/loss"], abs=5e-5)

    # Run again: both points are finished, so nothing trains.
    again = _run_sweep(*args)
    assert again.returncode == 0 and again.stdout.count("done already, skipped") == 2
    collected = _run_sweep(f"--workdir={tmp_path}/sweep", "--collect")
    assert collected.stdout.strip().splitlines() == table
