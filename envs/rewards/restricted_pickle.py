"""Load pickled lists of numpy arrays without running arbitrary code: only the globals numpy
needs to rebuild plain arrays are allowed, anything else is refused by name."""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gflow.errors import GflowError

_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # how arrays pickle with protocols 0-4
_FROMBUFFER = np.zeros(0).__reduce_ex__(5)[0]  # how arrays pickle with protocol 5
_NUMPY_CORES = ("numpy.core", "numpy._core")  # numpy 1 and numpy 2 names of the same modules


class NotArrays(pickle.UnpicklingError, GflowError):
    """The file is not a (gzip-compressed) pickle of a list of plain numpy arrays."""


class RefusedGlobal(NotArrays):
    """The pickle names a global outside the allowed set; nothing it names was called."""


def _plain_dtype(*args: Any) -> np.dtype:
    """numpy.dtype, refusing dtypes that hold Python objects (they could unpickle code)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise RefusedGlobal(
            f"refused object dtype {dtype!r}: only plain numeric arrays are allowed"
        )
    return dtype


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """_codecs.encode as protocol-2 pickles use it for raw bytes, latin-1 only."""
    if encoding != "latin1":
        raise RefusedGlobal(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    **{(f"{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in _NUMPY_CORES},
    **{(f"{core}.numeric", "_frombuffer"): _FROMBUFFER for core in _NUMPY_CORES},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("builtins", "list"): list,
    ("_codecs", "encode"): _latin1_bytes,
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array-rebuilding globals, `list` and latin-1
    byte decoding; object dtypes are refused too."""

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object for `module.name`; raises RefusedGlobal for any other global."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(
                f"refused to load global {module}.{name}: this file may only contain numpy arrays"
            ) from None


def load_arrays(path: str | os.PathLike) -> list[np.ndarray]:
    """The list of numpy arrays pickled in `path` (gzip-compressed or not), loaded safely; any
    other content raises NotArrays naming the file."""
    raw = Path(path).read_bytes()
    if not raw:
        raise NotArrays(f"{path} is empty, expected a pickled list of numpy arrays")
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        obj = ArrayUnpickler(io.BytesIO(raw)).load()
    except RefusedGlobal as err:
        raise RefusedGlobal(f"{path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any failure to parse untrusted bytes is bad content
        raise NotArrays(
            f"{path} is not a pickled list of numpy arrays ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(obj, (list, tuple)) or not all(isinstance(a, np.ndarray) for a in obj):
        raise NotArrays(f"{path} does not hold a list of numpy arrays")
    return list(obj)
