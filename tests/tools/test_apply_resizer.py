"""python -m learned_resize.tools.apply_resizer: [fixed | learned] PNGs for a folder of images."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from learned_resize import train
from learned_resize.tools import apply_resizer as resize_cli
from learned_resize.tools import eval_modes, export
from tests.helpers.configs import tiny_config

_MODULE = "learned_resize.tools.apply_resizer"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def trained(small_fmnist, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("resize_cli_run"))
    config = tiny_config(small_fmnist)
    train.train_and_evaluate(config, workdir)
    return workdir, config


def _write_images(directory):
    rng = np.random.default_rng(0)
    os.makedirs(directory)
    images = {
        "a": rng.integers(0, 256, (28, 28), np.uint8),
        "b": rng.integers(0, 256, (28, 28), np.uint8),
    }
    for name, pixels in images.items():
        PIL.Image.fromarray(pixels).save(os.path.join(directory, f"{name}.png"))
    with open(os.path.join(directory, "broken.jpg"), "wb") as f:
        f.write(b"not an image")
    return images


@pytest.mark.slow  # trains the tiny config once per module
def test_panels_are_the_fixed_and_the_checkpointed_resize(trained, tmp_path):
    workdir, config = trained
    images = _write_images(str(tmp_path / "in"))
    out = str(tmp_path / "out")
    assert resize_cli.run(workdir, f"{tmp_path}/in", out, zoom=3) == 2
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]  # the unreadable file is skipped
    trainer, state, rest = eval_modes.restore_steps(config, workdir)
    model = trainer._model(state["params"], state["batch_stats"], rest)
    for name, pixels in images.items():
        strip = np.asarray(PIL.Image.open(os.path.join(out, f"{name}.png")), np.float64)
        assert strip.shape == (24, 2 * 24 + 2)
        x = pixels[None, :, :, None]
        fixed = jax.image.resize(x / 255.0, (1, 8, 8, 1), "linear", antialias=False)[0, :, :, 0]
        learned = model.denormalise(model.resize(jnp.asarray(x), train=False))[0, :, :, 0]
        for panel, want in ((strip[:, :24], fixed), (strip[:, 26:], learned)):
            want = np.clip(np.asarray(want), 0, 1) * 255
            np.testing.assert_allclose(panel[::3, ::3], want, atol=0.51)  # PNG rounding
            np.testing.assert_array_equal(panel[1::3, 2::3], panel[::3, ::3])  # nearest zoom
        assert np.abs(strip[:, :24] - strip[:, 26:]).max() > 2  # the two panels differ
    # The same from an exported artifact.
    artifact = str(tmp_path / "r.jaxexport")
    assert export.export_checkpoint(workdir, artifact) > 0
    again = str(tmp_path / "again")
    assert resize_cli.run(artifact, f"{tmp_path}/in", again, zoom=3) == 2
    for name in images:
        a, b = (
            np.asarray(PIL.Image.open(os.path.join(d, f"{name}.png")), int) for d in (out, again)
        )
        assert np.abs(a - b).max() <= 1


@pytest.mark.slow  # trains the tiny config once per module
def test_cli_errors_are_one_line_and_overwrite_nothing(trained, tmp_path):
    workdir, _ = trained
    _write_images(str(tmp_path / "in"))
    os.makedirs(tmp_path / "out")
    (tmp_path / "out" / "a.png").write_bytes(b"old result")
    cases = [
        ([f"--images={tmp_path}/in", f"--out={tmp_path}/out"], "a.png exists"),
        ([f"--images={tmp_path}/missing", f"--out={tmp_path}/o2"], "not a directory"),
        ([f"--images={tmp_path}/in", f"--out={tmp_path}/o3", "--preprocess=crop"], "preprocess"),
        ([f"--images={tmp_path}/in", f"--out={tmp_path}/o4", "--zoom=-1"], "--zoom must be"),
        ([f"--images={tmp_path}/in", f"--out={tmp_path}/o5", "stray"], "unexpected arguments"),
        ([f"--images={tmp_path}/in"], "--out is missing"),
        (
            [f"--images={tmp_path}/in", f"--out={tmp_path}/in", "--overwrite"],
            "is the input --images=",
        ),
    ]
    inputs = {n: (tmp_path / "in" / n).read_bytes() for n in os.listdir(tmp_path / "in")}
    for args, words in cases:
        run = subprocess.run(
            [sys.executable, "-m", _MODULE, f"--checkpoint={workdir}", *args],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert (tmp_path / "out" / "a.png").read_bytes() == b"old result"
    assert not (tmp_path / "out" / "b.png").exists()
    assert {n: (tmp_path / "in" / n).read_bytes() for n in os.listdir(tmp_path / "in")} == inputs
    # With --overwrite the old result is replaced by the [fixed | learned] strip.
    assert resize_cli.run(workdir, f"{tmp_path}/in", f"{tmp_path}/out", 1, overwrite=True) == 2
    assert np.asarray(PIL.Image.open(tmp_path / "out" / "a.png")).shape == (8, 2 * 8 + 2)


@pytest.mark.slow  # trains the tiny config once per module
def test_photos_of_any_size_at_their_own_size(trained, tmp_path):
    """--preprocess=none: each photo whole, at its own size, through the any-size artifact."""
    workdir, config = trained
    rng = np.random.default_rng(3)
    os.makedirs(tmp_path / "in")
    images = {"wide": rng.integers(0, 256, (40, 31), np.uint8),
              "odd": rng.integers(0, 256, (57, 45), np.uint8),
              "odd2": rng.integers(0, 256, (57, 45), np.uint8)}  # fmt: skip
    for name, pixels in images.items():
        PIL.Image.fromarray(pixels).save(tmp_path / "in" / f"{name}.png")
    artifact = str(tmp_path / "r.jaxexport")
    assert export.export_checkpoint(workdir, artifact) > 0
    trainer, state, rest = eval_modes.restore_steps(config, workdir)
    model = trainer._model(state["params"], state["batch_stats"], rest)
    for source in (artifact, workdir):
        out = tmp_path / f"out_{len(source)}"
        run = subprocess.run(
            [sys.executable, "-m", _MODULE, f"--checkpoint={source}", f"--images={tmp_path}/in",
             f"--out={out}", "--zoom=2", "--preprocess=none"],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert sorted(os.listdir(out)) == ["odd.png", "odd2.png", "wide.png"]
        for name, pixels in images.items():
            strip = np.asarray(PIL.Image.open(out / f"{name}.png"), np.float64)
            assert strip.shape == (16, 2 * 16 + 2)
            x = pixels[None, :, :, None]
            fixed = jax.image.resize(x / 255.0, (1, 8, 8, 1), "linear", antialias=False)
            learned = model.denormalise(model.resize(jnp.asarray(x), train=False))
            for panel, want in ((strip[:, :16], fixed), (strip[:, 18:], learned)):
                want = np.clip(np.asarray(want)[0, :, :, 0], 0, 1) * 255
                np.testing.assert_allclose(panel[::2, ::2], want, atol=0.51)  # PNG rounding
    # A fixed-size artifact refuses --preprocess=none in one line.
    fixed_artifact = str(tmp_path / "fixed.jaxexport")
    assert export.export_checkpoint(workdir, fixed_artifact, input_size=(28, 28)) > 0
    with pytest.raises(ValueError, match="exported for 28x28 inputs only"):
        resize_cli.run(fixed_artifact, f"{tmp_path}/in", f"{tmp_path}/o", preprocess="none")
