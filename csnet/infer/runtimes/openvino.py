"""The ``openvino`` runtime: the fused CSNet compiled by OpenVINO's CPU plugin (``csnet[openvino]``).

On the 2-core reference CPU it is the fastest runtime csnet has (``benchmarks/RESULTS.md``), with the same
logits as the model (within 1e-4 in float32). OpenVINO runs every conv in oneDNN's blocked layouts with its
bias, PReLU and the gOctConv's cross-scale add fused in as post-ops, so one ILBlock is a handful of kernels; it
runs the ``"openvino"`` export (:mod:`csnet.infer.onnx_export`: links unmerged, upsampling as transposed convs,
the head's one-channel upsampling left to NumPy here; the preset names the export).

Images run one at a time, and each padded image size is compiled once with static shapes, which OpenVINO plans
better than dynamic ones (it is no faster per image on a batch); the :attr:`OpenVinoRuntime.max_shapes` most
recent sizes are kept. With a cache folder the export is kept as ``<cache_dir>/openvino/<cache key>.onnx`` and
OpenVINO's compiled models in ``<cache_dir>/openvino/compiled``, so a second start skips both.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import numpy as np

from csnet.infer.resize import upsample_bilinear
from csnet.infer.runtimes import Runtime

__all__ = ["OpenVinoRuntime", "OpenVinoPreset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenVinoPreset:
    #: float32 (OpenVINO would otherwise pick bf16 on CPUs that have it) or bfloat16 (not exact: with trained
    #: weights a few pixels' probabilities move visibly while the held-out scores barely do; somewhat faster on
    #: AVX512-BF16 CPUs, no faster where narrow convs leave AMX idle; benchmarks/RESULTS.md run Y)
    dtype: str = "float32"
    #: OpenVINO's ENABLE_CPU_PINNING. Off: pinned, each of the two inference threads is tied to one core while it
    #: runs, so any other thread on that core (the caller, a busy neighbour, the hypervisor) stalls the whole
    #: parallel loop and 2-thread latency falls to 1-thread latency at random; unpinned, the OS moves the thread
    #: (measured in benchmarks/RESULTS.md, "OpenVINO's latency flip")
    pin_threads: bool = False
    #: the fused export it compiles (:data:`csnet.infer.onnx_export.EXPORT_VARIANTS`): upsampling as depthwise
    #: transposed convs (float32's fastest) or as Interpolate (bfloat16: on CPUs with AMX, OpenVINO runs a bf16
    #: transposed conv on a slow general kernel; benchmarks/RESULTS.md, run U)
    export: str = "openvino"

    @property
    def precision(self) -> str:
        """OpenVINO's INFERENCE_PRECISION_HINT."""
        return {"float32": "f32", "bfloat16": "bf16"}[self.dtype]


class OpenVinoRuntime(Runtime):
    """Runs a CSNet through OpenVINO on the CPU (``threads``: inference threads, default torch's count)."""

    name = "openvino"
    package = "openvino"
    extra = "openvino"
    devices = ("cpu",)
    presets = {"float32": OpenVinoPreset("float32"),
               "bfloat16": OpenVinoPreset("bfloat16", export="openvino-interpolate")}
    max_shapes = 4

    def setup(self, model) -> None:
        import openvino
        import torch

        config = self.model_config = model.config
        self.logits_stride = config.stage_stride(tuple(config.fusion.stages)[0])  # the export stops at the head
        self.threads = int(self.threads or torch.get_num_threads())
        self.model_bytes, compiled = self._export(model)
        self.core = openvino.Core()
        if compiled is not None:
            self.core.set_property({"CACHE_DIR": str(compiled)})
        self.config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": self.threads,
                       "INFERENCE_PRECISION_HINT": self.preset.precision,
                       "ENABLE_CPU_PINNING": self.preset.pin_threads}
        self._requests: OrderedDict[tuple[int, ...], object] = OrderedDict()

    def _export(self, model) -> tuple[bytes, Optional[object]]:
        """The export's bytes (through the cache when there is one) and OpenVINO's compiled-model folder."""
        from csnet.infer.cache import cache_key, cached_file
        from csnet.infer.onnx_export import export_onnx_bytes

        variant = self.preset.export
        make = lambda: export_onnx_bytes(model, variant=variant)  # noqa: E731
        if self.cache_dir is None:
            return make(), None
        folder = self.cache_dir / "openvino"
        try:
            source = cached_file(folder / f"{cache_key(model, variant)}.onnx", make)
            if isinstance(source, bytes):  # the cache cannot be written: compile in memory
                return source, None
            compiled = folder / "compiled"
            compiled.mkdir(parents=True, exist_ok=True)
            return source.read_bytes(), compiled
        except OSError as error:  # an unreadable cache is not an error either
            log.debug("cannot use the cache %s (%s)", folder, error)
            return make(), None

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        """The padded input shapes compiled and kept, least recently used first."""
        return list(self._requests)

    def request(self, shape: tuple[int, ...]):
        """OpenVINO's infer request for a padded ``1 x 3 x H x W`` input, compiled on first use."""
        if shape in self._requests:
            self._requests.move_to_end(shape)
            return self._requests[shape]
        start = time.perf_counter()
        request = self.core.compile_model(self._network(shape), "CPU", self.config).create_infer_request()
        log.debug("OpenVINO: compiled for %s in %.2f s", shape, time.perf_counter() - start)
        self._requests[shape] = request
        while len(self._requests) > self.max_shapes:
            self._requests.popitem(last=False)
        return request

    def _network(self, shape: tuple[int, ...]):
        """The ``openvino.Model`` to compile for ``shape`` (the int8 runtime gives its quantized one)."""
        network = self.core.read_model(self.model_bytes)
        network.reshape(list(shape))
        return network

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        images = np.asarray(batch, dtype=np.float32)
        height, width = images.shape[-2:]
        pad_h, pad_w = self.model_config.padding(height, width)
        if pad_h or pad_w:
            images = np.pad(images, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
        images = np.ascontiguousarray(images)
        # one compiled shape per size serves every batch size the micro-batcher or a last partial batch brings
        request = self.request((1, *images.shape[1:]))
        logits = np.concatenate([request.infer({0: images[i:i + 1]}, share_inputs=True)[0]
                                 for i in range(images.shape[0])])
        if self.logits_stride != 1:
            logits = upsample_bilinear(logits, self.logits_stride)
        return np.ascontiguousarray(logits[..., :height, :width])

    def describe(self) -> dict:
        import openvino

        return {**super().describe(), "version": openvino.__version__.split("-")[0], "threads": self.threads}
