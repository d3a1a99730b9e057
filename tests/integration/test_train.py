"""The trainer: sharded step, checkpoints, kill -9 resume, eval-only, stage 2 init, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import config_flags  # noqa: F401  (registers the config flag type)

from learned_resize import steps as steps_lib
from learned_resize import train
from learned_resize.config import stages as stages_lib
from learned_resize.runtime import checkpoint_meta, checkpoints, errors
from learned_resize.runtime import mesh as mesh_lib
from tests.helpers.configs import load_config, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_main(args, env=None, **kwargs):
    cmd = [sys.executable, "-m", "learned_resize.main", *args]
    full_env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
    full_env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, **kwargs)


def main_args(small_fmnist, workdir, *extra):
    source, data_dir, _ = small_fmnist
    return [
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        f"--config.data.manual_dir={source}",
        f"--config.data.data_dir={data_dir}",
        *extra,
    ]


def test_sharded_step_equals_single_device_step(small_fmnist):
    """8-way data parallelism (BN over the global batch) gives the unsharded step's result."""
    config = tiny_config(small_fmnist)
    mesh = mesh_lib.create_mesh()
    assert mesh.size == 8
    trainer = steps_lib.Steps(config, mesh, steps_per_epoch=6, num_steps=6)
    state, rest = trainer.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    local = {
        "image": rng.integers(0, 255, (16, 28, 28, 1), dtype=np.uint8),
        "label": rng.integers(0, 10, 16).astype(np.int32),
        "skipped": np.zeros(16, np.int32),
    }
    host_state = jax.device_get(state)
    sharded_batch = mesh_lib.global_batch(local, mesh)
    assert sharded_batch["image"].sharding.spec[0] == mesh_lib.DATA_AXIS
    new_state, metrics = trainer.train_step(state, sharded_batch, rest)

    one = jax.devices()[0]
    single = jax.jit(trainer._train_step)(
        jax.device_put(host_state, one), jax.device_put(local, one), jax.device_put(rest, one)
    )
    ref_state, ref_metrics = jax.device_get(single)
    np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        jax.device_get(new_state),
        ref_state,
    )
    # Something was learned: every parameter leaf of the resizer moved.
    moved = jax.tree.map(
        lambda a, b: float(np.max(np.abs(a - b))),
        host_state["params"]["resizer"],
        ref_state["params"]["resizer"],
    )
    assert min(jax.tree.leaves(moved)) > 0


def test_loss_is_label_smoothed_cross_entropy(small_fmnist):
    config = tiny_config(small_fmnist)
    trainer = steps_lib.Steps(config, mesh_lib.create_mesh(), steps_per_epoch=6, num_steps=6)
    logits = jnp.array([[2.0, 0.5, -1.0] + [0.0] * 7])
    loss = trainer.task.loss(logits, {"label": jnp.array([1])})
    p = np.exp(np.asarray(logits[0], np.float64))
    logp = np.log(p / p.sum())
    target = np.full(10, 0.1 / 10)
    target[1] += 0.9
    np.testing.assert_allclose(loss, -(target * logp).sum(), rtol=1e-6)


def test_train_eval_checkpoint_and_eval_only(small_fmnist, tmp_path):
    config = tiny_config(small_fmnist, profile_steps=(2, 4))
    workdir = str(tmp_path / "run")
    metrics = train.train_and_evaluate(config, workdir)
    assert metrics["num_examples"] == 40  # every test image counted once
    assert os.path.exists(os.path.join(workdir, "config.json"))
    lines = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [x["step"] for x in lines if "train/loss" in x] == [2, 4, 6]
    assert any(f.endswith(".png") for f in os.listdir(os.path.join(workdir, "images")))
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    traces = [f for _, _, fs in os.walk(os.path.join(workdir, "tensorboard")) for f in fs]
    assert any(f.endswith(".xplane.pb") for f in traces), traces  # config.profile_steps
    _, step = checkpoints.resolve_checkpoint(workdir)
    assert step == 6
    assert json.load(open(os.path.join(workdir, "results.json")))["step"] == 6
    again = train.evaluate_checkpoint(config, workdir)
    for key in ("top1", "top5", "loss", "num_examples"):
        np.testing.assert_allclose(again[key], metrics[key], rtol=1e-6)


