"""The on-disk store of compiled programs (learned_resize/runtime/executables.py)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from learned_resize.runtime import executables

_CHILD = """
import json, sys
import numpy as np, jax.numpy as jnp
from learned_resize.runtime import executables
from learned_resize.retarget import operators
from learned_resize.retarget import seams
image = np.random.default_rng(0).random((24, 32, 3)).astype(np.float32)
out = np.asarray(seams.seam_carve(jnp.asarray(image), (20, 25)))
print(json.dumps({"stats": executables.STATS, "out": out.tolist()}))
"""


def _child(cache, store="1"):
    env = dict(os.environ, LEARNED_RESIZE_CACHE=str(cache), LEARNED_RESIZE_EXECUTABLES=store)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_a_fresh_process_loads_the_stored_seam_carving_and_gets_the_same_pixels(tmp_path):
    first, second = _child(tmp_path), _child(tmp_path)
    plain = _child(tmp_path / "unused", store="0")
    assert first["stats"] == {"loaded": 0, "compiled": 1}
    assert second["stats"] == {"loaded": 1, "compiled": 0}
    assert plain["stats"] == {"loaded": 0, "compiled": 0}
    assert not (tmp_path / "unused").exists()
    np.testing.assert_array_equal(np.array(second["out"]), np.array(first["out"]))
    np.testing.assert_array_equal(np.array(plain["out"]), np.array(first["out"]))
    assert len(list((tmp_path / "executables").glob("*.bin"))) == 1


def _scale(x, y, *, power):
    return x**power + y


def test_program_names_follow_shapes_dtypes_weak_types_and_static_values():
    x32, y = jnp.ones((2, 3)), jnp.ones((2, 3))

    def key(x, y, power=2):
        return executables.program_key(_scale, (x, y), {}, {"power": power})

    # Values do not count.
    assert key(x32, y) == key(jnp.zeros((2, 3)), jnp.full((2, 3), 5.0, jnp.float32))
    others = [
        key(jnp.ones((3, 2)), y),
        key(x32.astype(jnp.bfloat16), y),
        key(x32, 1.0),  # weak-typed scalar
        key(x32, jnp.float32(1.0)),  # strong scalar
        key(x32, y, power=3),
    ]
    assert len({key(x32, y), *others}) == 1 + len(others)
    assert key(x32, y).startswith("_scale-")


def test_a_damaged_file_is_compiled_again_and_an_unwritable_store_still_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNED_RESIZE_CACHE", str(tmp_path))
    monkeypatch.setenv("LEARNED_RESIZE_EXECUTABLES", "1")
    x, y = jnp.arange(6.0).reshape(2, 3), jnp.ones((2, 3))
    want = np.arange(6.0).reshape(2, 3) ** 3 + 1
    stored = executables.stored_jit(_scale, static_argnames=("power",))
    np.testing.assert_allclose(stored(x, y, power=3), want)
    (path,) = (tmp_path / "executables").glob("*.bin")
    path.write_bytes(path.read_bytes()[:100])  # a truncated file, as after a crash
    before = dict(executables.STATS)
    again = executables.stored_jit(_scale, static_argnames=("power",))
    np.testing.assert_allclose(again(x, y, power=3), want)
    assert executables.STATS["compiled"] == before["compiled"] + 1
    assert path.stat().st_size > 1000  # replaced by a whole executable
    # The store's directory is a file: nothing can be written, the program still runs.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    monkeypatch.setenv("LEARNED_RESIZE_CACHE", str(blocked))
    np.testing.assert_allclose(
        executables.stored_jit(_scale, static_argnames=("power",))(x, y, power=3), want
    )
    np.testing.assert_allclose(jax.jit(_scale, static_argnames="power")(x, y, power=3), want)


def test_a_stored_program_loads_and_runs_in_a_process_with_many_devices(tmp_path, monkeypatch):
    # conftest gives this process 8 CPU devices; a 1-device program must load onto the
    # device it was compiled for (by default the loader spreads it over all 8).
    assert len(jax.devices()) > 1
    monkeypatch.setenv("LEARNED_RESIZE_CACHE", str(tmp_path))
    monkeypatch.setenv("LEARNED_RESIZE_EXECUTABLES", "1")
    x, y = jnp.arange(6.0).reshape(2, 3), jnp.ones((2, 3))
    want = np.arange(6.0).reshape(2, 3) ** 2 + 1
    np.testing.assert_allclose(
        executables.stored_jit(_scale, static_argnames=("power",))(x, y, power=2), want
    )
    before = dict(executables.STATS)
    fresh = executables.stored_jit(_scale, static_argnames=("power",))  # as a new process would
    np.testing.assert_allclose(fresh(x, y, power=2), want)
    assert executables.STATS == {"loaded": before["loaded"] + 1, "compiled": before["compiled"]}
    # An argument on another device is another program.
    on_last = jax.device_put(x, jax.devices()[-1]), jax.device_put(y, jax.devices()[-1])
    np.testing.assert_allclose(fresh(*on_last, power=2), want)
    assert executables.STATS["compiled"] == before["compiled"] + 1


_SOLVE_CHILD = """
import functools, json
import jax.numpy as jnp, numpy as np
from learned_resize.runtime import executables
from learned_resize.retarget import reconstruct

def quadratic(z, aux):  # a named loss: the name below is what the solver's key records
    return jnp.mean(jnp.square(z - aux["target"])) + reconstruct.total_variation(z)

loss = functools.partial(quadratic)
loss.program_name = "test quadratic + TV, v1"
target = np.random.default_rng(1).random((1, 12, 16, 3)).astype(np.float32)
out, info = reconstruct.minimize(
    loss, jnp.full_like(target, 0.5), {"target": target}, iterations=8, chunk=4, log=None
)
print(json.dumps({"stats": executables.STATS, "out": np.asarray(out).tolist(),
                  "evals": info.evaluations}))
"""


def test_a_named_loss_has_its_solver_stored_and_loaded_by_a_fresh_process(tmp_path):
    def child(store):
        env = dict(os.environ, LEARNED_RESIZE_CACHE=str(tmp_path), LEARNED_RESIZE_EXECUTABLES=store)
        done = subprocess.run(
            [sys.executable, "-c", _SOLVE_CHILD], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.splitlines()[-1])

    first, second, plain = child("1"), child("1"), child("0")
    assert first["stats"] == {"loaded": 0, "compiled": 1}
    assert second["stats"] == {"loaded": 1, "compiled": 0}  # no tracing of the solver
    assert plain["stats"] == {"loaded": 0, "compiled": 0}
    for other in (second, plain):
        np.testing.assert_array_equal(np.array(other["out"]), np.array(first["out"]))
        assert other["evals"] == first["evals"]


def test_a_programs_name_covers_the_whole_package():
    import learned_resize

    root = pathlib.Path(learned_resize.__file__).resolve().parent
    want = {p.relative_to(root) for p in root.rglob("*.py")}
    got = {p.relative_to(root) for p in executables.package_sources()}
    assert got == want and pathlib.Path("retarget/reconstruct.py") in got
