"""The one ONNX exporter: the fused CSNet (:mod:`csnet.infer.fused`) as an ONNX graph.

``csnet export``, the ``onnxruntime`` runtime and the ``openvino`` runtime all export through
:func:`export_onnx_bytes`, so what a user's ``.onnx`` file runs is what ``csnet benchmark --runtime
onnxruntime`` measures. Two forms, named by the fused variant they start from:

* ``"onnx"`` (``csnet export``, ONNX Runtime): self-contained. It takes what the PyTorch model takes,
  ImageNet-normalized ``image`` (``B x 3 x H x W`` float32, any ``H, W``), and returns ``logits``
  (``B x 1 x H x W``). The fused core needs ``H, W`` to be a multiple of 16; the graph pads unconditionally
  (a zero-width pad is a no-op), computing the pad from the input's shape, and crops back.
* ``"openvino"``: the core alone (padded input, logits at the head's stride). The runtime pads and upsamples in
  NumPy around it and compiles one static shape per size, which OpenVINO plans better than dynamic ones.
  ``"openvino-interpolate"`` is the same with its upsamplings as Interpolate ops (the bfloat16 preset's form).

The TorchScript-based exporter (``dynamo=False``) is used: it keeps the shape arithmetic symbolic and needs no
extra packages.
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csnet.io.atomic import atomic_path

__all__ = ["DEFAULT_OPSET", "EXPORT_VARIANTS", "PaddedCore", "export_onnx", "export_onnx_bytes", "check_onnx"]

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
EXPORT_VARIANTS = ("onnx", "openvino", "openvino-interpolate")


class PaddedCore(nn.Module):
    """The fused core with padding to its multiple and the crop back inside the traced graph.

    ``forward(x)``: ``B x 3 x H x W`` -> ``B x 1 x H x W`` logits, identical to the fused network's.
    """

    def __init__(self, core: nn.Module, config) -> None:
        super().__init__()
        self.core = core
        self.config = config

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        pad_h, pad_w = self.config.padding(height, width)  # symbolic in the traced graph
        padded = F.pad(x, [0, pad_w, 0, pad_h], mode="replicate")
        return self.core(padded)[:, :, :height, :width]


def export_onnx_bytes(model: nn.Module, *, variant: str = "onnx", opset: int = DEFAULT_OPSET) -> bytes:
    """The ONNX model (serialized) of ``model``'s fused network, with dynamic batch, height and width.

    Args:
        model: a :class:`~csnet.models.CSNet` (not modified; fused on the CPU in float32).
        variant: ``"onnx"`` (self-contained, any size), ``"openvino"`` or ``"openvino-interpolate"`` (the core
            alone); see the module docstring.
        opset: ONNX opset.

    Raises:
        TypeError: ``model`` is not a CSNet (only CSNet's graph can be fused).
        ImportError: the ``onnx`` package is missing.
    """
    from csnet.infer.fused import fuse

    if variant not in EXPORT_VARIANTS:
        raise ValueError(f"unknown export variant {variant!r}; choose from {', '.join(EXPORT_VARIANTS)}")
    try:
        import onnx  # noqa: F401  (torch.onnx needs it)
    except ImportError as error:
        raise ImportError("ONNX export needs the onnx package: pip install 'csnet[onnx]'") from error
    fused = fuse(model, variant, device="cpu")
    graph: nn.Module = PaddedCore(fused.core, model.config) if variant == "onnx" else fused.core
    side = 2 * fused.pad_multiple  # any multiple works: every size is symbolic in the graph
    example = torch.zeros(1, fused.in_chans, side, side)
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every shape-to-int conversion; the dynamic-shape tests are what matter.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.eval(), (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    return buffer.getvalue()


def check_onnx(data: Union[bytes, str, os.PathLike]) -> None:
    """Run ``onnx.checker`` (full check, with shape inference) on a model file or its bytes."""
    import onnx

    proto = onnx.load_from_string(data) if isinstance(data, bytes) else onnx.load(str(data))
    onnx.checker.check_model(proto, full_check=True)


def export_onnx(model: nn.Module, path: Union[str, os.PathLike], *, opset: int = DEFAULT_OPSET,
                check: bool = True) -> Path:
    """Export ``model``'s fused network (the ``"onnx"`` form) to the file ``path`` (written atomically)."""
    data = export_onnx_bytes(model, opset=opset)
    if check:
        check_onnx(data)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    log.debug("wrote %s (%d bytes)", path, len(data))
    return path
