"""The ONNX Runtime backend: an exported CSNet (see :mod:`csnet.infer.onnx_export`) in an InferenceSession.

It is what runs ``.onnx`` exports (``csnet export``), on the CPU or with onnxruntime-gpu on CUDA; for CSNet
modules on the CPU the ``fast`` and ``openvino`` backends are faster (``benchmarks/RESULTS.md``). A model given as
a module is exported in memory; with ``cache_dir`` the export is kept as
``<cache_dir>/onnx/<sha256 of weights, config, torch version and opset>.onnx`` and reused.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from csnet.infer.backends import Backend, BackendError
from csnet.infer.cache import cached_file, model_key

__all__ = ["OnnxRuntimeBackend"]

log = logging.getLogger(__name__)


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX model with ``image`` -> ``logits`` (dynamic batch and size).

    Args:
        model: the ONNX model, as a ``.onnx`` path or its bytes.
        device: ``"cpu"``, or ``"cuda"`` (needs onnxruntime-gpu's CUDAExecutionProvider).
        threads: intra-op threads (``None``: ONNX Runtime's default, one per core).
    """

    name = "onnxruntime"

    def __init__(self, model: Union[str, os.PathLike, bytes], device: str = "cpu",
                 threads: Optional[int] = None) -> None:
        ort = _import_ort()
        self.device = str(device)
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu); "
                                   "use --device cpu or --backend torch")
            index = self.device.split(":")[1] if ":" in self.device else "0"
            providers = [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as error:  # noqa: BLE001 - ORT raises its own exception types
            where = "model bytes" if isinstance(model, bytes) else str(model)
            raise BackendError(f"onnxruntime cannot load {where}: {str(error).splitlines()[0]}") from error
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("onnxruntime") is not None

    @classmethod
    def from_module(cls, model, device: str = "cpu", threads: Optional[int] = None,
                    cache_dir: Union[str, os.PathLike, None] = None) -> "OnnxRuntimeBackend":
        """Export ``model`` (in memory, or through ``cache_dir``) and load it."""
        from csnet.infer.onnx_export import DEFAULT_OPSET, export_onnx_bytes

        _import_ort()
        if cache_dir is None:
            return cls(export_onnx_bytes(model), device=device, threads=threads)
        path = Path(cache_dir) / "onnx" / f"{model_key(model, f'opset={DEFAULT_OPSET}')}.onnx"
        return cls(cached_file(path, lambda: export_onnx_bytes(model)), device=device, threads=threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]


def _import_ort():
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendError("the onnxruntime backend needs onnxruntime: pip install 'csnet[onnx]'") from error
    return onnxruntime
