"""The ``onnxruntime`` runtime: the fused CSNet exported by :mod:`csnet.infer.onnx_export`, in an InferenceSession.

It runs ``.onnx`` files (``csnet export`` writes the same fused graph it builds from a module), on the CPU or,
with onnxruntime-gpu, on CUDA. A module is exported once into ``<cache_dir>/onnx/<cache key>.onnx``
(:mod:`csnet.infer.cache`) and reused; without a cache folder it is exported in memory.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from csnet.infer.runtimes import ModelInput, Runtime, RuntimeUnavailable

__all__ = ["OnnxRuntime", "OrtPreset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrtPreset:
    dtype: str = "float32"
    optimization: str = "all"  #: graph optimization level: basic, extended or all
    allow_spinning: bool = True  #: idle threads spin: lowest latency on an idle machine, a waste on a busy one


class OnnxRuntime(Runtime):
    """Runs an ONNX model with ``image`` -> ``logits`` (dynamic batch and size), inter-op sequential."""

    name = "onnxruntime"
    package = "onnxruntime"
    extra = "onnx"
    takes_onnx = True
    presets = {"float32": OrtPreset(), "no-spin": OrtPreset(allow_spinning=False)}

    def setup(self, model: ModelInput) -> None:
        import onnxruntime as ort

        from csnet.models import ModelFileError

        providers: list = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeUnavailable("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
            index = self.device.split(":")[1] if ":" in self.device else "0"
            providers = [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                            }[self.preset.optimization]
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.preset.allow_spinning else "0")
        options.log_severity_level = 3
        source = self._export(model) if isinstance(model, nn.Module) else model
        if not isinstance(source, bytes):
            source = str(source)
        try:
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as error:  # noqa: BLE001 - ORT raises its own exception types for a bad file
            where = "model bytes" if isinstance(source, bytes) else source
            raise ModelFileError(f"{where}: onnxruntime cannot load it ({str(error).splitlines()[0]})") from error
        self.input_name = self.session.get_inputs()[0].name

    def _export(self, model: nn.Module):
        from csnet.infer.cache import cache_key, cached_file
        from csnet.infer.onnx_export import DEFAULT_OPSET, export_onnx_bytes

        if self.cache_dir is None:
            return export_onnx_bytes(model)
        key = cache_key(model, "onnx", f"opset={DEFAULT_OPSET}")
        return cached_file(self.cache_dir / "onnx" / f"{key}.onnx", lambda: export_onnx_bytes(model))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]

    def describe(self) -> dict:
        import onnxruntime

        return {**super().describe(), "version": onnxruntime.__version__}
