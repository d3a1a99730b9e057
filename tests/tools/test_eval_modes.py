"""Eval mode matches training: top-1 with running averages vs with batch statistics."""

import jax
import numpy as np
import pytest

from learned_resize import train
from learned_resize.runtime import mesh
from learned_resize.tools import eval_modes
from tests.helpers.configs import tiny_config


def test_fill_padding_copies_real_rows_cyclically():
    images = np.arange(6)[:, None] * np.ones((6, 2), int)
    mask = np.array([1, 0, 1, 0, 0, 1.0])
    got = eval_modes.fill_padding(images, mask)
    np.testing.assert_array_equal(got[:, 0], [0, 0, 2, 2, 5, 5])  # pads take rows 0, 2, 5
    np.testing.assert_array_equal(eval_modes.fill_padding(images, np.ones(6)), images)


@pytest.mark.slow
def test_tiny_run_eval_mode_agrees_with_batch_statistics(small_fmnist, tmp_path):
    # 60 steps (10 epochs of the 96 learnable images): enough for the running averages
    # (momentum 0.9) to follow the batch statistics, as at the end of a real run.
    config = tiny_config(small_fmnist, num_train_steps=60, checkpoint_every_steps=60)
    workdir = str(tmp_path / "run")
    final = train.train_and_evaluate(config, workdir)
    results = eval_modes.evaluate_modes(config, workdir)
    assert {r["num_examples"] for r in results.values()} == {40.0}
    # `eval` is the trainer's own evaluation, recomputed.
    assert results["eval"]["top1"] == pytest.approx(final["top1"])
    assert results["eval"]["top1"] >= 0.5  # learned: chance is 0.1
    # Within noise: 40 images, a binomial standard error of ~0.08 at 50-80% top-1.
    for mode in ("resizer_batch_stats", "batch_stats"):
        assert abs(results[mode]["top1"] - results["eval"]["top1"]) <= 0.15, results
    # The modes compute different functions (so agreeing is a finding, not a tautology).
    trainer, state, rest = eval_modes.restore_steps(config, workdir)
    images = mesh.global_batch({"image": small_fmnist[2]["test"][0][:16, :, :, None]},
                                   trainer.mesh)["image"]  # fmt: skip
    logits = {m: eval_modes._logits(trainer, m)(state, images, rest) for m in eval_modes.MODES}
    assert float(jax.numpy.abs(logits["eval"] - logits["batch_stats"]).max()) > 1e-3
