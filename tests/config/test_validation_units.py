"""validate_config on base_config()-derived configs, and stage_configs' expansion."""

import jax
import ml_collections
import pytest

from learned_resize.config import defaults, stages, validation
from learned_resize.runtime import errors


def _config(**overrides) -> ml_collections.ConfigDict:
    """base_config() with dotted-key overrides ('optim.momentum': 0.5)."""
    config = defaults.base_config()
    with config.unlocked():
        for key, value in overrides.items():
            node = config
            *path, last = key.split(".")
            for part in path:
                node = node[part]
            node[last] = value
    return config


def test_base_config_is_valid():
    validation.validate_config(defaults.base_config())


def test_tiny_grayscale_config_is_valid():
    validation.validate_config(
        _config(
            **{
                "model.name": "small_cnn",
                "data.channels": 1,
                "data.mean": (0.5,),
                "data.std": (0.25,),
                "input_size": (16, 16),
                "resizer.output_size": (8, 8),
                "batch_size": 2 * jax.device_count(),
                "num_eval_images": 2,
            }
        )
    )


# (dotted key, bad value, the key the message must name)
BAD_VALUES = [
    ("optim.momentum", 1.0, "optim.momentum"),
    ("optim.momentum", -0.1, "optim.momentum"),
    ("optim.label_smoothing", 1.0, "optim.label_smoothing"),
    ("optim.warmup_epochs", -1.0, "optim.warmup_epochs"),
    ("optim.weight_decay", -1e-4, "optim.weight_decay"),
    ("optim.decay_rate", 0.0, "optim.decay_rate"),
    ("optim.learning_rate", 0.0, "optim.learning_rate"),
    ("optim.schedule", "linear", "optim.schedule"),
    ("data.std", (0.229, 0.0, 0.225), "data.std"),
    ("data.mean", (0.5,), "data.mean"),
    ("data.channels", 2, "data.channels"),
    ("data.crop", "center", "data.crop"),
    ("data.min_area", 0.0, "data.min_area"),
    ("data.num_workers", -2, "data.num_workers"),
    ("resizer.output_size", (0, 8), "resizer.output_size"),
    ("resizer.output_size", (16, 16), "resizer.output_size"),  # resnet50 needs >= 32
    ("input_size", (224,), "input_size"),
    ("resizer.kind", "bilinear2", "resizer.kind"),
    ("resizer.norm", "layer", "resizer.norm"),
    ("resizer.interpolation", "learned", "resizer.interpolation"),
    ("model.name", "resnet9000", "model.name"),
    ("model.dtype", "float16", "model.dtype"),
    ("task", "regression", "task"),
    ("keep_checkpoints", 0, "keep_checkpoints"),
    ("num_eval_images", 257, "num_eval_images"),
    ("profile_steps", (5, 2), "profile_steps"),
    ("init_from.parts", ("head",), "init_from.parts"),
    ("data.aspect", "crop", "data.aspect"),
]


@pytest.mark.parametrize(
    "key,value,named", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES]
)
def test_bad_value_is_a_user_error_naming_the_key(key, value, named):
    config = _config(**{key: value})
    with pytest.raises(errors.UserError, match=rf"config\.{named}\b"):
        validation.validate_config(config)


def test_batch_size_not_divisible_by_the_device_count():
    n = jax.device_count()
    if n == 1:
        pytest.skip("every batch size is divisible by one device")
    config = _config(batch_size=32 * n + 1)
    with pytest.raises(errors.UserError, match=rf"config\.batch_size={32 * n + 1}.*{n} devices"):
        validation.validate_config(config)
    validation.validate_config(_config(batch_size=32 * n))


def test_no_epochs_and_no_steps_is_an_error():
    with pytest.raises(errors.UserError, match=r"config\.num_epochs"):
        validation.validate_config(_config(num_epochs=0.0, num_train_steps=-1))
    validation.validate_config(_config(num_epochs=0.0, num_train_steps=10))


def test_loading_a_resizer_into_a_fixed_resizer_is_an_error():
    config = _config(**{"init_from.path": "/x", "init_from.parts": ("classifier", "resizer")})
    with pytest.raises(errors.UserError, match=r"config\.init_from\.parts"):
        validation.validate_config(config)
    config.resizer.kind = "learned"
    validation.validate_config(config)


