"""A plain `pip install .` (no extras) in a fresh virtual environment: the first
retargeting command, with no weight cache, says in one line which extra to install, and
so does building the cache (`onnx`, which only the weights and dev extras bring, reads
the VGG-16 source).

Slow: pip installs jax, flax, TFDS and the rest from the registry (minutes). Without
network access to the registry the test skips with one sentence.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory):
    """A fresh venv (no system site-packages) with only `pip install <checkout>`."""
    root = tmp_path_factory.mktemp("plain")
    # A copy without build products, so pip's in-tree build neither reuses a stale
    # build/ nor leaves one in the checkout.
    source = root / "source"
    skip = ("build", "workdirs", ".git", ".venv*", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*skip))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"pip could not install the checkout into a fresh venv: {last}")
    return python, root


def _run(python, root, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["LEARNED_RESIZE_CACHE"] = str(root / "empty_cache")  # no weights, as on a new machine
    return subprocess.run(
        [str(python), *args],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=600,
        check=False,
    )


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_plain_install_lacks_onnx(plain_venv):
    python, root = plain_venv
    result = _run(python, root, "-c", "import importlib.util as u; print(u.find_spec('onnx'))")
    assert result.stdout.strip() == "None", "the check below needs an install without onnx"


def test_first_retarget_command_names_the_extra_in_one_line(plain_venv):
    python, root = plain_venv
    result = _run(python, root, "-m", "learned_resize.retarget", f"--out={root / 'out.png'}")
    lines = _error_lines(result)
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "pip install onnx" in lines[0] and "[weights]" in lines[0], lines[0]
    assert "learned_resize.retarget.weights --fetch" in lines[0]
    assert not (root / "out.png").exists()


def test_building_the_cache_names_the_extra_in_one_line(plain_venv):
    python, root = plain_venv
    # The console script of [project.scripts], as a user of the plain install has it.
    script = python.parent / "learned-resize-weights"
    result = _run(python, root, str(script), "--fetch")
    lines = _error_lines(result)
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "pip install onnx" in lines[0] and "[weights]" in lines[0], lines[0]
    assert "Downloading" not in result.stdout  # refused before downloading anything
    assert not (root / "empty_cache").exists() or not any((root / "empty_cache").iterdir())
