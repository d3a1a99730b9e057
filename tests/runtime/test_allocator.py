"""host_allocator: the re-execution under tcmalloc, and the page faults it saves.

Each case runs a fresh Python process (the allocator is chosen when a process
starts) with the environment `allocator_lib.environment()` gives it.
"""

import json
import subprocess
import sys

import pytest

from learned_resize.runtime import allocator as allocator_lib

needs_tcmalloc = pytest.mark.skipif(
    allocator_lib.tcmalloc_library() is None, reason="tcmalloc is not installed here"
)

# Re-executes under tcmalloc if asked, then counts the minor page faults of a jitted
# program that writes a fresh 64 MiB array, per call, after three warm-up calls.
_PROBE = """
import json, resource, sys
from learned_resize.runtime import allocator as allocator_lib
allocator_lib.reexec_under_tcmalloc()
import jax, jax.numpy as jnp
x = jnp.ones((16, 1024, 1024), jnp.float32)
f = jax.jit(lambda x: x * 2 + 1)
for _ in range(3):
    f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    f(x).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"allocator": allocator_lib.loaded_allocator(), "faults": faults}))
"""
_PAGES = 16 * 1024 * 1024 * 4 // 4096  # 4 KiB pages of the output array


def _probe(allocator: str) -> dict:
    env = allocator_lib.environment(allocator)
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_tcmalloc
def test_tcmalloc_reuses_memory_that_the_system_malloc_faults_in_again():
    system, tcmalloc = _probe("system"), _probe("tcmalloc")
    assert system["allocator"] == "system" and tcmalloc["allocator"] == "tcmalloc"
    if system["faults"] < _PAGES / 2:
        pytest.skip(f"the system malloc faulted only {system['faults']} pages (huge pages?)")
    # glibc: every page of the fresh 64 MiB output again (16,384); tcmalloc: next to none.
    assert system["faults"] <= 1.2 * _PAGES
    assert tcmalloc["faults"] < system["faults"] / 10, (system, tcmalloc)


def test_system_choice_keeps_the_system_malloc():
    assert _probe("system")["allocator"] == "system"


def test_environment_for_system_drops_a_preloaded_tcmalloc(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "libfoo.so libtcmalloc_minimal.so.4")
    monkeypatch.setenv("_LEARNED_RESIZE_REEXEC", "1")
    env = allocator_lib.environment("system")
    assert env["LD_PRELOAD"] == "libfoo.so"
    assert env[allocator_lib.ENV_VAR] == "system" and "_LEARNED_RESIZE_REEXEC" not in env


@needs_tcmalloc
def test_environment_for_tcmalloc_preloads_it_first(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "libfoo.so")
    env = allocator_lib.environment("tcmalloc")
    assert env["LD_PRELOAD"] == f"{allocator_lib.tcmalloc_library()} libfoo.so"
    assert env[allocator_lib.ENV_VAR] == "tcmalloc"


def test_bad_choice_is_one_sentence(monkeypatch):
    monkeypatch.setenv(allocator_lib.ENV_VAR, "jemalloc")
    with pytest.raises(ValueError, match=r"LEARNED_RESIZE_MALLOC is 'jemalloc'; set it to one of"):
        allocator_lib.reexec_under_tcmalloc()