def test_stage2_initialises_classifier_from_stage1(small_fmnist, tmp_path):
    stage1 = tiny_config(small_fmnist, **{"resizer.kind": "bilinear", "num_train_steps": 2})
    train.train_and_evaluate(stage1, str(tmp_path / "s1"))
    _, step = checkpoints.resolve_checkpoint(str(tmp_path / "s1"))
    saved = checkpoints.load_parts(
        str(tmp_path / "s1"), ["classifier"], checkpoint_meta.model_meta(stage1)
    )

    stage2 = tiny_config(small_fmnist, **{"init_from.path": str(tmp_path / "s1")})
    trainer = steps_lib.Steps(stage2, mesh_lib.create_mesh(), steps_per_epoch=6, num_steps=6)
    manager = checkpoints.create_manager(str(tmp_path / "s2"), stage2)
    state, _, start = train.initialise(trainer, manager, stage2)
    fresh, _ = trainer.init(jax.random.key(stage2.seed))
    assert start == 0 and step == 2

    def same(a, b):
        a = checkpoints._leaves_by_path(jax.device_get(a))
        b = checkpoints._leaves_by_path(b)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])

    same(state["params"]["classifier"], saved["params"]["classifier"])
    same(state["batch_stats"]["classifier"], saved["batch_stats"]["classifier"])
    same(state["params"]["resizer"], jax.device_get(fresh["params"]["resizer"]))
    # The stage-1 classifier is not the fresh one (so the check above means something).
    with pytest.raises(AssertionError):
        same(fresh["params"]["classifier"], saved["params"]["classifier"])


