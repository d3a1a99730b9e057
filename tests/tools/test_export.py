"""learned_resize.tools.export: BN folding, the jax.export artifact, its loader and its CLI."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learned_resize import train
from learned_resize.models import resizers
from learned_resize.tools import eval_modes, export
from tests.helpers.configs import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _random_resizer(norm, seed=0):
    """A small LearnedResizer with random weights and BN statistics far from (0, 1)."""
    abstract = nnx.eval_shape(
        lambda: resizers.LearnedResizer((6, 5), 4, 2, in_channels=3, norm=norm, rngs=nnx.Rngs(0))
    )
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)
    flat = []
    for path, var in nnx.to_flat_state(state):
        shape, name = var.shape, path[-1]
        if name == "kernel":
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif name in ("scale", "var"):  # BN variances far from 1, scales around 1
            value = rng.uniform(0.5, 1.5, shape) if name == "scale" else rng.uniform(0.2, 3, shape)
        else:  # bias, mean
            value = 0.3 * rng.normal(size=shape)
        flat.append((path, var.replace(jnp.asarray(value, jnp.float32))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


@pytest.mark.parametrize("norm", resizers.NORMS)
def test_folded_equals_module_in_eval_mode(norm):
    model = _random_resizer(norm)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 11, 9, 3)), jnp.float32)
    want = nnx.jit(lambda m, x: m(x, train=False))(model, x)
    folded = resizers.fold_batch_norm(model)
    if norm == "batch":  # The tail's BatchNorm is folded as computed by hand in numpy.
        bn, kernel = model.tail.bn, np.asarray(model.tail.conv.kernel[...], np.float64)
        mul = np.asarray(bn.scale[...]) / np.sqrt(np.asarray(bn.var[...]) + bn.epsilon)
        np.testing.assert_allclose(folded.tail.conv.kernel[...], kernel * mul, rtol=1e-6)
        shift = np.asarray(bn.bias[...]) - np.asarray(bn.mean[...]) * mul
        np.testing.assert_allclose(folded.tail.bn.bias[...], shift, rtol=1e-6, atol=1e-7)
        assert float(jnp.abs(folded.tail.bn.mean[...]).max()) == 0.0
        np.testing.assert_array_equal(folded.tail.bn.scale[...], 1.0)
    got = nnx.jit(lambda m, x: m(x, train=False))(folded, x)
    # Folding reassociates float32 products (kernel * scale / sqrt(var)): roundoff only.
    np.testing.assert_allclose(got, want, atol=2e-5 * float(jnp.abs(want).max()))
    # The check can see a wrong fold: eval mode differs from train mode (batch statistics).
    if norm == "batch":
        train_out = nnx.jit(lambda m, x: m(x, train=True))(_random_resizer(norm), x)
        assert np.abs(np.asarray(train_out - want)).max() > 1e-2


@pytest.fixture(scope="module")
def trained(small_fmnist, tmp_path_factory):
    """(workdir, config) of a tiny learned-resizer run trained to a checkpoint."""
    workdir = str(tmp_path_factory.mktemp("export_run"))
    config = tiny_config(small_fmnist)
    train.train_and_evaluate(config, workdir)
    return workdir, config


def _checkpointed_resize(config, workdir, images):
    """The restored trainer model's resizer output in [0, 1] units (eval mode)."""
    steps, state, rest = eval_modes.restore_steps(config, workdir)
    model = steps._model(state["params"], state["batch_stats"], rest)
    return np.asarray(model.denormalise(model.resize(jnp.asarray(images), train=False)))


# The trained size, a non-square one and an odd one (both sides odd, down by 7.1 x 5.6).
SIZES = ((28, 28), (40, 31), (57, 45))


@pytest.mark.slow  # trains the tiny config once per module
def test_round_trip_equals_checkpointed_model_at_any_size(trained, tmp_path):
    workdir, config = trained
    out = str(tmp_path / "resizer.jaxexport")
    assert export.export_checkpoint(workdir, out) > 0
    resize = export.load(out)
    assert resize.settings["input_size"] == [28, 28]  # the run's, for its eval preprocessing
    assert resize.settings["accepts"] == "any height and width"
    assert resize.settings["output_size"] == [8, 8]
    # One artifact: symbolic batch, height and width.
    shape = [str(d) for d in resize.exported.in_avals[0].shape]
    assert shape == ["batch", "height", "width", "1"]
    rng = np.random.default_rng(0)
    worst = (0.0, 0.0)  # max |diff|, and divided by max |output|
    for size in SIZES:
        images = rng.integers(0, 256, (5, *size, 1), dtype=np.uint8)
        # The trainer's own model at this size (its slice-plan resize, built for it).
        want = _checkpointed_resize(config, workdir, images)
        got = np.asarray(resize(images))
        assert got.shape == (5, 8, 8, 1) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max(), err_msg=f"{size}")
        diff = float(np.abs(got - want).max())
        worst = (max(worst[0], diff), max(worst[1], diff / float(np.abs(want).max())))
        # Any batch size; floats in [0, 1] = uint8 / 255.
        np.testing.assert_allclose(resize(images[:1] / 255.0), got[:1], atol=1e-6)
        # Not the bilinear resize: the trained correction is in the artifact.
        bilinear = jax.image.resize(images / 255.0, (5, 8, 8, 1), "linear", antialias=False)
        assert np.abs(got - bilinear).max() > 1e-3
    print(f"any-size artifact vs checkpointed model: max |diff| {worst[0]:.2e}, / max |output| "
          f"{worst[1]:.2e}")  # fmt: skip