BOUNDARIES = [
    {"optim.momentum": 0.0},
    {"optim.label_smoothing": 0.0},
    {"optim.warmup_epochs": 0.0},
    {"optim.weight_decay": 0.0},
    {"optim.grad_clip_norm": 0.0},
    {"optim.decay_rate": 1.0},
    {"optim.momentum": 0.999},
    {"resizer.output_size": (32, 32)},  # exactly resnet50's minimum
    {"num_eval_images": 256},  # exactly one batch
    {"eval_every_steps": 0},
    {"resizer.num_res_blocks": 0},
    {"profile_steps": (3, 3)},
    {"data.min_area": 1.0},
    {"data.num_workers": -1},
    {"seed": 0},
]


@pytest.mark.parametrize("overrides", BOUNDARIES, ids=[str(b) for b in BOUNDARIES])
def test_boundary_values_are_accepted(overrides):
    validation.validate_config(_config(**overrides))


def _staged(**stage_overrides) -> ml_collections.ConfigDict:
    config = defaults.base_config()
    for name, overrides in stage_overrides.items():
        config.stages[name] = overrides
    return config


def test_no_stages_is_one_run_in_the_workdir():
    config = defaults.base_config()
    assert stages.stage_configs(config, "/w") == [("run", "/w", config)]


def test_two_stages_chain_in_order():
    config = _staged(a={}, b={"init_from_stage": "a", "optim": {"learning_rate": 0.01}})
    out = stages.stage_configs(config, "/work/exp")
    assert [(name, workdir) for name, workdir, _ in out] == [
        ("a", "/work/exp/a"),
        ("b", "/work/exp/b"),
    ]
    (_, _, a), (_, _, b) = out
    assert a.init_from.path == ""
    assert b.init_from.path == "/work/exp/a"
    assert a.optim.learning_rate == 0.05
    assert b.optim.learning_rate == 0.01
    assert not a.stages and not b.stages
    # The experiment's own config is untouched.
    assert config.optim.learning_rate == 0.05 and set(config.stages.keys()) == {"a", "b"}


def test_parent_runs_first_whatever_the_names():
    # 'finetune' sorts before 'pretrain' but starts from it.
    config = _staged(finetune={"init_from_stage": "pretrain"}, pretrain={})
    out = stages.stage_configs(config, "/w")
    assert [name for name, _, _ in out] == ["pretrain", "finetune"]
    assert out[1][2].init_from.path == "/w/pretrain"


def test_a_cycle_is_a_user_error():
    config = _staged(a={"init_from_stage": "b"}, b={"init_from_stage": "a"})
    with pytest.raises(errors.UserError, match="cycle"):
        stages.stage_configs(config, "/w")


def test_an_unknown_parent_is_a_user_error():
    config = _staged(a={}, b={"init_from_stage": "c"})
    with pytest.raises(errors.UserError, match="'c'"):
        stages.stage_configs(config, "/w")


def test_an_unknown_stage_key_is_a_user_error():
    config = _staged(a={"optim": {"learning_rat": 0.1}})
    with pytest.raises(errors.UserError, match=r"stages\.a\.optim\.learning_rat"):
        stages.stage_configs(config, "/w")


def test_a_command_line_key_wins_over_a_stage_value():
    config = _staged(a={}, b={"init_from_stage": "a", "optim": {"learning_rate": 0.01}})
    config.optim.learning_rate = 0.3  # as if --config.optim.learning_rate=0.3
    out = stages.stage_configs(config, "/w", cli_keys=("optim.learning_rate",))
    assert [c.optim.learning_rate for _, _, c in out] == [0.3, 0.3]
    # Without the command-line key the stage's own value applies.
    out = stages.stage_configs(config, "/w")
    assert [c.optim.learning_rate for _, _, c in out] == [0.3, 0.01]
    # A stage-scoped command-line key is the stage's own value, not a global override.
    out = stages.stage_configs(config, "/w", cli_keys=("stages.b.optim.learning_rate",))
    assert [c.optim.learning_rate for _, _, c in out] == [0.3, 0.01]
