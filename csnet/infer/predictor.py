"""``csnet.Predictor``: saliency masks and cutouts for paths, PIL images and arrays, one or many at a time.

>>> import csnet
>>> predictor = csnet.Predictor("model.safetensors")       # doctest: +SKIP
>>> mask = predictor.predict("photo.jpg")                   # doctest: +SKIP  PIL "L" image, photo's size
>>> rgba = predictor.cutout(pil_image)                      # doctest: +SKIP  PIL "RGBA" image

Every image goes through the test protocol of SPEC 4 (:mod:`csnet.infer.protocol`): scaled to
``size x size`` with non-antialiased bilinear interpolation, ImageNet-normalized, run through the
network (:mod:`csnet.infer.runtimes`), passed through a sigmoid and scaled back to its own size.
Input size and normalization come from the weights' ``WeightInfo`` when the model is bundled. The resizes
compute exactly what :func:`~csnet.infer.protocol.preprocess` / :func:`~csnet.infer.protocol.postprocess`
compute (tested), but gather only the source pixels the bilinear weights touch and write the
full-size map in row blocks, so a 100-megapixel photo costs its decoded bytes plus a few MB
instead of gigabytes of float64 copies.

A predictor is safe to share between threads (a server's request handlers): the runtime call is
serialized by a lock, everything else (decoding, resizing, composing) runs in the callers' threads.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from csnet.infer.compose import cutout as _cutout
from csnet.infer.protocol import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE
from csnet.infer.resize import resize_image, resized_row_blocks
from csnet.infer.runtimes import Runtime, canonical_name, create_runtime, resolve_device
from csnet.io.images import DEFAULT_MAX_PIXELS, load_image

__all__ = ["Predictor", "ModelSource", "ImageInput", "resolve_model", "preprocess_image", "postprocess_logits"]

log = logging.getLogger(__name__)

ModelSource = Union[None, str, os.PathLike, nn.Module]
ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


# ----------------------------------------------------------------------------------------------
# The test protocol's resizes, memory-light (csnet.infer.resize: only the pixels the taps read).

def _as_size(size: Union[int, Sequence[int]]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        height = width = int(size)
    else:
        height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return height, width


def preprocess_image(image: np.ndarray, size: Union[int, Sequence[int]] = INPUT_SIZE, *,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """One image -> the network input of the test protocol.

    Args:
        image: ``H x W x 3`` RGB, uint8 (0-255) or float (0-1).
        size: side (or ``(height, width)``) of the network input.
        mean, std: the normalization the weights were trained with (their
            :class:`~csnet.models.weights.WeightInfo`; ImageNet's by default).

    Returns:
        float32 ``3 x size x size``, normalized; equal to ``protocol.preprocess(image, size)[0]`` for uint8
        images and ImageNet's mean/std.
    """
    out_h, out_w = _as_size(size)
    resized = resize_image(image, out_h, out_w, divisor=255.0 if image.dtype == np.uint8 else 1.0)
    normalized = (resized - np.asarray(mean, dtype=np.float64)) / np.asarray(std, dtype=np.float64)
    return np.ascontiguousarray(normalized.transpose(2, 0, 1), dtype=np.float32)


def postprocess_logits(logits: np.ndarray, height: int, width: int, *, dtype: Any = np.uint8,
                       threshold: Optional[float] = None) -> np.ndarray:
    """Logits ``h x w`` of one image -> its ``height x width`` saliency map.

    Args:
        logits: ``h x w`` (any float dtype).
        height, width: the image's size.
        dtype: ``np.uint8`` gives ``round(255 * p)`` (as ``protocol.postprocess``); a float dtype
            gives ``p`` in [0, 1].
        threshold: if given, the map is binarized at ``p >= threshold`` (0/255 or 0.0/1.0).
    """
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):  # exp overflows to inf for logits below -709: p = 0, as it should be
        prob = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    out = np.empty((height, width), dtype=dtype)
    top = 255.0 if dtype == np.uint8 else 1.0
    for rows, block in resized_row_blocks(prob, height, width):
        if threshold is not None:
            out[rows] = np.where(block >= threshold, top, 0.0)
        elif dtype == np.uint8:
            out[rows] = np.clip(np.rint(block * 255.0), 0, 255)
        else:
            out[rows] = block
    return out


# ----------------------------------------------------------------------------------------------
# Models and runtimes.

def resolve_model(model: ModelSource) -> tuple[Union[nn.Module, str], str]:
    """``(module or path of an .onnx file, display name)`` for what a user passed as ``model``.

    ``None`` is the bundled :data:`~csnet.models.DEFAULT_MODEL`; a string is an ``.onnx`` file, a
    ``.safetensors`` model file or a registered name with bundled weights. A registered name without
    bundled weights is an error (random weights make meaningless masks): create the module yourself
    (``csnet.create_model(name)``) if that is what you want.

    Raises:
        csnet.models.ModelFileError: the file or name cannot be used (one-line message).
    """
    from csnet.models import DEFAULT_MODEL, ModelFileError, load_model
    from csnet.models.weights import PRETRAINED

    if isinstance(model, nn.Module):
        config = getattr(model, "config", None)
        return model, str(getattr(config, "name", "") or type(model).__name__)
    if model is None:
        if DEFAULT_MODEL not in PRETRAINED:
            raise ModelFileError(
                f"the bundled model {DEFAULT_MODEL!r} is not in this csnet build yet; pass a model "
                "file (model='model.safetensors' / --model FILE) or a .onnx export")
        return load_model(DEFAULT_MODEL), DEFAULT_MODEL
    spec = os.fspath(model)
    if spec.lower().endswith(".onnx"):
        if not os.path.isfile(spec):
            raise ModelFileError(f"{spec}: no such file")
        return spec, os.path.basename(spec)
    module = load_model(spec)
    name = os.path.basename(spec) if os.path.isfile(spec) else spec
    return module, name


def _weight_info(model: ModelSource):
    """The :class:`~csnet.models.weights.WeightInfo` of a bundled model named by ``model`` (else ``None``)."""
    from csnet.models import DEFAULT_MODEL
    from csnet.models.weights import PRETRAINED

    if model is None:
        return PRETRAINED.get(DEFAULT_MODEL)
    if isinstance(model, (str, os.PathLike)) and not os.path.isfile(model):
        return PRETRAINED.get(os.fspath(model))
    return None


@dataclass
class _Loaded:
    array: np.ndarray  # H x W x 3, uint8 or float32 in [0, 1]
    kind: str  # "pil" (give PIL back), "uint8" or "float" (give arrays back)


class Predictor:
    """Saliency masks and cutouts with one loaded model.

    Args:
        model: ``None`` (the bundled model), a registered name with bundled weights, a
            ``.safetensors`` model file, an ``.onnx`` export, or an ``nn.Module`` (e.g.
            ``csnet.create_model("csnet_l_x1")`` with your own weights).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        size: network input side (or ``(height, width)``); ``None``: the input size the bundled weights were
            trained at (their ``WeightInfo``), else 224, the training and test resolution.
        runtime: ``"auto"`` or a name of :data:`csnet.infer.runtimes.RUNTIMES` (``eager``, ``torchscript``,
            ``compile``, ``onnxruntime``, ``openvino``, ``cuda-graph``); auto tries
            :data:`~csnet.infer.runtimes.AUTO_ORDER`.
        preset: the runtime's preset (``None``: its default; see each runtime's ``presets``).
        batch_size: images per forward pass when given a list.
        threads: threads of the runtimes with their own thread pool (OpenVINO, ONNX Runtime; ``None``: torch's
            thread count for OpenVINO, one per core for ONNX Runtime).
        cache_dir: where exports and compiled models of ``.safetensors``/module models are kept (``None``: the
            user cache, ``$CSNET_CACHE`` or ``~/.cache/csnet``; ``False``: build in memory each time).
        max_pixels: images above this many pixels are refused (decompression bombs).
        backend: the earlier name of ``runtime`` (deprecated; its old values are accepted too).

    Raises:
        csnet.models.ModelFileError: ``model`` cannot be loaded.
        csnet.infer.runtimes.RuntimeUnavailable: the runtime or device is not available.
        csnet.infer.runtimes.RuntimeChoiceError: an unknown runtime or preset.
    """

    def __init__(self, model: ModelSource = None, *, device: str = "auto",
                 size: Union[int, Sequence[int], None] = None, runtime: str = "auto", preset: Optional[str] = None,
                 batch_size: int = 8, threads: Optional[int] = None,
                 cache_dir: Union[str, os.PathLike, None, bool] = None,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, backend: Optional[str] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if backend is not None:
            log.warning("Predictor(backend=...) is deprecated; use runtime=")
            runtime = backend
        info = _weight_info(model)
        self.size = _as_size(size if size is not None else (info.input_size if info else INPUT_SIZE))
        self.mean = tuple(info.mean) if info else IMAGENET_MEAN
        self.std = tuple(info.std) if info else IMAGENET_STD
        self.batch_size = int(batch_size)
        self.max_pixels = max_pixels
        self.device = resolve_device(device)
        source, self.name = resolve_model(model)
        self.module: Optional[nn.Module] = source if isinstance(source, nn.Module) else None
        if cache_dir is None or cache_dir is True:
            from csnet.infer.cache import default_cache_dir

            cache_dir = default_cache_dir()
        self.runtime: Runtime = create_runtime(canonical_name(runtime), source, device=self.device, threads=threads,
                                               cache_dir=None if cache_dir is False else cache_dir, preset=preset)
        self.runtime_name = self.runtime.name
        self._lock = threading.Lock()
        log.debug("predictor %s on %s/%s at %s", self.name, self.runtime_name, self.device, self.size)

    @property
    def backend(self) -> Runtime:
        """The earlier name of :attr:`runtime`."""
        return self.runtime

    @property
    def backend_name(self) -> str:
        """The earlier name of :attr:`runtime_name`."""
        return self.runtime_name

    # -- the three stages (also used by the CLI's pipeline and the service's micro-batcher) -----

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` uint8 / float image -> ``3 x S x S`` float32 network input."""
        return preprocess_image(image, self.size, mean=self.mean, std=self.std)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """``B x 3 x S x S`` inputs -> ``B x S x S`` float32 logits (one runtime call; thread-safe)."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"infer expects B x 3 x H x W, got {batch.shape}")
        with self._lock:
            logits = self.runtime(batch)
        return np.asarray(logits, dtype=np.float32).reshape(batch.shape[0], *batch.shape[2:])

    def postprocess(self, logits: np.ndarray, height: int, width: int, *, dtype: Any = np.uint8,
                    threshold: Optional[float] = None) -> np.ndarray:
        """Logits ``S x S`` -> ``height x width`` map (see :func:`postprocess_logits`)."""
        return postprocess_logits(logits, height, width, dtype=dtype, threshold=threshold)

    # -- the user-facing API ---------------------------------------------------------------------

    def load(self, x: ImageInput) -> np.ndarray:
        """What the predictor sees of ``x``: ``H x W x 3`` uint8 RGB (float32 for float arrays).

        Paths and bytes are decoded with their EXIF orientation applied; PIL images and arrays are
        taken as they are (their pixel grid is the one the mask must fit).
        """
        return self._load(x).array

    def predict(self, x: Union[ImageInput, Sequence[ImageInput]], *, threshold: Optional[float] = None,
                refine: Optional[str] = None):
        """Saliency mask(s) at each image's own size.

        Args:
            x: a path, encoded bytes, a PIL image, an ``H x W [x 3|4]`` array (uint8, or float in
                [0, 1]), or a list/tuple of those (run in batches of ``batch_size``).
            threshold: binarize at this probability (masks become 0/255, or 0/1 for float).
            refine: ``"guided"`` or ``"matting"`` to snap the mask to the image's edges
                (:mod:`csnet.infer.refine`, the ``refine`` extra); applied after ``threshold``.

        Returns:
            The same kind as given: PIL ``"L"`` image for paths, bytes and PIL images; ``H x W``
            uint8 for uint8 arrays; ``H x W`` float32 in [0, 1] for float arrays; a list for a list.

        Raises:
            csnet.io.images.ImageLoadError: a path or bytes that cannot be decoded.
            TypeError, ValueError: an input of an unsupported type, dtype or shape.
        """
        return self._run(x, "mask", threshold, refine)

    def cutout(self, x: Union[ImageInput, Sequence[ImageInput]], *, threshold: Optional[float] = None,
               refine: Optional[str] = None):
        """The image with the saliency mask as alpha: PIL ``"RGBA"``, or ``H x W x 4`` arrays
        (uint8, or float32 for float input); a list for a list.

        With ``refine`` the alpha is refined (see :meth:`predict`) and the colours of semi-transparent pixels
        are the object's own (:func:`~csnet.infer.refine.estimate_foreground`), so no background shows at the
        edges."""
        return self._run(x, "cutout", threshold, refine)

    def describe(self) -> dict[str, Any]:
        """Name, runtime, device, input size and parameter count (for logs and ``/v1/models``; ``backend`` is
        the runtime's name too, for clients of earlier versions)."""
        params = None if self.module is None else sum(p.numel() for p in self.module.parameters())
        return {"name": self.name, "runtime": self.runtime_name, "backend": self.runtime_name,
                "preset": self.runtime.preset_name, "device": self.device, "input_size": list(self.size),
                "params": params}

    def __repr__(self) -> str:
        return (f"Predictor(model={self.name!r}, runtime={self.runtime_name!r}, device={self.device!r}, "
                f"size={self.size})")

    # -- internals -------------------------------------------------------------------------------

    def _run(self, x, output: str, threshold: Optional[float], refine: Optional[str] = None):
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if refine not in (None, "none", "guided", "matting"):
            raise ValueError(f"refine must be None, 'guided' or 'matting', got {refine!r}")
        refine = None if refine == "none" else refine
        many = isinstance(x, (list, tuple))
        items = list(x) if many else [x]
        results = []
        for start in range(0, len(items), self.batch_size):
            loaded = [self._load(item) for item in items[start:start + self.batch_size]]
            logits = self.infer(np.stack([self.preprocess(item.array) for item in loaded]))
            for item, item_logits in zip(loaded, logits):
                results.append(self._finish(item, item_logits, output, threshold, refine))
        return results if many else results[0]

    def _finish(self, item: _Loaded, logits: np.ndarray, output: str, threshold: Optional[float],
                refine: Optional[str] = None):
        height, width = item.array.shape[:2]
        as_float = item.kind == "float"
        if refine is not None:
            return self._finish_refined(item, logits, output, threshold, refine)
        mask = self.postprocess(logits, height, width, dtype=np.float32 if as_float else np.uint8,
                                threshold=threshold)
        if output == "mask":
            return Image.fromarray(mask, mode="L") if item.kind == "pil" else mask
        if as_float:
            return np.concatenate([item.array, mask[:, :, None]], axis=2)
        rgba = _cutout(item.array, mask)
        return Image.fromarray(rgba, mode="RGBA") if item.kind == "pil" else rgba

    def _finish_refined(self, item: _Loaded, logits: np.ndarray, output: str, threshold: Optional[float],
                        refine: str):
        from csnet.infer.refine import estimate_foreground, refine_mask

        as_float = item.kind == "float"
        image = np.clip(np.rint(item.array * 255.0), 0, 255).astype(np.uint8) if as_float else item.array
        mask = refine_mask(image, self.postprocess(logits, *image.shape[:2], threshold=threshold), refine)
        if output == "mask":
            if as_float:
                return mask.astype(np.float32) / 255.0
            return Image.fromarray(mask, mode="L") if item.kind == "pil" else mask
        rgb = estimate_foreground(image, mask)
        if as_float:
            return np.concatenate([rgb, mask[:, :, None]], axis=2).astype(np.float32) / 255.0
        rgba = _cutout(rgb, mask)
        return Image.fromarray(rgba, mode="RGBA") if item.kind == "pil" else rgba

    def _load(self, x: ImageInput) -> _Loaded:
        if isinstance(x, np.ndarray):
            return _Loaded(*_array_to_rgb(x))
        if isinstance(x, Image.Image):
            return _Loaded(load_image(x, max_pixels=self.max_pixels, exif=False), "pil")
        if isinstance(x, (str, os.PathLike, bytes, bytearray, memoryview)):
            return _Loaded(load_image(x, max_pixels=self.max_pixels), "pil")
        if isinstance(x, torch.Tensor):
            raise TypeError("Predictor takes images (path, PIL, numpy); for tensors call the model itself")
        raise TypeError(f"cannot predict on a {type(x).__name__}: give a path, bytes, a PIL image or a numpy array")


def _array_to_rgb(array: np.ndarray) -> tuple[np.ndarray, str]:
    """``H x W``, ``H x W x 1|3|4`` uint8 or float -> (``H x W x 3`` uint8 / float32, kind)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image array must be H x W, H x W x 1, H x W x 3 or H x W x 4, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]  # alpha is dropped, as load_image does for files
    if array.dtype == np.uint8:
        return array, "uint8"
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(np.nan_to_num(array.astype(np.float32, copy=False)), 0.0, 1.0), "float"
    raise ValueError(f"image array must be uint8 (0-255) or float (0-1), got {array.dtype}")