@pytest.mark.slow  # trains the tiny config once per module
def test_fixed_size_artifact_keeps_the_trainers_formulation(trained, tmp_path):
    workdir, config = trained
    out = str(tmp_path / "fixed.jaxexport")
    assert export.export_checkpoint(workdir, out, input_size=(40, 31)) > 0
    resize = export.load(out)
    assert resize.settings["accepts"] == [40, 31]
    assert [str(d) for d in resize.exported.in_avals[0].shape] == ["batch", "40", "31", "1"]
    images = np.random.default_rng(1).integers(0, 256, (3, 40, 31, 1), dtype=np.uint8)
    want = _checkpointed_resize(config, workdir, images)
    np.testing.assert_allclose(resize(images), want, atol=1e-5 * np.abs(want).max())
    with pytest.raises(ValueError):  # the fixed artifact refuses another size
        resize(np.zeros((1, 28, 28, 1), np.uint8))


@pytest.mark.slow  # trains the tiny config once per module
def test_loading_needs_no_training_code(trained, tmp_path):
    workdir, _ = trained
    out = str(tmp_path / "r.jaxexport")
    assert export.export_checkpoint(workdir, out) > 0
    code = (
        "import sys, numpy as np\n"
        "from learned_resize.tools import export\n"
        f"r = export.load({out!r})\n"
        "y = r(np.zeros((2, 33, 21, 1), np.uint8))\n"
        "heavy = [m for m in ('flax', 'orbax', 'optax', 'learned_resize.train',"
        " 'learned_resize.models.resizers') if m in sys.modules]\n"
        "print(y.shape, heavy)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(2, 8, 8, 1) []"


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.slow  # trains the tiny config once per module
def test_cli_errors_are_one_line_and_keep_files(trained, tmp_path):
    workdir, _ = trained
    existing = tmp_path / "taken.jaxexport"
    existing.write_bytes(b"keep me")
    cases = [
        ([f"--checkpoint={workdir}", f"--out={existing}"], "exists"),
        ([f"--checkpoint={tmp_path}/nothing", f"--out={tmp_path}/a.jaxexport"], "config.json"),
        ([f"--checkpoint={workdir}", f"--out={tmp_path}/b.jaxexport", "--input_size=28"], "H,W"),
        ([f"--checkpoint={workdir}", f"--out={tmp_path}/c.jaxexport", "--format=tf"], "format"),
        ([f"--checkpoint={workdir}", f"--out={tmp_path}/d.jaxexport", "--nosuch"], "nosuch"),
        ([f"--checkpoint={workdir}", f"--out={tmp_path}/e.jaxexport", "stray"], "stray"),
        ([f"--checkpoint={workdir}"], "--out is missing"),
        (
            [
                f"--checkpoint={workdir}",
                f"--out={tmp_path}/f.onnx",
                "--format=onnx",
                "--input_size=28,28",
            ],
            "--input_size is for --format=jax",
        ),  # fmt: skip
        (
            [f"--checkpoint={workdir}", f"--out={workdir}/config.jaxexport", "--overwrite"],
            "config.json is the input --checkpoint",
        ),
    ]
    run_config = _read(os.path.join(workdir, "config.json"))
    for args, words in cases:
        run = subprocess.run(
            [sys.executable, "-m", "learned_resize.tools.export", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert run.returncode == 1
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert existing.read_bytes() == b"keep me"
    assert _read(os.path.join(workdir, "config.json")) == run_config
    assert not any(
        (tmp_path / n).exists() for n in ("a.json", "b.json", "c.json", "d.json", "e.json")
    )
    # With --overwrite the old artifact (not the run's files) is replaced by a working one.
    run = subprocess.run(
        [sys.executable, "-m", "learned_resize.tools.export", f"--checkpoint={workdir}",
         f"--out={existing}", "--overwrite"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"wrote {existing}" in run.stdout
    resize = export.load(str(existing))
    assert resize.settings["output_size"] == [8, 8]
    assert np.asarray(resize(np.zeros((1, 28, 28, 1), np.uint8))).shape == (1, 8, 8, 1)
