"""The ``openvino-int8`` runtime: the ``openvino`` runtime's graph quantized to int8 by NNCF (``csnet[int8]``).

Opt-in (never chosen by ``auto``): post-training quantization changes the logits, so its scores are measured
rather than assumed (``benchmarks/RESULTS.md``, "int8": the held-out max F of csnet_pascal and the latency beside
float32). NNCF's ``quantize`` collects activation ranges on calibration images, which must be training images,
never the images the model is scored on. They are named by a list file in ``$CSNET_CALIBRATION`` (one image path
per line, an optional mask path after it as in ``csnet evaluate --data`` lists); without it the runtime is
unavailable. Each image is preprocessed as the predictor does at :data:`CALIBRATION_SIZE`, and the quantized
model is then reshaped per input size like the float32 one.

Calibration takes minutes on a small CPU, so with a cache folder the quantized model is kept as
``<cache_dir>/openvino-int8/<cache key>.xml`` (keyed by the model, the calibration list's bytes, the preset and
the NNCF and OpenVINO versions).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csnet.infer.runtimes import RuntimeUnavailable
from csnet.infer.runtimes.openvino import OpenVinoPreset, OpenVinoRuntime

__all__ = ["OpenVinoInt8Runtime", "Int8Preset", "CALIBRATION_ENV", "CALIBRATION_SIZE"]

log = logging.getLogger(__name__)

CALIBRATION_ENV = "CSNET_CALIBRATION"
CALIBRATION_SIZE = 224  #: the test protocol's input side (the size the bundled weights run at)


@dataclass(frozen=True)
class Int8Preset(OpenVinoPreset):
    #: calibration images used (NNCF's subset_size); the first ones of the list, in its order
    subset_size: int = 150
    #: NNCF's QuantizationPreset: "performance" (symmetric activations) or "mixed" (asymmetric, for PReLU's
    #: negative side)
    quantization: str = "performance"


class OpenVinoInt8Runtime(OpenVinoRuntime):
    """Runs a CSNet quantized to int8 through OpenVINO on the CPU; calibrated on ``$CSNET_CALIBRATION``."""

    name = "openvino-int8"
    package = "nncf"
    extra = "int8"
    presets = {"int8": Int8Preset(), "mixed": Int8Preset(quantization="mixed")}
    default_preset = "int8"

    @classmethod
    def available(cls) -> bool:
        return all(importlib.util.find_spec(name) is not None for name in ("nncf", "openvino"))

    def setup(self, model) -> None:
        list_file = os.environ.get(CALIBRATION_ENV)
        if not list_file:
            raise RuntimeUnavailable(f"the {self.name} runtime calibrates on training images: set "
                                     f"{CALIBRATION_ENV} to a file listing them, one per line")
        self.calibration_list = Path(list_file)
        try:
            self.calibration_bytes = self.calibration_list.read_bytes()
        except OSError as error:
            raise RuntimeUnavailable(f"{self.calibration_list}: cannot read the calibration list "
                                     f"({error.strerror or error})") from None
        super().setup(model)
        self.quantized = self._quantized(model)

    def _quantized(self, model):
        """The int8 ``openvino.Model`` (through the cache when there is one)."""
        import nncf
        import openvino

        from csnet.infer.cache import cache_key

        if self.cache_dir is not None:
            digest = hashlib.sha256(self.calibration_bytes).hexdigest()[:16]
            key = cache_key(model, "openvino-int8", f"calibration={digest}", repr(self.preset),
                            f"size={CALIBRATION_SIZE}", f"nncf={nncf.__version__}", f"openvino={openvino.__version__}")
            path = self.cache_dir / "openvino-int8" / f"{key}.xml"
            if path.is_file() and path.with_suffix(".bin").is_file():
                return openvino.Core().read_model(str(path))
        quantized = self._quantize()
        if self.cache_dir is not None:
            self._save(quantized, path)
        return quantized

    def _quantize(self):
        import nncf
        import openvino

        network = openvino.Core().read_model(self.model_bytes)
        network.reshape([1, 3, CALIBRATION_SIZE, CALIBRATION_SIZE])
        images = self._calibration_images()
        preset = {"performance": nncf.QuantizationPreset.PERFORMANCE,
                  "mixed": nncf.QuantizationPreset.MIXED}[self.preset.quantization]
        log.info("%s: calibrating on %d images from %s", self.name, len(images), self.calibration_list)
        return nncf.quantize(network, nncf.Dataset(images), preset=preset, subset_size=len(images))

    def _calibration_images(self) -> list[np.ndarray]:
        from csnet.infer.predictor import preprocess_image
        from csnet.io.images import ImageLoadError, load_image

        lines = [line.split() for line in self.calibration_bytes.decode("utf-8", "replace").splitlines()]
        paths = [Path(words[0]) for words in lines if words][:self.preset.subset_size]
        if not paths:
            raise RuntimeUnavailable(f"{self.calibration_list}: the calibration list names no images")
        images = []
        for path in paths:
            try:
                images.append(preprocess_image(load_image(path), CALIBRATION_SIZE)[None])
            except ImageLoadError as error:
                raise RuntimeUnavailable(f"{self.calibration_list}: {error}") from None
        return images

    @staticmethod
    def _save(quantized, path: Path) -> None:
        """Writes the IR pair beside its final name, then renames (a reader never sees half a model)."""
        import openvino

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
                staged = Path(scratch) / path.name
                openvino.save_model(quantized, str(staged))
                os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))  # weights first: .xml marks done
                os.replace(staged, path)
        except OSError as error:  # an unwritable cache is not an error: the model runs from memory
            log.debug("cannot write the cache %s (%s)", path, error)

    def _network(self, shape: tuple[int, ...]):
        network = self.quantized.clone()
        network.reshape(list(shape))
        return network
