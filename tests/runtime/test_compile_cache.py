"""Where the trainer keeps JAX's compilation cache (`runtime/compile_cache.py`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from learned_resize.runtime import compile_cache

_KEYS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture
def jax_cache_settings():
    """The test session's cache settings, put back afterwards."""
    saved = {key: getattr(jax.config, key) for key in _KEYS}
    yield
    for key, value in saved.items():
        jax.config.update(key, value)
    compilation_cache.reset_cache()


def test_default_is_inside_the_workdir(jax_cache_settings, monkeypatch, tmp_path):
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.delenv("LEARNED_RESIZE_CACHE", raising=False)
    assert compile_cache.default_dir(tmp_path / "run") == str(tmp_path / "run" / "compile_cache")
    assert compile_cache.default_dir("gs://bucket/run") == "gs://bucket/run/compile_cache"


def test_learned_resize_cache_variable_wins_over_the_workdir(
    jax_cache_settings, monkeypatch, tmp_path
):
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("LEARNED_RESIZE_CACHE", str(tmp_path / "cache"))
    assert compile_cache.default_dir(tmp_path / "run") == str(tmp_path / "cache" / "jax")


def test_a_cache_named_to_jax_is_left_alone(jax_cache_settings, monkeypatch, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_own"))
    monkeypatch.setenv("LEARNED_RESIZE_CACHE", str(tmp_path / "cache"))
    assert compile_cache.default_dir(tmp_path / "run") is None


def test_use_keeps_every_program_and_empty_turns_it_off(jax_cache_settings, tmp_path):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 5.0)
    compile_cache.use(str(tmp_path / "c"))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1
    # A program compiled now (a fresh function: no in-memory hit) lands in the directory,
    # however quick its compile, and computes what numpy does.
    x = np.arange(6.0, dtype=np.float32)
    out = jax.jit(lambda v: jnp.cumsum(v * 3.0 + 1.0))(x)
    np.testing.assert_allclose(out, np.cumsum(x * 3.0 + 1.0))
    assert any(p.name.endswith("-cache") for p in (tmp_path / "c").iterdir())
    compile_cache.use("")
    assert jax.config.jax_compilation_cache_dir is None
