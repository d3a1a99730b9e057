"""IQA end to end: an AVA-format folder -> the real `ava` builder -> training -> PLCC/SRCC."""

import os

import numpy as np
import pytest
import scipy.stats
from test_train import load_config

from learned_resize import iqa, train
from learned_resize.datasets import ava, ava_standin


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("iqa")
    source = ava_standin.write_standin(root / "source", num_images=60, seed=3)
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