def test_kill_and_resume_reaches_uninterrupted_parameters(small_fmnist, tmp_path):
    """kill -9 after step 4 (checkpoints every 2), rerun: same final params as one straight run."""
    straight = run_main(main_args(small_fmnist, tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = run_main(
        main_args(small_fmnist, tmp_path / "killed"), env={"LEARNED_RESIZE_KILL_AT_STEP": "5"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    _, step = checkpoints.resolve_checkpoint(str(tmp_path / "killed"))
    assert step in (2, 4)
    resumed = run_main(main_args(small_fmnist, tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed from checkpoint at step {step}" in resumed.stdout
    config = tiny_config(small_fmnist)
    meta = checkpoint_meta.model_meta(config)
    a = checkpoints.load_parts(str(tmp_path / "straight"), ["classifier", "resizer"], meta)
    b = checkpoints.load_parts(str(tmp_path / "killed"), ["classifier", "resizer"], meta)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)


def test_sigterm_saves_and_exits_with_the_preempted_status(small_fmnist, tmp_path):
    args = main_args(
        small_fmnist,
        tmp_path / "run",
        "--config.num_train_steps=100000",
        "--config.checkpoint_every_steps=100000",
        "--config.log_every_steps=1",
    )
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "learned_resize.main", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    for line in proc.stdout:
        if "] step 3/" in line:
            proc.send_signal(signal.SIGTERM)
            break
        assert time.time() < deadline, "training did not start"
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == errors.EXIT_PREEMPTED, out[-3000:]
    assert "preempted: saved a checkpoint at step" in out
    _, step = checkpoints.resolve_checkpoint(str(tmp_path / "run"))
    assert 3 <= step < 100000


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.no_such_key=1", "unknown config key config.no_such_key"),
        ("--config.resizer.output_size=(0,8)", "config.resizer.output_size must be positive"),
        ("--config.batch_size=12", "not divisible by the 8 devices"),
        ("--config.resizer.kind=bilateral", "config.resizer.kind must be one of"),
        ("--config.data.mean=(0.1,0.2,0.3)", "config.data.mean has 3 values"),
        ("--config.resizer.output_size=(2,2)", "smaller than small_cnn's minimum input"),
    ],
)
def test_bad_config_values_fail_in_one_sentence(small_fmnist, tmp_path, override, message):
    result = run_main(main_args(small_fmnist, tmp_path / "bad", override))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert not os.path.exists(tmp_path / "bad" / "checkpoints")


def test_missing_dataset_and_foreign_checkpoint(small_fmnist, tmp_path):
    os.makedirs(tmp_path / "empty")
    config = tiny_config(
        small_fmnist, **{"data.name": "imagenet2012", "data.data_dir": str(tmp_path / "empty")}
    )
    with pytest.raises(Exception, match="imagenet2012"):
        train.train_and_evaluate(config, str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x" / "checkpoints")

    config = tiny_config(small_fmnist, num_train_steps=2)
    train.train_and_evaluate(config, str(tmp_path / "a"))
    other = tiny_config(small_fmnist, **{"resizer.num_filters": 8})
    with pytest.raises(errors.UserError, match="different model"):
        train.evaluate_checkpoint(other, str(tmp_path / "a"))
    with pytest.raises(errors.UserError, match="no checkpoint at"):
        train.evaluate_checkpoint(config, str(tmp_path / "x"))
    os.makedirs(tmp_path / "empty_run")
    with pytest.raises(errors.UserError, match="no finished checkpoint under"):
        train.evaluate_checkpoint(config, str(tmp_path / "empty_run"))


def test_stage_configs_chain_workdirs():
    config = load_config("default")
    stages = stages_lib.stage_configs(config, "/w")
    by_name = {name: (workdir, c) for name, workdir, c in stages}
    assert [s[0] for s in stages][0] == "baseline"  # the parent runs first
    assert set(by_name) == {"baseline", "learned", "bilinear_ft", "bicubic_ft"}
    assert by_name["learned"][0] == "/w/learned"
    assert by_name["learned"][1].init_from.path == "/w/baseline"
    assert by_name["bilinear_ft"][1].init_from.path == "/w/baseline"
    assert by_name["learned"][1].resizer.kind == "learned"
    assert by_name["bilinear_ft"][1].resizer.kind == "bilinear"
    assert by_name["bicubic_ft"][1].resizer.kind == "bicubic"
    assert by_name["bicubic_ft"][1].init_from.path == "/w/baseline"
    assert by_name["baseline"][1].init_from.path == ""
    assert by_name["baseline"][1].num_epochs == 4.0 and by_name["learned"][1].num_epochs == 3.0


def test_command_line_values_win_over_stage_overlays():
    """--config.num_epochs=1 applies to every stage; --config.stages.NAME.KEY to one."""
    config = load_config("default")
    stages = stages_lib.stage_configs(config, "/w", cli_keys=["num_epochs", "optim.momentum"])
    by_name = {name: c for name, _, c in stages}
    # The overlay's 3.0 would win without cli_keys; the base value (the command line's) stays.
    assert {c.num_epochs for c in by_name.values()} == {config.num_epochs}
    assert by_name["learned"].optim.learning_rate == 0.02  # not on the command line: overlay
    with config.unlocked():
        config.stages.learned.num_epochs = 0.5  # what --config.stages.learned.num_epochs does
    stages = stages_lib.stage_configs(config, "/w", cli_keys=["stages.learned.num_epochs"])
    assert {n: c.num_epochs for n, _, c in stages}["learned"] == 0.5


@pytest.mark.slow
def test_training_learns(small_fmnist, tmp_path):
    """A few dozen steps on learnable data: the loss falls, top-1 is far above chance (10%).

    The test set's class k is a bright block at one of 10 positions (conftest), so a
    model that learns reaches high accuracy; a flipped update sign, a zero learning
    rate or a broken resizer gradient does not.
    """
    config = tiny_config(
        small_fmnist, num_train_steps=36, log_every_steps=6, checkpoint_every_steps=36
    )
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    lines = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    losses = [x["train/loss"] for x in lines if "train/loss" in x]
    assert len(losses) == 6
    assert losses[-1] < 0.6 * losses[0], losses
    assert metrics["top1"] > 0.6, metrics
