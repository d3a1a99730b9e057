"""runtime/checkpoints.py on a tiny state: save, keep-last-N restore, walking back past a
corrupt step, refusing another model's checkpoint, finding steps, merging parts."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learned_resize.config import defaults
from learned_resize.runtime import checkpoint_meta, checkpoints, errors


def _config(**data):
    config = defaults.base_config()
    config.keep_checkpoints = 5
    config.model.name = "small_cnn"
    config.data.channels = 1
    config.data.num_classes = 10
    for key, value in data.items():
        config.data[key] = value
    return config


def _state(step: int) -> dict:
    """A train-state-shaped dict whose values depend on `step`."""
    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    return {
        "step": jnp.asarray(step, jnp.int32),
        "params": {
            "classifier": {"kernel": jnp.asarray(base + step), "bias": jnp.full((3,), -step, "f4")}
        },
        "batch_stats": {"classifier": {"mean": jnp.asarray(base[0] * step)}},
        "opt_state": {"trace": jnp.asarray(base * 0.5 * step)},
    }


def _abstract(state: dict) -> dict:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


def _assert_same(a, b):
    a, b = jax.device_get(a), jax.device_get(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture
def saved(tmp_path):
    """A workdir with steps 1, 2 and 3 saved; returns (workdir, config)."""
    workdir = str(tmp_path / "run")
    config = _config()
    manager = checkpoints.create_manager(workdir, config)
    meta = checkpoint_meta.model_meta(config)
    for step in (1, 2, 3):
        assert checkpoints.save(manager, step, _state(step), meta)
    checkpoints.wait(manager)
    checkpoints.close(manager)
    return workdir, config


def _restore_newest(workdir, config):
    manager = checkpoints.create_manager(workdir, config)
    try:
        return checkpoints.restore_newest(
            manager, _abstract(_state(0)), checkpoint_meta.model_meta(config)
        )
    finally:
        checkpoints.close(manager)


def _corrupt(step_dir: str) -> None:
    """Overwrites every file of the step's `state` item with garbage of the same length."""
    state_dir = os.path.join(step_dir, "state")
    count = 0
    for root, _, files in os.walk(state_dir):
        for name in files:
            path = os.path.join(root, name)
            size = os.path.getsize(path)
            with open(path, "wb") as f:
                f.write(b"\x5a" * max(size, 1))
            count += 1
    assert count, f"no files under {state_dir}"


def test_model_meta_records_the_model():
    config = _config()
    meta = checkpoint_meta.model_meta(config)
    assert meta["model"] == "small_cnn"
    assert meta["num_classes"] == 10 and meta["channels"] == 1
    assert meta["input_size"] == [224, 224] and meta["output_size"] == [224, 224]
    assert meta["resizer"] == "bilinear" and meta["resizer_antialias"] is False
    # Data settings are not the model's.
    assert checkpoint_meta.model_meta(_config(mean=(0.1,), std=(0.2,))) == meta


def test_restore_newest_returns_the_last_step(saved):
    workdir, config = saved
    state, step = _restore_newest(workdir, config)
    assert step == 3
    _assert_same(state, _state(3))


def test_keep_checkpoints_drops_the_oldest(tmp_path):
    config = _config()
    config.keep_checkpoints = 2
    workdir = str(tmp_path / "run")
    manager = checkpoints.create_manager(workdir, config)
    for step in (1, 2, 3):
        checkpoints.save(manager, step, _state(step), checkpoint_meta.model_meta(config))
    checkpoints.close(manager)
    assert checkpoints.checkpoint_steps(workdir)[1] == [3, 2]


def test_empty_workdir_restores_nothing(tmp_path):
    assert _restore_newest(str(tmp_path / "fresh"), _config()) == (None, 0)


