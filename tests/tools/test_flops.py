"""learned_resize.tools.flops: counts against hand-computed values and the paper's DenseNet-121."""

import math
import os
import subprocess
import sys

import pytest
from flax import nnx

from learned_resize.tools import cost_tables, flops


class _Conv(nnx.Module):
    def __init__(self):
        self.conv = nnx.Conv(8, 32, (3, 3), padding="SAME", rngs=nnx.Rngs(0))

    def __call__(self, x, train):
        return self.conv(x)


def test_one_convolution_by_hand():
    cost = flops.module_cost(_Conv, (1, 16, 16, 8))
    assert cost.params == 3 * 3 * 8 * 32 + 32
    assert cost.macs == 16 * 16 * (3 * 3 * 8) * 32 and cost.resize_macs == 0
    # XLA: 2 FLOPs per multiply-add over the taps inside the image (a SAME 3-tap window
    # over 16 positions has 16 * 3 - 2 = 46 of them per axis), plus the bias additions.
    assert cost.flops == 2 * (46 * 46 * 8 * 32) + 16 * 16 * 32


def test_resizer_size_and_cost_match_the_paper():
    cost = flops.resizer_cost(448, 224)  # n=16, r=1
    n = 16
    # Conv kernels alone: 11.87k in the paper's Table 2 (docs/PAPERS.md).
    kernels = 7 * 7 * 3 * n + n * n + 2 * 9 * n * n + 9 * n * n + 7 * 7 * n * 3
    assert kernels == 11_872
    biases_and_bn = (n + n + 3) + 4 * 2 * n  # conv biases; 4 BatchNorms' scale and bias
    assert cost.params == kernels + biases_and_bn
    hand = 448**2 * (7 * 7 * 3 * n + n * n) + 224**2 * (3 * 9 * n * n + 7 * 7 * n * 3)
    assert cost.macs == hand
    # The paper's DenseNet-121 overhead, 7.65 - 5.67 GFLOPs, is 2 x these multiply-adds.
    assert 2 * cost.macs / 1e9 == pytest.approx(7.65 - 5.67, abs=0.005)


def test_densenet121_matches_the_paper_in_its_convention():
    """Traced only (no XLA compile): 2 x GMACs reproduces the paper's 5.67 -> 7.65."""
    base = flops.model_cost(flops.stage_config("densenet121", 448, 224, False), use_xla=False)
    learned = flops.model_cost(flops.stage_config("densenet121", 448, 224, True), use_xla=False)
    assert base.params == 7_978_856
    assert 2 * base.macs / 1e9 == pytest.approx(5.67, abs=0.01)
    assert 2 * learned.macs / 1e9 == pytest.approx(7.65, abs=0.015)
    assert math.isnan(base.flops)


def test_backbone_with_learned_resizer_costs_backbone_plus_resizer():
    costs = flops.backbone_costs("resnet18", 64, 32)
    resizer = flops.resizer_cost(64, 32)
    base, learned = costs["bilinear"], costs["learned"]
    assert base.params == 11_689_512  # torchvision's ResNet-18
    assert learned.params - base.params == resizer.params
    assert learned.macs - base.macs == resizer.macs
    # XLA's total grows by about the resizer's own count (bf16 vs f32 and fusion aside).
    assert learned.flops - base.flops == pytest.approx(resizer.flops, rel=0.05)

    lines = cost_tables.cost_table({"resnet18": costs}, resizer, 64, 32).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| resnet18 | 11,689,512 |")
    assert f"| {resizer.params:,} |" in lines[-1]


def test_training_time_estimate_by_hand():
    v4 = cost_tables.ACCELERATORS[0]
    assert (v4.chips, v4.peak_tflops) == (4, 275.0)
    hours = cost_tables.train_hours(10.0, 2.0, v4, mfu=0.5)
    expected = 3 * 10e9 * 2 * 1_281_167 / (4 * 275e12 * 0.5) / 3600
    assert hours == pytest.approx(expected, rel=1e-12)
    costs = {"m": {"bilinear": flops.Cost(1, 10e9, 0, 0), "learned": flops.Cost(1, 20e9, 0, 0)}}
    table = cost_tables.estimate_table(costs, baseline_epochs=90, learned_epochs=20)
    # v4-8 baseline: 90 epochs of 10 GFLOPs forward at 50% .. 40% MFU.
    fast = cost_tables.train_hours(10.0, 90, v4, 0.5)
    slow = cost_tables.train_hours(10.0, 90, v4, 0.4)
    assert f"| m | {fast:.1f}-{slow:.1f} h |" in table


def test_cli_rejects_unknown_backbones():
    result = subprocess.run(
        [sys.executable, "-m", "learned_resize.tools.flops", "--backbones=resnet51"],
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert result.returncode != 0 and "Unknown --backbones ['resnet51']" in result.stderr
