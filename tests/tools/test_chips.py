"""tools/chips.py: each known chip's peak against the vendors' datasheet figures."""

import pytest

from learned_resize.tools import chips


@pytest.mark.parametrize(
    "kind, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA GH200 480GB", 989e12),
        ("NVIDIA A100-SXM4-40GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("TPU v4", 275e12),
        ("TPU v5 lite", 197e12),
        ("TPU v5", 459e12),
        ("TPU v5p", 459e12),
        ("TPU v6 lite", 918e12),
        ("cpu", None),
        ("Tesla V100-SXM2-16GB", None),  # no bf16 matrix units
    ],
)
def test_peak_by_device_kind(kind, peak):
    assert chips.peak_bf16(kind) == peak
