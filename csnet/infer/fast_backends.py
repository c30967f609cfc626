"""Runtimes for the fused CSNet of :mod:`csnet.infer.fastpath`: TorchScript, torch.compile, ONNX Runtime, CUDA graphs.

Each builder takes a :class:`~csnet.infer.fastpath.FastCSNet` and returns a callable with the same contract
(``B x 3 x H x W`` normalized float images of any size -> ``B x 1 x H x W`` logits), so the benchmark and the
predictor can swap them freely:

* :func:`jit_fast` - ``torch.jit.trace`` + ``torch.jit.freeze`` of the straight-line core (sizes stay dynamic:
  every upsampling is a fixed scale factor);
* :func:`compile_fast` - ``torch.compile`` of the core (inductor; compile time is paid on the first call of each
  new shape, see :attr:`CompiledCSNet.compile_seconds`);
* :class:`OrtCSNet` - the core exported to ONNX in memory and run by ONNX Runtime (needs the ``onnx`` extra);
* :class:`OpenVinoCSNet` - the same export compiled by OpenVINO's CPU plugin (needs the ``openvino`` extra);
* :class:`CudaGraphCSNet` - the whole uint8 -> normalized -> logits step captured in one CUDA graph per shape.

:func:`tune_malloc` (opt-in, process-wide) stops glibc from unmapping freed activations after every forward.

The ONNX export here is a small private helper for the fused core only; the project's user-facing ONNX export
is :mod:`csnet.infer.onnx_export`.
"""
from __future__ import annotations

import copy
import io
import logging
import os
import time
import warnings
from collections import OrderedDict
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from csnet.constants import IMAGENET_MEAN, IMAGENET_STD
from csnet.infer.fastpath import FastCSNet
from csnet.infer.resize import upsample_bilinear

__all__ = ["jit_fast", "compile_fast", "CompiledCSNet", "OrtCSNet", "OpenVinoCSNet", "export_core_onnx",
           "openvino_fast_path", "CudaGraphCSNet", "normalize_uint8", "normalize_uint8_numpy",
           "tune_malloc"]

logger = logging.getLogger(__name__)



_CONSTANTS: dict[torch.device, tuple[Tensor, Tensor]] = {}


def _mean_inv_std(device: torch.device) -> tuple[Tensor, Tensor]:
    """ImageNet mean and 1/std on the 0-255 scale, made once per device (no host->device copy per call,
    which would also break CUDA graph capture)."""
    if device not in _CONSTANTS:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32) * 255.0
        inv_std = 1.0 / (torch.tensor(IMAGENET_STD, dtype=torch.float32) * 255.0)
        _CONSTANTS[device] = (mean.to(device), inv_std.to(device))
    return _CONSTANTS[device]


def normalize_uint8(images: Tensor, dtype: torch.dtype = torch.float32, channels_last: bool = False) -> Tensor:
    """``B x H x W x 3`` uint8 RGB -> ``B x 3 x H x W`` ImageNet-normalized ``dtype`` on the same device.

    With ``channels_last`` the result is NHWC in memory, so the permute costs no copy.
    """
    if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"expected B x H x W x 3 uint8 images, got {tuple(images.shape)} {images.dtype}")
    mean, inv_std = _mean_inv_std(images.device)
    x = ((images.to(torch.float32) - mean) * inv_std).permute(0, 3, 1, 2)  # a view: NHWC in memory
    if not channels_last:
        x = x.contiguous()
    return x.to(dtype)


