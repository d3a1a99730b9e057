"""bench/retarget_vs_torch.py without torch: one sentence saying how to get it, exit 0."""

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench", "retarget_vs_torch.py")


def test_skips_with_one_sentence_when_torch_is_missing():
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip("torch is importable here; the project's environment should not have it")
    run = subprocess.run(
        [sys.executable, BENCH, f"--torch_python={sys.executable}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, run.stdout
    assert lines[0].startswith(f"torch is not importable by {sys.executable}, so this bench skips")
    assert "pip install torch" in lines[0] and "--torch_python=" in lines[0]