def test_corrupt_newest_step_walks_back_and_is_set_aside(saved, capfd):
    workdir, config = saved
    directory = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
    _corrupt(os.path.join(directory, "3"))

    # Eval restores are read-only: step 2 comes back and step 3 stays where it is.
    state, step = checkpoints.restore_for_eval(
        workdir, _abstract(_state(0)), checkpoint_meta.model_meta(config)
    )
    assert step == 2
    _assert_same(state, _state(2))
    assert os.path.isdir(os.path.join(directory, "3"))

    capfd.readouterr()
    state, step = _restore_newest(workdir, config)
    assert step == 2
    _assert_same(state, _state(2))
    assert not os.path.exists(os.path.join(directory, "3"))
    assert os.path.isdir(os.path.join(directory, "3.unreadable"))
    warnings = [line for line in capfd.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "3.unreadable" in warnings[0], warnings
    assert checkpoints.checkpoint_steps(workdir)[1] == [2, 1]

    # The run can save step 3 again; restoring picks it up.
    manager = checkpoints.create_manager(workdir, config)
    checkpoints.save(manager, 3, _state(3), checkpoint_meta.model_meta(config))
    checkpoints.close(manager)
    state, step = _restore_newest(workdir, config)
    assert step == 3
    _assert_same(state, _state(3))


def test_every_step_unreadable_is_one_user_error_for_eval(saved):
    workdir, config = saved
    for step in (1, 2, 3):
        _corrupt(os.path.join(workdir, checkpoints.CHECKPOINT_DIR, str(step)))
    with pytest.raises(
        errors.UserError, match=r"every checkpoint .* unreadable \(steps \[3, 2, 1\]"
    ):
        checkpoints.restore_for_eval(
            workdir, _abstract(_state(0)), checkpoint_meta.model_meta(config)
        )


def test_another_models_checkpoint_is_refused(saved):
    workdir, _ = saved
    other = _config(num_classes=7)
    expected = r"different model: classes 10 \(this config: 7\)"
    with pytest.raises(errors.UserError, match=expected):
        _restore_newest(workdir, other)
    with pytest.raises(errors.UserError, match=expected):
        checkpoints.check_workdir(workdir, other)
    with pytest.raises(errors.UserError, match=expected):
        checkpoints.restore_for_eval(
            workdir, _abstract(_state(0)), checkpoint_meta.model_meta(other)
        )
    # Nothing was set aside: a refusal is not an unreadable step.
    assert checkpoints.checkpoint_steps(workdir)[1] == [3, 2, 1]
    resized = _config()
    resized.resizer.output_size = (20, 20)
    with pytest.raises(errors.UserError, match=r"resizer output size \(224, 224\)"):
        checkpoints.check_workdir(workdir, resized)
    checkpoints.check_workdir(workdir, _config())  # the same model passes


def test_checkpoint_steps_accepts_workdir_checkpoints_dir_and_step_dir(saved, tmp_path):
    workdir, _ = saved
    directory = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
    for path in (workdir, directory):
        found, steps = checkpoints.checkpoint_steps(path)
        assert os.fspath(found) == directory and steps == [3, 2, 1]
    found, steps = checkpoints.checkpoint_steps(os.path.join(directory, "2"))
    assert os.fspath(found) == directory and steps == [2]
    assert checkpoints.resolve_checkpoint(workdir) == (directory, 3)
    with pytest.raises(errors.UserError, match="does not exist"):
        checkpoints.checkpoint_steps(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.UserError, match="no finished checkpoint"):
        checkpoints.checkpoint_steps(str(tmp_path / "empty"))


def _model_state():
    return {
        "params": {
            "classifier": {"dense": {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros((3,))}},
            "resizer": {"conv": {"kernel": jnp.zeros((1, 1))}},
        },
        "batch_stats": {"classifier": {}, "resizer": {}},
    }


def test_merge_parts_replaces_the_loaded_part_only():
    kernel = np.arange(6, dtype=np.float64).reshape(2, 3)
    loaded = {
        "params": {
            "classifier": {
                "dense": {"kernel": kernel, "bias": np.ones(3)},
                "head": {"kernel": np.ones((4, 4))},  # the source has more: left out
            }
        },
        "batch_stats": {},
    }
    state = checkpoints.merge_parts(_model_state(), loaded, "src")
    dense = state["params"]["classifier"]["dense"]
    np.testing.assert_array_equal(dense["kernel"], kernel)
    assert dense["kernel"].dtype == jnp.float32  # the model's dtype, not the source's
    np.testing.assert_array_equal(dense["bias"], np.ones(3))
    assert "head" not in state["params"]["classifier"]
    np.testing.assert_array_equal(state["params"]["resizer"]["conv"]["kernel"], np.zeros((1, 1)))


def test_merge_parts_refuses_a_wrong_shape_or_missing_leaf():
    wrong = {
        "params": {"classifier": {"dense": {"kernel": np.zeros((3, 2)), "bias": np.zeros(3)}}},
        "batch_stats": {},
    }
    with pytest.raises(errors.UserError, match=r"params/classifier/dense/kernel"):
        checkpoints.merge_parts(_model_state(), wrong, "src")
    missing = {"params": {"classifier": {"dense": {"kernel": np.zeros((2, 3))}}}, "batch_stats": {}}
    with pytest.raises(errors.UserError, match=r"params/classifier/dense/bias"):
        checkpoints.merge_parts(_model_state(), missing, "src")
    no_part = {"params": {"score_head": {"w": np.zeros(1)}}, "batch_stats": {}}
    with pytest.raises(errors.UserError, match="has no score_head"):
        checkpoints.merge_parts(_model_state(), no_part, "src")
