"""One runner per backend: build it once, make a batch of input, run it; all share one small interface.

A runner's ``make_input(batch, height, width)`` returns what its ``run`` takes:

* on the CPU (default): a normalized ``B x 3 x H x W`` float32 tensor, so only the network is timed (the
  released implementation's figures are measured that way); with ``include_preprocess`` a ``B x H x W x 3``
  uint8 tensor that ``run`` converts and normalizes inside the timed call;
* on CUDA: always a ``B x H x W x 3`` uint8 tensor *on the device*; conversion and normalization run inside
  the timed call (and inside the CUDA graph for ``cuda-graph``).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from csnet.infer.fast_backends import CudaGraphCSNet, normalize_uint8

__all__ = ["BACKENDS", "Runner", "build_runner", "BackendUnavailable"]

logger = logging.getLogger(__name__)

BACKENDS = ("eager", "fast", "fast-jit", "compile", "onnxruntime", "openvino", "cuda-graph")
"""``eager``: the model as defined; ``fast``: :func:`csnet.infer.fastpath.optimize_for_inference`;
``fast-jit``: its core traced and frozen; ``compile``: its core through ``torch.compile``; ``onnxruntime``: its core
exported to ONNX (CPU, float32); ``openvino``: the OpenVINO variant of the core (links unmerged) compiled by
OpenVINO's CPU plugin (float32 or bfloat16); ``cuda-graph``: ``fast`` plus input conversion captured in CUDA graphs."""


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (missing package, no CUDA, unsupported dtype); the message says why."""


@dataclass
class Runner:
    """A built backend. ``setup_s`` is build time (export, trace); compile time shows in ``first_call_s``."""

    backend: str
    device: torch.device
    dtype: torch.dtype
    channels_last: bool
    include_preprocess: bool
    call: Callable[[Any], Tensor]
    setup_s: float = 0.0
    first_call_s: dict[tuple[int, ...], float] = field(default_factory=dict)
    notes: str = ""

    def make_input(self, batch: int, height: int, width: int, seed: int = 0) -> Any:
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, generator=generator)
        if self.include_preprocess:
            return images.to(self.device)
        x = normalize_uint8(images)
        return x.to(self.device, self.dtype)

    def run(self, inputs: Any) -> Tensor:
        key = tuple(inputs.shape)
        if key in self.first_call_s:
            return self.call(inputs)
        start = time.perf_counter()
        out = self.call(inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.first_call_s[key] = time.perf_counter() - start
        return out


def _with_preprocess(fn: Callable[[Tensor], Tensor], dtype: torch.dtype, channels_last: bool
                     ) -> Callable[[Tensor], Tensor]:
    def call(images: Tensor) -> Tensor:
        return fn(normalize_uint8(images, dtype, channels_last))

    return call


def build_runner(backend: str, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 channels_last: Optional[bool] = None, threads: int = 2, include_preprocess: bool = False,
                 compile_mode: Optional[str] = None) -> Runner:
    """Build ``backend`` for ``model`` (a :class:`~csnet.models.CSNet`, eval mode) on ``device`` in ``dtype``.

    Raises :class:`BackendUnavailable` when the combination cannot run here.
    """
    from csnet.infer import fast_backends
    from csnet.infer.fastpath import optimize_for_inference

    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise BackendUnavailable("CUDA is not available")
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if channels_last is None:  # fused paths: NHWC; the eager model as defined on the CPU, NHWC on CUDA
        channels_last = cuda or backend not in ("eager", "onnxruntime", "openvino")
    include_preprocess = include_preprocess or cuda
    start = time.perf_counter()
    notes = ""
    model = copy.deepcopy(model).eval()  # never change the caller's model (device, dtype, format)
    if backend == "eager":
        module = model.to(device=device, dtype=dtype)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        call = module
    elif backend == "cuda-graph":
        if not cuda:
            raise BackendUnavailable("cuda-graph needs --device cuda")
        fast = optimize_for_inference(model, dtype=dtype, channels_last=channels_last, device=device)
        graphs = CudaGraphCSNet(fast, dtype, channels_last)
        runner = Runner(backend, device, dtype, channels_last, True, graphs, notes="uint8 -> logits in one graph")
        runner.setup_s = time.perf_counter() - start
        return runner
    elif backend == "onnxruntime":
        if dtype != torch.float32:
            raise BackendUnavailable("the onnxruntime backend runs float32 only")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed (pip install 'csnet[onnx]')") from None
        providers = ["CUDAExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        if cuda and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise BackendUnavailable("this onnxruntime has no CUDAExecutionProvider")
        fast = optimize_for_inference(model.cpu(), dtype=torch.float32, channels_last=False, device="cpu")
        ort_model = fast_backends.OrtCSNet(fast, threads=threads, providers=providers)
        call = ort_model
        channels_last = False
        notes = "ONNX Runtime " + onnxruntime.__version__
    elif backend == "openvino":
        if cuda:
            raise BackendUnavailable("the openvino backend runs on the CPU")
        if dtype not in fast_backends.OPENVINO_PRECISIONS:
            raise BackendUnavailable("the openvino backend runs float32 or bfloat16")
        try:
            import openvino
        except ImportError:
            raise BackendUnavailable("openvino is not installed (pip install 'csnet[openvino]')") from None
        call = fast_backends.OpenVinoCSNet(fast_backends.openvino_fast_path(model), threads=threads, precision=dtype)
        channels_last = False
        notes = f"OpenVINO {openvino.__version__.split('-')[0]}, {fast_backends.OPENVINO_PRECISIONS[dtype]}"
    else:
        fast = optimize_for_inference(model, dtype=dtype, channels_last=channels_last, device=device,
                                      cpu_kernels=False if backend == "compile" else None)
        if backend == "fast":
            call = fast
        elif backend == "fast-jit":
            call = fast_backends.jit_fast(fast)
        else:  # compile
            call = fast_backends.compile_fast(fast, mode=compile_mode)
            notes = f"torch.compile(mode={compile_mode!r}); compile time is first_call_s"
    runner = Runner(backend, device, dtype, channels_last, include_preprocess, call, notes=notes)
    if include_preprocess and backend == "openvino":  # NumPy: a torch op would slow OpenVINO's threads
        runner.call = lambda images: call(torch.from_numpy(fast_backends.normalize_uint8_numpy(images.numpy())))
    elif include_preprocess:
        runner.call = _with_preprocess(call, dtype, channels_last)
    runner.setup_s = time.perf_counter() - start
    return runner
