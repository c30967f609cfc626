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

# The globals a pickle of numpy arrays needs: array reconstruction, dtypes and numpy scalars.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class UnsafePickleError(ValueError):
    """The file is not a pickle of plain data, or names code it would run; nothing was executed."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            import numpy  # noqa: F401  (imported lazily: only pickles of arrays need it)

            return super().find_class(module, name)
        if module.startswith("numpy") and name.endswith("DType"):  # numpy>=2 dtype classes such as Float64DType
            return super().find_class(module, name)
        raise UnsafePickleError(f"refused global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id (not a plain pickle)")


def load_numpy_pickle(path: Union[str, os.PathLike]) -> Any:
    """Unpickle ``path`` admitting only numpy arrays, numbers, strings and plain containers."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnsafePickleError(f"{path}: cannot read ({error.strerror or error})") from error
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: {error}; only tensors, numpy arrays and plain containers are "
                                f"allowed, nothing was executed") from None
    except Exception as error:  # truncated or not a pickle at all
        raise UnsafePickleError(f"{path}: not a readable pickle ({type(error).__name__}: {error})") from None


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
