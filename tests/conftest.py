"""Test setup: 8 simulated CPU devices, set before JAX initialises its backend."""

import os

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
