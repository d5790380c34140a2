"""Read a legacy-format PyTorch state dict (``torch.save`` before the zip format) into numpy, without
torch: the shipped EfficientNet-Lite0 weights are such a file, and Loupe does not run torch.

Only what a plain state dict needs is unpickled (an OrderedDict of float/int tensors); any other
global in the pickle is refused, so a tampered file cannot run code.
"""
from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from engine.errors import LoupeError

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage:
    def __init__(self, dtype: type, numel: int):
        self.dtype = np.dtype(dtype)
        self.numel = numel
        self.data: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        base = self.storage.data
        item = base.itemsize
        return np.lib.stride_tricks.as_strided(base[self.offset:], self.size,
                                               tuple(s * item for s in self.stride)).copy()


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: BinaryIO):
        super().__init__(f)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in a state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, dtype, key, _location, numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(dtype, int(numel))
        return self.storages[key]


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: numpy array}`` from a legacy ``torch.save`` file of a state dict."""
    with open(path, "rb") as f:
        try:
            if pickle.load(f) != _MAGIC:
                raise LoupeError(f"{path} is not a legacy PyTorch file (bad magic number)")
            pickle.load(f)  # protocol version
            pickle.load(f)  # sys info
            up = _Unpickler(f)
            result = up.load()
            keys = pickle.load(f)
            for key in keys:
                st = up.storages[key]
                (n,) = struct.unpack("<q", f.read(8))
                if n != st.numel:
                    raise LoupeError(f"{path}: storage {key} holds {n} elements, expected {st.numel}")
                st.data = np.frombuffer(f.read(n * st.dtype.itemsize), st.dtype)
        except (pickle.UnpicklingError, EOFError, KeyError, struct.error, ValueError) as e:
            raise LoupeError(f"cannot read PyTorch state dict {path}: {e}") from None
    return {k: v.array() for k, v in result.items() if isinstance(v, _Tensor)}
