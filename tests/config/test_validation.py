"""The config checks: every shipped config passes them, the edge values they allow, and
where init_from may point (an earlier stage of the same command, a resumed run)."""

import glob
import json
import os

import pytest

from learned_resize.config import stages as stages_lib
from learned_resize.config import validation
from learned_resize.runtime import cli, errors, init_sources

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    path
    for path in glob.glob(os.path.join(REPO, "configs", "*.py"))
    if not path.endswith("__init__.py")
)


def _tiny(variant=""):
    path = os.path.join(REPO, "configs", "tiny.py")
    return cli.load_config(f"{path}:{variant}" if variant else path)


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_every_shipped_config_passes(path):
    config = cli.load_config(path)
    stages = stages_lib.stage_configs(config, "/w")
    assert stages
    for _, _, stage_config in stages:
        validation.validate_config(stage_config)


@pytest.mark.parametrize(
    "key, value",
    [
        ("optim.momentum", 0.0),
        ("optim.label_smoothing", 0.0),
        ("optim.weight_decay", 0),
        ("optim.decay_rate", 1.0),
        ("optim.grad_clip_norm", 0.0),
        ("optim.warmup_epochs", 0.0),
        ("model.head_dropout", 0.0),
        ("num_eval_images", 16),
        ("num_epochs", 0.0),
    ],
)
def test_edge_values_are_accepted(key, value):
    config = _tiny()
    group, _, name = key.rpartition(".")
    (config[group] if group else config)[name] = value
    validation.validate_config(config)


def test_a_bool_is_not_a_number():
    config = _tiny()
    with config.unlocked():
        config.optim.momentum = True
    with pytest.raises(errors.UserError, match=r"config.optim.momentum must be a finite"):
        validation.validate_config(config)


def test_a_later_stage_may_start_from_an_earlier_one_of_the_same_command(tmp_path):
    (baseline_name, baseline_dir, baseline), (_, learned_dir, learned) = stages_lib.stage_configs(
        _tiny("staged"), str(tmp_path / "exp")
    )
    assert baseline_name == "baseline" and learned.init_from.path == baseline_dir
    with pytest.raises(errors.UserError, match=r"config.init_from.path=.*baseline does not exist"):
        init_sources.check_init_sources(learned, learned_dir)  # baseline is not part of this run
    init_sources.plan_run(baseline_dir, baseline)
    init_sources.check_init_sources(learned, learned_dir)  # it is now
    with learned.unlocked():
        learned.init_from.parts = ("classifier", "resizer")  # the baseline's is bilinear
    with pytest.raises(errors.UserError, match=r"has no learned resizer \(resizer='bil"):
        init_sources.check_init_sources(learned, learned_dir)


def test_a_resumed_run_does_not_read_init_from(tmp_path):
    config = _tiny()
    config.init_from.path = str(tmp_path / "deleted_since")
    with pytest.raises(errors.UserError, match=r"deleted_since does not exist; give the workdir"):
        init_sources.check_init_sources(config, tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "4").mkdir(parents=True)
    init_sources.check_init_sources(config, tmp_path / "run")  # resumes from its own step 4


def test_a_source_of_this_model_is_accepted(tmp_path):
    config = _tiny()
    step = tmp_path / "source" / "checkpoints" / "6"
    (step / "meta").mkdir(parents=True)
    (step / "state").mkdir()
    meta = {
        "task": "classification",
        "model": "small_cnn",
        "num_classes": 10,
        "channels": 1,
        "resizer": "learned",
        "resizer_filters": 4,
        "resizer_blocks": 1,
    }  # (saved before resizer_norm was recorded: 'batch')
    (step / "meta" / "metadata").write_text(json.dumps(meta))
    config.init_from.path = str(tmp_path / "source")
    config.init_from.parts = ("classifier", "resizer")
    init_sources.check_init_sources(config, tmp_path / "run")
    config.resizer.num_filters = 8
    with pytest.raises(errors.UserError, match=r"resizer filters 4 \(this config: 8\)"):
        init_sources.check_init_sources(config, tmp_path / "run")
