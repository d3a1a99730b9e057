"""The switch for the CPU-only formulations (learned_resize/models/cpu/__init__.py):
with LEARNED_RESIZE_CPU_FORMS=off the CPU backend runs XLA's convolutions, as an
accelerator does, and both programs compute the same depthwise convolution as numpy."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

_PROGRAM = r"""
import json, jax, jax.numpy as jnp, numpy as np
from flax import nnx
from learned_resize.models.cpu import conv_forms
conv = conv_forms.Conv(4, 4, (3, 3), feature_group_count=4, use_bias=False, rngs=nnx.Rngs(0))
x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 7, 4)), jnp.float32)
text = jax.jit(lambda x: conv(x)).lower(x).as_text()
print(json.dumps({"convolutions": text.count("stablehlo.convolution"),
                  "y": np.asarray(conv(x)).tolist(), "x": np.asarray(x).tolist(),
                  "kernel": np.asarray(conv.kernel[...]).tolist()}))
"""


def _run(value):
    env = dict(os.environ, JAX_PLATFORMS="cpu", LEARNED_RESIZE_CPU_FORMS=value)
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _numpy_depthwise(x, kernel):
    """SAME, stride 1, a group per channel: y[i,j,c] = sum_ab x[i+a-1, j+b-1, c] k[a,b,0,c]."""
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    y = np.zeros_like(x)
    for a in range(3):
        for b in range(3):
            y += pad[:, a : a + h, b : b + w, :] * kernel[a, b, 0]
    return y


@pytest.mark.parametrize("value, convolutions", [("auto", 0), ("off", 1)])
def test_switch_selects_the_formulation_and_keeps_the_values(value, convolutions):
    got = _run(value)
    assert got["convolutions"] == convolutions
    x, kernel = np.asarray(got["x"]), np.asarray(got["kernel"])
    np.testing.assert_allclose(got["y"], _numpy_depthwise(x, kernel), rtol=1e-5, atol=1e-5)


def test_an_unknown_value_is_refused():
    from learned_resize.models import cpu

    os.environ[cpu.ENV] = "maybe"
    try:
        with pytest.raises(ValueError, match="LEARNED_RESIZE_CPU_FORMS='maybe'"):
            cpu.enabled()
    finally:
        del os.environ[cpu.ENV]
