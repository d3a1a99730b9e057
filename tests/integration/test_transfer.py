"""Transfer: the classifier from one run, the resizer from another (config.init_from).

As in the paper's experiment: run A trains the tiny config with a learned resizer
(n=4), run B (another seed) a classifier behind the fixed bilinear resize. A third
run takes B's classifier and A's resizer, then fine-tunes; a fourth takes only B's
classifier and must start its resizer fresh; B's checkpoint has no resizer to give.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from learned_resize import steps as steps_lib
from learned_resize import train
from learned_resize.runtime import checkpoint_meta, checkpoints, mesh
from tests.helpers.configs import tiny_config


def _tiny(small_fmnist, **overrides):
    """configs/tiny.py on the small dataset: 2 steps, a 4-filter resizer, then overrides."""
    return tiny_config(small_fmnist, num_train_steps=2, **{"resizer.num_filters": 4}, **overrides)


def _flat(tree):
    return {k: np.asarray(v) for k, v in checkpoints._leaves_by_path(jax.device_get(tree)).items()}


def _equal(a, b) -> bool:
    a, b = _flat(a), _flat(b)
    assert a.keys() == b.keys()
    return all(np.array_equal(a[k], b[k]) for k in a)


def _initial_state(config, workdir):
    trainer = steps_lib.Steps(config, mesh.create_mesh(), steps_per_epoch=6, num_steps=6)
    manager = checkpoints.create_manager(workdir, config)
    state, _, start = train.initialise(trainer, manager, config)
    assert start == 0
    fresh, _ = trainer.init(jax.random.key(config.seed))
    return jax.device_get(state), jax.device_get(fresh)


@pytest.fixture(scope="module")
def two_runs(small_fmnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    runs = {}
    for name, seed, resizer in (("a", 0, "learned"), ("b", 1, "bilinear")):
        config = _tiny(small_fmnist, seed=seed, **{"resizer.kind": resizer})
        train.train_and_evaluate(config, str(root / name))
        parts = ["classifier", "resizer"] if resizer == "learned" else ["classifier"]
        runs[name] = checkpoints.load_parts(
            str(root / name), parts, checkpoint_meta.model_meta(config)
        )
    return root, runs


def test_classifier_from_one_run_and_resizer_from_another(small_fmnist, two_runs):
    root, runs = two_runs
    a, b = runs["a"], runs["b"]
    # The sources differ, so each equality below identifies where a part came from.
    assert not _equal(a["params"]["classifier"], b["params"]["classifier"])

    config = _tiny(
        small_fmnist,
        seed=2,
        **{
            "init_from.path": str(root / "b"),
            "init_from.parts": ("classifier", "resizer"),
            "init_from.resizer_path": str(root / "a"),
        },
    )
    state, fresh = _initial_state(config, str(root / "c"))
    for key in ("params", "batch_stats"):
        assert _equal(state[key]["classifier"], b[key]["classifier"])
        assert _equal(state[key]["resizer"], a[key]["resizer"])
    assert not _equal(fresh["params"]["resizer"], a["params"]["resizer"])
    assert int(state["step"]) == 0
    # The optimiser starts afresh: zero momentum.
    assert all(not np.any(x) for x in jax.tree.leaves(state["opt_state"]))

    # ... and fine-tuning from there runs (the paper's ~4 epochs; 2 steps here).
    metrics = train.train_and_evaluate(config, str(root / "c"))
    assert metrics["num_examples"] == 40
    with open(root / "c" / "config.json") as f:
        assert json.load(f)["init_from"]["resizer_path"] == str(root / "a")


def test_parts_not_selected_are_freshly_initialised(small_fmnist, two_runs):
    root, runs = two_runs
    config = _tiny(
        small_fmnist,
        seed=2,
        **{"init_from.path": str(root / "b"), "init_from.parts": ("classifier",)},
    )
    state, fresh = _initial_state(config, str(root / "d"))
    for key in ("params", "batch_stats"):
        assert _equal(state[key]["classifier"], runs["b"][key]["classifier"])
        assert _equal(state[key]["resizer"], fresh[key]["resizer"])  # seed 2's own init
    assert not _equal(state["params"]["resizer"], runs["a"]["params"]["resizer"])


def test_resizer_from_a_run_without_one_is_refused(small_fmnist, two_runs, tmp_path):
    root, _ = two_runs
    config = _tiny(
        small_fmnist,
        **{"init_from.path": str(root / "b"), "init_from.resizer_path": str(root / "b")},
    )
    with pytest.raises(ValueError, match="has no learned resizer"):
        _initial_state(config, str(tmp_path / "e"))


def test_parts_load_on_another_topology(small_fmnist, two_runs, tmp_path):
    """A checkpoint saved by an 8-device run initialises a 1-device process."""
    root, runs = two_runs
    expected = tmp_path / "expected.npz"
    got = tmp_path / "got.npz"
    np.savez(expected, **_flat({"params": runs["a"]["params"]}))
    meta = checkpoint_meta.model_meta(_tiny(small_fmnist, **{"resizer.kind": "learned"}))
    script = (
        "import sys, numpy as np, jax\n"
        "from learned_resize import train\nfrom learned_resize.runtime import checkpoints\n"
        "assert jax.device_count() == 1\n"
        f"meta = {meta!r}\n"
        f"parts = checkpoints.load_parts({str(root / 'a')!r}, ['classifier', 'resizer'], meta)\n"
        "flat = checkpoints._leaves_by_path({'params': parts['params']})\n"
        f"np.savez({str(got)!r}, **{{k: np.asarray(v) for k, v in flat.items()}})\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", JAX_NUM_CPU_DEVICES="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(expected) as want, np.load(got) as have:
        assert sorted(want.files) == sorted(have.files)
        for key in want.files:
            np.testing.assert_array_equal(want[key], have[key])
