"""IQA end to end: an AVA-format folder -> the real `ava` builder -> training -> PLCC/SRCC."""

import os

import jax
import numpy as np
import pytest
import scipy.stats

from learned_resize import iqa, train
from learned_resize import steps as steps_lib
from learned_resize.config import stages as stages_lib
from learned_resize.data.builders import ava, ava_standin
from learned_resize.runtime import checkpoint_meta, checkpoints, mesh
from tests.helpers.configs import load_config


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("iqa")
    source = ava_standin.write_standin(root / "source", num_images=60, seed=3)
    (root / "tfds").mkdir()
    return str(source), str(root / "tfds")


def iqa_config(standin, **overrides):
    source, data_dir = standin
    config = load_config("ava_standin")
    config.data.manual_dir = source
    config.data.data_dir = data_dir
    config.input_size = (48, 48)
    config.resizer.output_size = (16, 16)
    config.resizer.kind = "learned"
    config.resizer.num_filters = 4
    config.batch_size = 8
    config.optim.reference_batch_size = 8
    config.num_train_steps = 4
    config.log_every_steps = 2
    config.checkpoint_every_steps = 4
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def test_iqa_train_and_eval_match_the_files(standin, tmp_path):
    source, _ = standin
    config = iqa_config(standin)
    workdir = str(tmp_path / "run")
    metrics = train.train_and_evaluate(config, workdir)

    # The test split and its vote histograms, straight from AVA.txt.
    records = ava.read_annotations(os.path.join(source, "AVA.txt"))
    test_ids, _ = ava.choose_test_ids(source, [r.image_id for r in records])
    counts = np.array([r.counts for r in records if r.image_id in test_ids], np.float64)
    file_means = np.sort((counts / counts.sum(1, keepdims=True)) @ np.arange(1, 11))
    assert metrics["num_examples"] == len(test_ids)

    saved = np.load(os.path.join(workdir, "eval_predictions.npz"))
    keep = saved["mask"] > 0
    pipeline_means = np.sort(saved["hist"][keep] @ np.arange(1, 11))
    np.testing.assert_allclose(pipeline_means, file_means, rtol=1e-6)

    pred = saved["probs"][keep] @ np.arange(1, 11)
    gt = saved["hist"][keep] @ np.arange(1, 11)
    np.testing.assert_allclose(metrics["plcc"], scipy.stats.pearsonr(pred, gt)[0], rtol=1e-5)
    np.testing.assert_allclose(metrics["srcc"], scipy.stats.spearmanr(pred, gt)[0], rtol=1e-5)
    emd = np.asarray(iqa.emd_loss(saved["probs"][keep], saved["hist"][keep]))
    np.testing.assert_allclose(metrics["emd"], emd.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["binary_accuracy"], np.mean((pred > 5) == (gt > 5)))

    again = train.evaluate_checkpoint(config, workdir)
    np.testing.assert_allclose(again["plcc"], metrics["plcc"], rtol=1e-6)


def test_ava_config_follows_the_papers_protocol():
    """configs/ava.py: bilinear and bicubic baselines; `learned` starts from `bilinear`."""
    config = load_config("ava_mobilenet_v2")  # a link to configs/ava.py
    stages = {n: c for n, _, c in stages_lib.stage_configs(config, "/w", ["init_from.path"])}
    assert {n: c.resizer.kind for n, c in stages.items()} == {
        "bilinear": "bilinear",
        "bicubic": "bicubic",
        "learned": "learned",
    }
    assert all(c.model.name == "mobilenet_v2" for c in stages.values())
    assert stages["learned"].init_from.path == "/w/bilinear"
    assert tuple(stages["learned"].init_from.parts) == ("classifier", "score_head")
    assert tuple(stages["bilinear"].init_from.parts) == ("classifier",)


def test_learned_stage_takes_backbone_and_score_head_from_the_bilinear_stage(standin, tmp_path):
    bilinear = iqa_config(standin, num_train_steps=2, checkpoint_every_steps=2)
    bilinear.resizer.kind = "bilinear"
    train.train_and_evaluate(bilinear, str(tmp_path / "bilinear"))
    learned = iqa_config(standin)
    learned.init_from.path = str(tmp_path / "bilinear")
    learned.init_from.parts = ("classifier", "score_head")
    steps = steps_lib.Steps(learned, mesh.create_mesh(), steps_per_epoch=2, num_steps=2)
    manager = checkpoints.create_manager(str(tmp_path / "learned"), learned)
    state, _, start = train.initialise(steps, manager, learned)
    fresh, _ = steps.init(jax.random.key(learned.seed + 1))
    saved = checkpoints.load_parts(
        str(tmp_path / "bilinear"),
        ["classifier", "score_head"],
        checkpoint_meta.model_meta(learned),
    )
    assert start == 0
    for part in ("classifier", "score_head"):
        got = checkpoints._leaves_by_path(jax.device_get(state["params"][part]))
        want = checkpoints._leaves_by_path(saved["params"][part])
        assert got.keys() == want.keys()
        for key in got:
            np.testing.assert_array_equal(got[key], want[key])
    other = checkpoints._leaves_by_path(jax.device_get(fresh["params"]["score_head"]))
    assert any(
        not np.array_equal(other[k], want_k)
        for k, want_k in checkpoints._leaves_by_path(saved["params"]["score_head"]).items()
    )  # the loaded head is not a fresh one
