"""Export a CSNet to ONNX with a dynamic batch size, height and width.

The graph takes what the PyTorch model takes, ImageNet-normalized ``image`` (``B x 3 x H x W``
float32, any ``H, W``), and returns ``logits`` (``B x 1 x H x W``). CSNet needs ``H, W`` to be a
multiple of 16 (:attr:`ChannelConfig.pad_multiple`); the model pads inside ``forward`` with a
Python ``if`` that tracing would freeze at the example's size, so the exported graph pads
unconditionally instead (a zero-width pad is a no-op), computing the pad from the input's shape.

The TorchScript-based exporter (``dynamo=False``) is used: it keeps the shape arithmetic of the
gOctConv resizes symbolic and needs no extra packages.
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

__all__ = ["DEFAULT_OPSET", "PaddedForExport", "export_onnx", "export_onnx_bytes", "check_onnx"]

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class PaddedForExport(nn.Module):
    """Wraps a CSNet so that padding to the model's multiple is part of the traced graph.

    ``forward(x)``: ``B x 3 x H x W`` -> ``B x 1 x H x W`` logits, identical to ``model(x)``.
    """

    def __init__(self, model: nn.Module, multiple: int | None = None) -> None:
        super().__init__()
        self.model = model
        config = getattr(model, "config", None)
        self.multiple = int(multiple or getattr(config, "pad_multiple", 16))

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        m = self.multiple
        pad_h = (m - height % m) % m
        pad_w = (m - width % m) % m
        padded = F.pad(x, [0, pad_w, 0, pad_h], mode="replicate")
        logits = self.model(padded)  # a multiple of m: the model's own padding branch is not taken
        return logits[:, :, :height, :width]


def export_onnx_bytes(model: nn.Module, *, opset: int = DEFAULT_OPSET, example_size: tuple[int, int] = (64, 64)) -> bytes:
    """The ONNX model (serialized) of ``model``, with dynamic batch, height and width.

    ``model`` is exported on the CPU in eval mode; the caller's model is not modified. The example
    traced is small (any multiple of the pad multiple works: every size is symbolic in the graph).
    """
    import copy

    try:
        import onnx  # noqa: F401  (torch.onnx needs it)
    except ImportError as error:
        raise ImportError("ONNX export needs the onnx package: pip install 'csnet[onnx]'") from error
    module = copy.deepcopy(model).to("cpu").float().eval()
    wrapper = PaddedForExport(module).eval()
    example = torch.zeros(1, 3, *example_size)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every shape-to-int conversion; the dynamic-shape test is what matters.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (example,), buffer,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                          OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}},
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    return buffer.getvalue()


def check_onnx(data: Union[bytes, str, os.PathLike]) -> None:
    """Run ``onnx.checker`` (full check, with shape inference) on a model file or its bytes."""
    import onnx

    proto = onnx.load_from_string(data) if isinstance(data, bytes) else onnx.load(str(data))
    onnx.checker.check_model(proto, full_check=True)


def export_onnx(model: nn.Module, path: Union[str, os.PathLike], *, opset: int = DEFAULT_OPSET,
                check: bool = True) -> Path:
    """Export ``model`` to the ONNX file ``path`` (written atomically); returns the path."""
    data = export_onnx_bytes(model, opset=opset)
    if check:
        check_onnx(data)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    log.debug("wrote %s (%d bytes)", path, len(data))
    return path
