"""`config.model.dtype = "auto"`: bfloat16 on TPUs and Ampere+ GPUs, float32 elsewhere.

Devices are faked with the attributes jax's devices have (`platform`, `device_kind`,
and `compute_capability` on CUDA GPUs); the table is NVIDIA's published compute
capabilities, and bfloat16 tensor cores start at 8.0 (Ampere).
"""

import types

import jax
import pytest

from learned_resize.runtime import precision


def device(platform, kind, capability=None):
    fake = types.SimpleNamespace(platform=platform, device_kind=kind)
    if capability is not None:
        fake.compute_capability = capability
    return fake


@pytest.mark.parametrize(
    "fake, expected",
    [
        (device("gpu", "NVIDIA A100-SXM4-80GB", "8.0"), "bfloat16"),
        (device("gpu", "NVIDIA H100 80GB HBM3", "9.0"), "bfloat16"),
        (device("gpu", "NVIDIA L4", "8.9"), "bfloat16"),
        (device("gpu", "NVIDIA GeForce RTX 3090", "8.6"), "bfloat16"),
        (device("gpu", "Tesla V100-SXM2-16GB", "7.0"), "float32"),
        (device("gpu", "Tesla T4", "7.5"), "float32"),
        (device("gpu", "AMD Instinct MI250X", "gfx90a"), "float32"),  # unknown: float32
        (device("gpu", "a GPU that reports nothing"), "float32"),
        (device("tpu", "TPU v4"), "bfloat16"),
        (device("tpu", "TPU v5 lite"), "bfloat16"),
        (device("cpu", "cpu"), "float32"),
    ],
)
def test_auto_per_device(fake, expected):
    assert precision.compute_dtype("auto", [fake, fake]) == expected


def test_mixed_devices_fall_back_to_float32():
    a100, v100 = device("gpu", "A100", "8.0"), device("gpu", "V100", "7.0")
    assert precision.compute_dtype("auto", [a100, v100]) == "float32"


def test_explicit_dtype_is_kept_and_bad_one_rejected():
    cpu = [device("cpu", "cpu")]
    assert precision.compute_dtype("bfloat16", cpu) == "bfloat16"
    assert precision.compute_dtype("float32", [device("tpu", "TPU v4")]) == "float32"
    with pytest.raises(ValueError, match="must be one of"):
        precision.compute_dtype("float16", cpu)


def test_this_machine_resolves_to_float32():
    assert jax.devices()[0].platform == "cpu"
    assert precision.compute_dtype("auto") == "float32"
