"""The OpenVINO backend: the fused CSNet core compiled by OpenVINO's CPU plugin (``csnet[openvino]``).

On the 2-core reference CPU it is the fastest runtime csnet has (``benchmarks/RESULTS.md``, run J: csnet_l_x1,
batch 1, 224 x 224, 2 threads, float32), with the same logits as the model (within 1e-4). See
:class:`csnet.infer.fast_backends.OpenVinoCSNet` for what it runs and why in that form.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from csnet.infer.backends import Backend, BackendError

__all__ = ["OpenVinoBackend"]

log = logging.getLogger(__name__)


class OpenVinoBackend(Backend):
    """Runs a :class:`~csnet.models.CSNet` through OpenVINO on the CPU, in float32.

    Args:
        model: a CSNet (left unchanged; the backend compiles its own folded copy).
        device: ``"cpu"`` only.
        threads: inference threads (``None``: torch's current thread count, which ``csnet predict`` sets).
        cache_dir: keeps the ONNX export (``<cache_dir>/openvino/<key>.onnx``, keyed by the weights, config, torch
            version and the fast-path code) and OpenVINO's compiled models (``<cache_dir>/openvino/compiled``), so a
            second start skips the export and most of the compile (~0.6 s); ``None``: build in memory.

    Raises:
        BackendError: not a CSNet, not the CPU, or OpenVINO is not installed.
    """

    name = "openvino"

    def __init__(self, model: nn.Module, device: str = "cpu", threads: Optional[int] = None,
                 cache_dir: Union[str, os.PathLike, None] = None) -> None:
        from csnet.models.csnet import CSNet

        if str(device) != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU, not {device!r}; use --backend fast")
        if not isinstance(model, CSNet):
            raise BackendError(f"the openvino backend runs CSNet models, not {type(model).__name__}; "
                               "use --backend torch")
        if not self.available():
            raise BackendError("the openvino backend needs OpenVINO: pip install 'csnet[openvino]'")
        from csnet.infer.fast_backends import OpenVinoCSNet, openvino_fast_path

        self.device = "cpu"
        self.threads = int(threads or torch.get_num_threads())
        fast = openvino_fast_path(model.eval())
        model_bytes, compiled_dir = None, None
        if cache_dir is not None:
            model_bytes, compiled_dir = _cached_export(model, fast, Path(cache_dir) / "openvino")
        self.model = OpenVinoCSNet(fast, threads=self.threads, model_bytes=model_bytes, cache_dir=compiled_dir)

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            return self.model(x).numpy()

    def describe(self) -> dict:
        import openvino

        return {**super().describe(), "runtime": f"openvino {openvino.__version__}", "threads": self.threads}


def _cached_export(model: nn.Module, fast, folder: Path) -> tuple[Optional[bytes], Optional[Path]]:
    """The core's ONNX export through ``folder`` (:func:`csnet.infer.cache.cached_file`) and OpenVINO's cache
    folder, which is ``None`` when ``folder`` cannot be written (then OpenVINO compiles in memory)."""
    import csnet.infer.fastpath
    from csnet.infer.cache import cached_file, model_key
    from csnet.infer.fast_backends import export_core_onnx

    code = Path(csnet.infer.fastpath.__file__).read_bytes()  # a changed fast path never meets a stale export
    path = folder / f"{model_key(model, 'openvino', hashlib.sha256(code).hexdigest())}.onnx"
    try:
        source = cached_file(path, lambda: export_core_onnx(fast))
        if isinstance(source, bytes):
            return source, None
        compiled = folder / "compiled"
        compiled.mkdir(parents=True, exist_ok=True)
        return source.read_bytes(), compiled
    except OSError as error:  # an unreadable cache is not an error either
        log.debug("cannot use the cache %s (%s)", folder, error)
        return None, None