def normalize_uint8_numpy(images: np.ndarray) -> np.ndarray:
    """:func:`normalize_uint8` in NumPy (``B x H x W x 3`` uint8 -> ``B x 3 x H x W`` float32, contiguous), for
    runtimes beside which a torch op would wake torch's spinning OpenMP threads (OpenVINO: 18.35 instead of
    15.39 ms per csnet_l_x1 call with the torch conversion; benchmarks/RESULTS.md run L)."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected B x H x W x 3 uint8 images, got {images.shape} {images.dtype}")
    mean, inv_std = (t.numpy() for t in _mean_inv_std(torch.device("cpu")))
    return np.ascontiguousarray(((images.astype(np.float32) - mean) * inv_std).transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------------------------ allocator
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc(mmap_threshold_mb: int = 256, trim_threshold_mb: int = 512) -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the OS (glibc only).

    glibc serves every allocation above its mmap threshold with a fresh ``mmap`` and unmaps it on free, so
    each forward pays page faults on its ~2 MB activations; raising the thresholds lets them be reused. Measured
    on csnet_l_x1 at 224 x 224, two threads, fast-jit: 19.4 ms median instead of 31.1 ms (benchmarks/RESULTS.md,
    run G; one thread: 28.1 vs 28.4 ms). Process-wide and permanent (the
    process keeps up to ``trim_threshold_mb`` of freed memory), so it is opt-in: call it once in a long-lived
    inference process. Returns False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold_mb) << 20) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, int(trim_threshold_mb) << 20) == 1 and ok
    if ok:
        logger.debug("glibc malloc: mmap threshold %d MB, trim threshold %d MB", mmap_threshold_mb, trim_threshold_mb)
    return ok


# ---------------------------------------------------------------------------------------------- TorchScript
def jit_fast(fast: FastCSNet, example: Optional[Tensor] = None) -> FastCSNet:
    """A copy of ``fast`` whose core is traced and frozen TorchScript (oneDNN weights prepacked on the CPU)."""
    if example is None:
        example = torch.zeros(1, fast.in_chans, 64, 64)
    device = next(iter(fast.core.buffers())).device
    with torch.no_grad():
        traced = torch.jit.trace(fast.core, fast.prepare(example.to(device)), check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
    return fast.with_core(frozen).eval()


# ------------------------------------------------------------------------------------------- torch.compile
class CompiledCSNet(FastCSNet):
    """A :class:`FastCSNet` whose core runs through ``torch.compile``; times its first call per input shape."""

    compile_seconds: dict[tuple[int, ...], float]

    def forward(self, x: Tensor) -> Tensor:
        key = tuple(x.shape)
        if key in self.compile_seconds:
            return super().forward(x)
        start = time.perf_counter()
        out = super().forward(x)
        if out.is_cuda:
            torch.cuda.synchronize(out.device)
        self.compile_seconds[key] = time.perf_counter() - start
        logger.info("torch.compile: first call at %s took %.1f s", key, self.compile_seconds[key])
        return out


def _plain_convs(core: nn.Module) -> nn.Module:
    """The fx core with direct ``torch.mkldnn_convolution`` calls turned back into ``torch.conv2d``
    (the same op; dynamo cannot trace the direct oneDNN call)."""
    if not isinstance(core, torch.fx.GraphModule):
        raise TypeError("torch.compile needs the torch.fx core of optimize_for_inference, not a traced one")
    graph = copy.deepcopy(core.graph)
    for node in graph.nodes:
        if node.op == "call_function" and node.target is torch.mkldnn_convolution:
            x, weight, bias, padding, stride, dilation, groups = node.args
            node.target = torch.conv2d
            node.args = (x, weight, bias, stride, padding, dilation, groups)
    return torch.fx.GraphModule(core, graph)


def compile_fast(fast: FastCSNet, mode: Optional[str] = None, dynamic: bool = False,
                 backend: str = "inductor") -> CompiledCSNet:
    """``torch.compile`` the fused core (inductor). Slow to compile: minutes on a small busy CPU.

    Build ``fast`` with ``cpu_kernels=False``: inductor then sees plain ops it can fuse, not the NHWC view
    tricks. On the 2-core reference CPU it is slower than ``fast-jit`` (csnet_l_x1, 224, one thread: 38.6 vs
    27.7 ms, after a 42 s first call; benchmarks/RESULTS.md run G).
    """
    compiled_core = torch.compile(_plain_convs(fast.core), mode=mode, dynamic=dynamic, fullgraph=True,
                                  backend=backend)
    out = CompiledCSNet(compiled_core, fast.pad_multiple, fast.in_chans, fast.dtype, fast.channels_last, fast.name,
                        fast.logits_stride)
    out.compile_seconds = {}
    return out.eval()


# -------------------------------------------------------------------------------------------- ONNX Runtime
def export_core_onnx(fast: FastCSNet, opset: int = 17) -> bytes:
    """The fused core as an in-memory ONNX model (float32; batch, height and width dynamic)."""
    core = fast.core
    if fast.dtype != torch.float32:
        raise ValueError("export the float32 fast path (ONNX Runtime on the CPU runs float32)")
    device = next(iter(core.buffers())).device
    example = torch.zeros(1, fast.in_chans, 2 * fast.pad_multiple, 2 * fast.pad_multiple, device=device)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(core, (example,), buffer, input_names=["image"], output_names=["logits"],
                          opset_version=opset, dynamo=False, dynamic_axes={"image": axes, "logits": axes})
    return buffer.getvalue()


class OrtCSNet:
    """The fused core in ONNX Runtime (CPU by default) behind the FastCSNet contract: torch in, torch out.

    Args:
        fast: a float32 :class:`FastCSNet` (NCHW).
        threads: intra-op threads (default 2: the reference machine's cores); inter-op is 1, sequential.
        providers: ONNX Runtime execution providers (default CPU).
        allow_spinning: let idle ORT threads spin (lowest latency on an idle machine; turn off on a busy one).
    """

    def __init__(self, fast: FastCSNet, threads: int = 2, providers: Optional[list[str]] = None,
                 allow_spinning: bool = True, optimization: str = "all") -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ImportError("the onnxruntime backend needs the onnx extra: pip install 'csnet[onnx]'") from error
        if fast.channels_last:
            raise ValueError("build the ONNX Runtime backend from an NCHW fast path (channels_last=False)")
        self.fast = fast
        self.model_bytes = export_core_onnx(fast)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
        options.graph_optimization_level = levels[optimization]
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.session = ort.InferenceSession(self.model_bytes, options,
                                            providers=providers or ["CPUExecutionProvider"])

    def __call__(self, x: Tensor) -> Tensor:
        self.fast.check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        padded = self.fast.prepare(x.detach().to("cpu", torch.float32))
        (logits,) = self.session.run(None, {"image": padded.contiguous().numpy()})
        return self.fast.finish(torch.from_numpy(logits), height, width).to(x.dtype)


# ---------------------------------------------------------------------------------------------------- OpenVINO
OPENVINO_PRECISIONS = {torch.float32: "f32", torch.bfloat16: "bf16"}


class OpenVinoCSNet:
    """The fused core compiled by OpenVINO's CPU plugin, behind the FastCSNet contract: torch in, torch out.

    OpenVINO runs every conv in oneDNN's blocked layouts with its bias, PReLU and the gOctConv's cross-scale
    add fused in as post-ops, so one ILBlock is a handful of kernels instead of a dozen ops. It wants the
    gOctConv links unmerged (a merged conv's outputs would be split by a slow reference kernel), its bilinear
    upsamplings as depthwise transposed convs (its conv kernels beat its Interpolate: 1.0-1.4 vs 2.5-2.8 ms
    per forward) and the head's one-channel upsampling left out (a 1-of-16-channels blocked upsample costs
    0.3 ms; NumPy does it here): :func:`openvino_fast_path`. Measured in ``benchmarks/RESULTS.md``.

    Images run one at a time, and each image size is compiled once (0.2-0.7 s) with static shapes, which
    OpenVINO plans better than dynamic ones; the ``max_shapes`` most recent sizes are kept.

    Args:
        fast: a float32 NCHW :class:`FastCSNet`.
        threads: CPU threads for inference (default 2: the reference machine's cores).
        precision: ``torch.float32`` (default; OpenVINO would otherwise pick bf16 on CPUs that have it) or
            ``torch.bfloat16`` (faster where the CPU has AVX512-BF16/AMX, within ~1e-2 on probabilities).
        model_bytes: ``fast``'s core already exported by :func:`export_core_onnx` (skips the 0.4 s export).
        cache_dir: where OpenVINO keeps compiled models between processes (``None``: compile every time).
    """

    def __init__(self, fast: FastCSNet, threads: int = 2, precision: torch.dtype = torch.float32,
                 max_shapes: int = 4, model_bytes: Optional[bytes] = None,
                 cache_dir: Optional[Union[str, os.PathLike]] = None) -> None:
        try:
            import openvino
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ImportError("the openvino backend needs the openvino extra: pip install 'csnet[openvino]'") from error
        if fast.channels_last or fast.dtype != torch.float32:
            raise ValueError("build the OpenVINO backend from a float32 NCHW fast path (see openvino_fast_path)")
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"OpenVINO runs float32 or bfloat16 here, not {precision}")
        self.fast = fast
        self.model_bytes = model_bytes if model_bytes is not None else export_core_onnx(fast)
        self.runtime = openvino.Core()
        if cache_dir is not None:
            self.runtime.set_property({"CACHE_DIR": str(cache_dir)})
        self.config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": int(threads),
                       "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision]}
        self.max_shapes = max_shapes
        self._requests: OrderedDict[tuple[int, ...], object] = OrderedDict()

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        """The padded input shapes compiled and kept, least recently used first."""
        return list(self._requests)

    def request(self, shape: tuple[int, ...]):
        """OpenVINO's infer request for a padded ``B x 3 x H x W`` input, compiled on first use."""
        shape = tuple(int(v) for v in shape)
        if shape in self._requests:
            self._requests.move_to_end(shape)
            return self._requests[shape]
        start = time.perf_counter()
        model = self.runtime.read_model(self.model_bytes)
        model.reshape(list(shape))
        request = self.runtime.compile_model(model, "CPU", self.config).create_infer_request()
        logger.debug("OpenVINO: compiled for %s in %.2f s", shape, time.perf_counter() - start)
        self._requests[shape] = request
        while len(self._requests) > self.max_shapes:
            self._requests.popitem(last=False)
        return request

    def __call__(self, x: Tensor) -> Tensor:
        # NumPy around the call, not torch: torch's OpenMP threads spin for a while after every parallel op and
        # take the cores from OpenVINO's threads (csnet_l_x1: 19-33 ms instead of 15 with two torch threads).
        self.fast.check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        images = x.detach().to("cpu", torch.float32).numpy()
        pad_h, pad_w = self.fast.padding(height, width)
        if pad_h or pad_w:
            images = np.pad(images, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
        images = np.ascontiguousarray(images)
        # One image per call: OpenVINO is no faster per image on a batch (csnet_pascal: 35.0 images/s at batch 8,
        # 37.6 at batch 1; benchmarks/RESULTS.md run L), and one compiled shape per size serves every batch
        # size the service's micro-batcher or a last partial batch brings.
        request = self.request((1, *images.shape[1:]))
        logits = np.concatenate([request.infer({0: images[i:i + 1]}, share_inputs=True)[0]
                                 for i in range(images.shape[0])])
        if self.fast.logits_stride != 1:
            logits = upsample_bilinear(logits, self.fast.logits_stride)
        return torch.from_numpy(np.ascontiguousarray(logits[..., :height, :width])).to(x.dtype)


def openvino_fast_path(model: nn.Module) -> FastCSNet:
    """The fast-path variant :class:`OpenVinoCSNet` runs best (see there)."""
    from csnet.infer.fastpath import optimize_for_inference

    return optimize_for_inference(model, channels_last=False, device="cpu", merge_links=False,
                                  upsample_logits=False, upsample_by_deconv=True)


# ---------------------------------------------------------------------------------------------- CUDA graphs
class CudaGraphCSNet:
    """uint8 NHWC images -> logits, captured as one CUDA graph per input shape (CUDA only).

    ``__call__(images)`` takes ``B x H x W x 3`` uint8 on the device (H, W multiples of the pad multiple),
    copies them into the graph's static input, replays the graph (normalization + model) and returns the
    static logits tensor (overwritten by the next call: clone it to keep it).
    """

    def __init__(self, fast: nn.Module, dtype: torch.dtype, channels_last: bool, warmup: int = 3) -> None:
        self.fast, self.dtype, self.channels_last, self.warmup = fast, dtype, channels_last, warmup
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}

    def _step(self, images: Tensor) -> Tensor:
        return self.fast(normalize_uint8(images, self.dtype, self.channels_last))

    def capture(self, images: Tensor) -> None:
        key = tuple(images.shape)
        _mean_inv_std(images.device)  # constants exist before capture
        static_in = images.clone()
        stream = torch.cuda.Stream(images.device)
        stream.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(self.warmup):
                self._step(static_in)
        torch.cuda.current_stream(images.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self._step(static_in)
        self._graphs[key] = (graph, static_in, static_out)

    def __call__(self, images: Tensor) -> Tensor:
        key = tuple(images.shape)
        if key not in self._graphs:
            self.capture(images)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(images, non_blocking=True)
        graph.replay()
        return static_out
