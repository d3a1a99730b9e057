"""A restarted run finds its programs in `<workdir>/compile_cache` and compiles nothing.

Each run is the CLI (`learned_resize.main.run()`, flag parsing included) in a fresh
Python process that counts XLA backend compiles by function name through
`jax.monitoring` and writes the counts to a file when it exits.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_COUNTING_CLI = """
import atexit, collections, json, os, sys
from jax import monitoring
# JAX times a cache hit as a backend compile too, after recording the hit: a compile
# event right after a hit event is a load from the cache.
compiles, loaded, hit = collections.Counter(), collections.Counter(), [False]
def on_duration(event, seconds, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        (loaded if hit[0] else compiles)[kwargs.get("fun_name", "?")] += 1
        hit[0] = False
def on_event(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
        hit[0] = True
monitoring.register_event_duration_secs_listener(on_duration)
monitoring.register_event_listener(on_event)
def report():
    with open(os.environ["COMPILE_COUNTS"], "w") as f:
        json.dump({"compiles": compiles, "loaded": loaded}, f)
atexit.register(report)
from learned_resize import main
sys.argv = ["learned_resize.main", *sys.argv[1:]]
main.run()
"""


def run_counting(small_fmnist, workdir, counts_file, *extra):
    source, data_dir, _ = small_fmnist
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))
    }  # the CLI's own default cache, not the test session's
    env.update(JAX_PLATFORMS="cpu", LEARNED_RESIZE_MALLOC="system", COMPILE_COUNTS=str(counts_file))
    env.pop("LEARNED_RESIZE_CACHE", None)
    args = [
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        f"--config.data.manual_dir={source}",
        f"--config.data.data_dir={data_dir}",
        *extra,
    ]
    result = subprocess.run(
        [sys.executable, "-c", _COUNTING_CLI, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(counts_file) as f:
        return json.load(f)


@pytest.mark.slow
def test_second_process_compiles_no_train_or_eval_step(small_fmnist, tmp_path):
    workdir = tmp_path / "run"
    # First process: 4 steps and the final eval, on an empty cache.
    first = run_counting(
        small_fmnist, workdir, tmp_path / "first.json", "--config.num_train_steps=4"
    )
    assert first["compiles"].get("jit(_train_step)") == 1, first
    assert first["compiles"].get("jit(_eval_step)") == 1, first
    assert (workdir / "compile_cache").is_dir()
    # Second process on the same run, 2 steps more: resumes at step 4, trains, evaluates.
    second = run_counting(
        small_fmnist, workdir, tmp_path / "second.json", "--config.num_train_steps=6"
    )
    assert json.loads((workdir / "results.json").read_text())["step"] == 6
    assert second["compiles"].get("jit(_train_step)", 0) == 0, second
    assert second["compiles"].get("jit(_eval_step)", 0) == 0, second
    assert second["compiles"] == {}, second  # nothing else either: every program was kept
    assert second["loaded"]["jit(_train_step)"] == 1, second
    assert second["loaded"]["jit(_eval_step)"] == 1, second


@pytest.mark.slow
def test_compile_cache_off_compiles_again(small_fmnist, tmp_path):
    workdir = tmp_path / "run"
    off = "--compile_cache="
    first = run_counting(
        small_fmnist, workdir, tmp_path / "a.json", off, "--config.num_train_steps=2"
    )
    assert not (workdir / "compile_cache").exists()
    second = run_counting(
        small_fmnist, workdir, tmp_path / "b.json", off, "--config.num_train_steps=4"
    )
    assert first["compiles"].get("jit(_train_step)") == 1, first
    assert second["compiles"].get("jit(_train_step)") == 1, second
    assert second["loaded"] == {}, second
