"""Reading pickles without executing them.

A pickle can name any importable callable and call it while loading, so a downloaded checkpoint can run
arbitrary code. These loaders admit only tensors, numpy arrays and plain containers and refuse anything
else with a one-line error naming the file and the refused global.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Union

__all__ = ["UnsafePickleError", "load_numpy_pickle", "load_torch_checkpoint"]

# The exact (module, name) pairs a pickle of numpy arrays needs: array reconstruction (protocols 2-5), dtypes,
# numpy scalars and the bytes codec protocol 2 uses. find_class compares against this set before anything is
# imported: a name merely starting with "numpy" must not import a module (``numpy.f2py.__main__`` runs f2py).
_NUMPY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    *(("numpy.dtypes", f"{kind}DType") for kind in (
        "Bool", "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Byte", "UByte",
        "Short", "UShort", "Int", "UInt", "Long", "ULong", "LongLong", "ULongLong", "Float16", "Float32",
        "Float64", "LongDouble", "Complex64", "Complex128", "CLongDouble")),
})

#: Largest pickle file read (the released channel configs are 1.6 KB).
DEFAULT_MAX_BYTES = 1 << 20
#: Most values (container entries + array elements), counted as if shared references were copies: a 2 KB
#: pickle of lists that share one list can stand for 10^9 values, which np.asarray would then allocate.
DEFAULT_MAX_ITEMS = 100_000
#: Deepest nesting of containers.
DEFAULT_MAX_DEPTH = 16


class UnsafePickleError(ValueError):
    """The file is not a pickle of plain data, or names code it would run; nothing was executed."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:  # checked first: nothing is imported for a refused name
            raise UnsafePickleError(f"refused global {module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id (not a plain pickle)")


def _check_bounded(value: Any, max_items: int, max_depth: int) -> None:
    """Raise UnsafePickleError if ``value`` holds more than ``max_items`` values or nests deeper than ``max_depth``.

    Shared references are counted every time they are reached (that is what a later ``np.asarray`` or
    ``list(...)`` would materialize), and the walk stops as soon as the budget is spent, so it costs at most
    ``max_items`` steps however large the expansion would be.
    """
    import numpy as np

    budget = max_items
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise UnsafePickleError(f"nested deeper than {max_depth} levels (max_depth)")
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise UnsafePickleError("refused an object array (only numeric arrays are allowed)")
            budget -= item.size
        elif isinstance(item, dict):
            budget -= len(item)
            stack.extend((v, depth + 1) for pair in item.items() for v in pair)
        elif isinstance(item, (list, tuple, set, frozenset)):
            budget -= len(item)
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, (str, bytes, bytearray)):
            budget -= max(1, len(item) // 64)
        else:
            budget -= 1
        if budget < 0:
            raise UnsafePickleError(f"holds more than {max_items:,} values, counting shared references as "
                                    f"copies (max_items)")


def load_numpy_pickle(path: Union[str, os.PathLike], *, max_bytes: int = DEFAULT_MAX_BYTES,
                      max_items: int = DEFAULT_MAX_ITEMS, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Unpickle ``path`` admitting only numpy arrays, numbers, strings and plain containers.

    Args:
        max_bytes: larger files are refused unread.
        max_items, max_depth: bounds on what the pickle stands for (see :func:`_check_bounded`), so that a
            small file cannot become gigabytes once its shared lists are turned into arrays.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UnsafePickleError(f"{path}: {size:,} bytes exceeds the limit of {max_bytes:,} bytes (max_bytes)")
        data = path.read_bytes()
    except OSError as error:
        raise UnsafePickleError(f"{path}: cannot read ({error.strerror or error})") from error
    try:
        value = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as error:  # the global's name comes from the file: kept on one line
        raise UnsafePickleError(f"{path}: {' '.join(str(error).split())}; only tensors, numpy arrays and plain containers are "
                                f"allowed, nothing was executed") from None
    except RecursionError:
        raise UnsafePickleError(f"{path}: nested too deeply to read") from None
    except Exception as error:  # truncated or not a pickle at all
        detail = " ".join(str(error).split())  # one line: the message may quote the file's bytes
        raise UnsafePickleError(f"{path}: not a readable pickle ({type(error).__name__}: {detail})") from None
    try:
        _check_bounded(value, max_items, max_depth)
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: too large once expanded: {error}") from None
    return value


def load_torch_checkpoint(path: Union[str, os.PathLike]) -> Any:
    """Load a torch checkpoint (zip or pre-1.6 format) with torch's restricted ``weights_only`` unpickler.

    It admits tensors, numbers, strings and plain containers; anything else is refused before it runs.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UnsafePickleError(f"{path}: no such file")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line or "global" in line),
                      str(error).splitlines()[0] if str(error) else "unpickling refused")
        raise UnsafePickleError(f"{path}: refused to load ({detail}); only tensors, numpy arrays and plain "
                                f"containers are allowed, nothing was executed") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsafePickleError(f"{path}: not a readable torch checkpoint ({first})") from None
