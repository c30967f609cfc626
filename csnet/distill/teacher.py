"""A teacher: any ONNX saliency model, run by ONNX Runtime under the input protocol its JSON card declares.

The card is a small JSON file beside the model (``teacher.onnx`` -> ``teacher.json``)::

    {"name": "u2netp", "licence": "Apache-2.0",
     "input": {"size": [320, 320], "scale": "max", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
     "output": {"index": 0, "probability": true}}

``scale`` is ``"max"`` (divide the RGB image by its own maximum, as U2-Net's code does), ``"255"`` or a number;
``output.probability`` says whether the graph already applies the sigmoid. Cards written as prose (the
``scale`` and ``output`` fields as sentences, like ``../shared/weights/teachers/u2netp.json``) are read by the
keywords they must contain ("maximum", "probability"); a card that says neither clearly is an error rather
than a guess, because a wrong protocol gives plausible-looking but wrong soft labels.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from csnet.infer.resize import resize_image

#: Runtimes a teacher runs in; ``auto`` takes OpenVINO when installed (it runs U2-Net-p in well under half
#: ONNX Runtime's time on a small CPU, benchmarks/RESULTS.md), else ONNX Runtime. Same graph, same maps.
TEACHER_RUNTIMES = ("auto", "openvino", "onnxruntime")

__all__ = ["TEACHER_RUNTIMES", "TeacherError", "TeacherProtocol", "OnnxTeacher"]


class TeacherError(ValueError):
    """A teacher model or card that cannot be used (one line naming the file and the problem)."""


@dataclass(frozen=True)
class TeacherProtocol:
    """How a teacher wants its input and what it returns.

    Attributes:
        name: the teacher's name (goes into the student's model card).
        licence: the teacher's licence (goes into the student's model card).
        size: ``(height, width)`` of the teacher's input.
        scale: ``"max"`` (RGB divided by the image's maximum) or a divisor such as 255.
        mean, std: per-channel normalization after scaling.
        output_index: which graph output is the saliency map.
        probability: the output is already in [0, 1] (else a sigmoid is applied).
        input_name: the graph input (``None``: the first).
    """

    name: str
    licence: str
    size: tuple[int, int]
    scale: Union[str, float]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_index: int = 0
    probability: bool = True
    input_name: str | None = None

    @classmethod
    def from_card(cls, card: dict[str, Any], where: str = "teacher card") -> "TeacherProtocol":
        def fail(problem: str) -> TeacherError:
            return TeacherError(f"{where}: {problem}")

        spec = card.get("input")
        if not isinstance(spec, dict):
            raise fail("needs an 'input' object with size, scale, mean and std")
        size = spec.get("size")
        if isinstance(size, int):
            size = [size, size]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and 16 <= s <= 4096
                                                                    for s in size)):
            raise fail(f"input.size must be [height, width] between 16 and 4096, got {size!r}")
        scale = spec.get("scale", 255)
        if isinstance(scale, str):
            text = scale.lower()
            if text == "max" or "maximum" in text:
                scale = "max"
            else:
                try:
                    scale = float(text)
                except ValueError:
                    raise fail(f"input.scale {scale!r} is neither 'max' nor a number") from None
        if not (scale == "max" or (isinstance(scale, (int, float)) and scale > 0)):
            raise fail(f"input.scale must be 'max' or a positive number, got {scale!r}")
        mean, std = spec.get("mean", [0.0] * 3), spec.get("std", [1.0] * 3)
        if not (len(mean) == 3 and len(std) == 3 and all(isinstance(v, (int, float)) for v in [*mean, *std])
                and min(std) > 0):
            raise fail("input.mean and input.std need three numbers each, std positive")
        output = card.get("output", {})
        if isinstance(output, str):
            text = output.lower()
            if "probability" in text or "sigmoid applied" in text:
                probability = True
            elif "logit" in text:
                probability = False
            else:
                raise fail("output must say whether it is a probability or a logit")
            index = 0
        elif isinstance(output, dict):
            probability = output.get("probability", True)
            index = output.get("index", 0)
            if not isinstance(probability, bool) or not isinstance(index, int) or index < 0:
                raise fail("output.probability must be true/false and output.index a non-negative integer")
        else:
            raise fail("output must be an object (index, probability)")
        return cls(name=str(card.get("name", "teacher")), licence=str(card.get("licence", card.get("license",
                   "unknown"))), size=(size[0], size[1]),
                   scale=scale if scale == "max" else float(scale), mean=tuple(float(v) for v in mean),
                   std=tuple(float(v) for v in std), output_index=index, probability=probability,
                   input_name=spec.get("name"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "licence": self.licence, "size": list(self.size), "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std), "output_index": self.output_index,
                "probability": self.probability}


def card_path(model_path: Union[str, os.PathLike]) -> Path:
    """The card beside a teacher model: ``teacher.onnx`` -> ``teacher.json``."""
    return Path(model_path).with_suffix(".json")


class OnnxTeacher:
    """An ONNX saliency model and its protocol; ``predict(image)`` gives a soft map at the image's size.

    Args:
        model_path: the ``.onnx`` file.
        card: its card (default: the ``.json`` beside it).
        threads: ONNX Runtime intra-op threads.
    """

    def __init__(self, model_path: Union[str, os.PathLike], card: Union[str, os.PathLike, None] = None,
                 threads: int = 2, runtime: str = "auto") -> None:
        self.model_path = Path(model_path)
        card_file = Path(card) if card is not None else card_path(model_path)
        if not self.model_path.is_file():
            raise TeacherError(f"teacher model not found: {self.model_path}")
        try:
            card_data = json.loads(card_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TeacherError(f"{self.model_path}: no teacher card {card_file} (JSON with its input "
                               "protocol: size, scale, mean, std, output)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TeacherError(f"cannot read teacher card {card_file}: {error}") from None
        if not isinstance(card_data, dict):
            raise TeacherError(f"teacher card {card_file}: expected a JSON object")
        self.protocol = TeacherProtocol.from_card(card_data, str(card_file))
        if runtime not in TEACHER_RUNTIMES:
            raise TeacherError(f"teacher runtime {runtime!r}: choose one of {', '.join(TEACHER_RUNTIMES)}")
        if runtime == "auto":
            runtime = "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"
        self.runtime = runtime
        try:
            self._run, outputs = (_openvino_runner if runtime == "openvino" else _onnxruntime_runner)(
                self.model_path, max(1, threads), self.protocol.input_name)
        except ImportError as error:
            raise TeacherError(f"teacher runtime {runtime} is not installed ({error})") from None
        except Exception as error:  # both runtimes raise their own exception types for a broken graph
            raise TeacherError(f"cannot load teacher {self.model_path}: {' '.join(str(error).split())}") from None
        if self.protocol.output_index >= outputs:
            raise TeacherError(f"{self.model_path}: output index {self.protocol.output_index} but the graph has "
                               f"{outputs} outputs")

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB -> ``(1, 3, h, w)`` float32 as the card says."""
        p = self.protocol
        divisor = max(float(image.max()), 1e-6) if p.scale == "max" else float(p.scale)
        x = resize_image(image, *p.size, divisor=divisor)
        x = (x - np.asarray(p.mean)) / np.asarray(p.std)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` float32 saliency in [0, 1]."""
        out = np.asarray(self._run(self.preprocess(image))[self.protocol.output_index], dtype=np.float32)
        out = out.reshape(out.shape[-2], out.shape[-1])
        if not self.protocol.probability:
            out = 1.0 / (1.0 + np.exp(-out))
        return np.clip(resize_image(out, *image.shape[:2]), 0.0, 1.0).astype(np.float32)


def _onnxruntime_runner(path: Path, threads: int, input_name: str | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = input_name or session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})), len(session.get_outputs())


def _openvino_runner(path: Path, threads: int, input_name: str | None):
    import openvino as ov

    # f32 explicitly: on CPUs with AVX-512 BF16 OpenVINO would otherwise run bf16 and move soft labels by
    # up to ~0.4 at edges; f32 matches ONNX Runtime to ~1e-4.
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    key = input_name or 0

    def run(x: np.ndarray) -> list[np.ndarray]:
        result = request.infer({key: x})
        return [np.array(result[output]) for output in compiled.outputs]

    return run, len(compiled.outputs)
