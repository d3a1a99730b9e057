"""Run the same command again: a staged run killed anywhere ends where a straight run ends.

A two-stage tiny config (configs/tiny.py:staged, baseline -> learned) is killed with
SIGKILL at every kind of point a pod's preemption can hit -- mid-stage 1, during its
final eval, between the stages, mid-stage 2, during its final eval -- re-run after
each kill, and then re-run once more after it finished. Every stage's final state
(params, BN statistics, optimizer state, step) and results.json must equal an
uninterrupted run's bit for bit (CPU), the timing field aside.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from learned_resize.runtime import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGES = ("baseline", "learned")


def _env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    return env


def _command(small_fmnist, workdir):
    source, data_dir, _ = small_fmnist
    return [
        sys.executable,
        "-m",
        "learned_resize.main",
        "--config=configs/tiny.py:staged",
        f"--workdir={workdir}",
        f"--config.data.manual_dir={source}",
        f"--config.data.data_dir={data_dir}",
    ]


def run(small_fmnist, workdir, **env):
    return subprocess.run(
        _command(small_fmnist, workdir), cwd=REPO, env=_env(**env), capture_output=True, text=True
    )


def final_state(stage_dir) -> dict:
    directory, step = checkpoints.resolve_checkpoint(stage_dir)
    with ocp.StandardCheckpointer() as ckpt:
        return ckpt.restore(os.path.join(directory, str(step), "state"))


def assert_same_run(a, b):
    for stage in STAGES:
        flat_a, flat_b = _flat(final_state(a / stage)), _flat(final_state(b / stage))
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=f"{stage}/{key}")
        results = [json.loads((d / stage / "results.json").read_text()) for d in (a, b)]
        for r in results:
            r.pop("train_seconds")
        assert results[0] == results[1], stage
    tables = [(d / "results.md").read_text().splitlines() for d in (a, b)]
    strip = lambda rows: [r.rsplit("|", 2)[0] for r in rows]  # noqa: E731 (time column)
    assert strip(tables[0]) == strip(tables[1])


def _flat(tree) -> dict:
    """{'params/classifier/...': array} over every leaf (lists and tuples included)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


@pytest.fixture(scope="module")
def straight(small_fmnist, tmp_path_factory):
    """An uninterrupted run's workdir, and how long it took."""
    workdir = tmp_path_factory.mktemp("straight") / "run"
    start = time.monotonic()
    result = run(small_fmnist, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, time.monotonic() - start


@pytest.mark.slow
def test_killed_at_every_point_then_rerun_equals_straight_run(small_fmnist, straight, tmp_path):
    straight, _ = straight
    workdir = tmp_path / "run"
    for point in (
        "baseline:step3",
        "baseline:eval",
        "baseline:done",
        "learned:step5",
        "learned:eval",
    ):
        result = run(small_fmnist, workdir, LEARNED_RESIZE_KILL_AT=point)
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-3000:])
    assert not (workdir / "learned" / "results.json").exists()
    result = run(small_fmnist, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stage baseline finished already" in result.stdout
    assert "Resumed from checkpoint at step 6" in result.stdout  # learned: only its eval left
    assert_same_run(straight, workdir)

    # A finished run, run again: nothing is trained, the table is the same.
    again = run(small_fmnist, workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished already") == 2
    assert again.stderr == ""
    assert_same_run(straight, workdir)


def _timed_run(small_fmnist, workdir) -> float:
    """Seconds an uninterrupted run in `workdir` takes; it must succeed."""
    start = time.monotonic()
    result = run(small_fmnist, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return time.monotonic() - start


@pytest.mark.slow
def test_killed_at_random_moments_then_rerun_equals_straight_run(small_fmnist, straight, tmp_path):
    """Three SIGKILLs at random moments of a run (seeded), then a run to the end.

    Every kill must land: the process is still running at its moment, so it exits by
    SIGKILL (return code -9), not by finishing or failing, and the last stage has no
    results.json yet. A kill never sent, or sent after the run ended, fails here rather
    than leaving uninterrupted runs that trivially equal the straight one.
    """
    straight, _ = straight
    # The straight run compiled every program; the runs here load them from the
    # persistent compilation cache and take a fraction of its time (13 s against 47 s on
    # a 2-core CPU), so the moments are drawn from a warm run's duration. A second run in
    # the finished warm workdir (start-up and checks, nothing trained) bounds from below
    # the start-up that every run pays before it makes progress.
    warm = tmp_path / "warm"
    budget = _timed_run(small_fmnist, warm)
    start_up = _timed_run(small_fmnist, warm)
    workdir = tmp_path / "run"
    rng = random.Random(13)
    for attempt in range(3):
        # `budget` bounds the next run's time from below: a warm run's, less the progress
        # the earlier killed runs made (at most their time after start-up).
        moment = rng.uniform(0.1, 0.8) * budget
        log = tmp_path / f"killed{attempt}.log"
        with open(log, "w") as stderr:
            proc = subprocess.Popen(
                _command(small_fmnist, workdir),
                cwd=REPO,
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:  # Somewhere in a warm run's time: start-up, a stage, an eval, a save.
                proc.wait(timeout=moment)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, (
            f"run {attempt} exited with {proc.returncode} before its kill at {moment:.1f} s: "
            + log.read_text()[-3000:]
        )
        assert not (workdir / STAGES[-1] / "results.json").exists(), (attempt, moment)
        budget -= max(0.0, moment - start_up)
    result = run(small_fmnist, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(straight, workdir)
