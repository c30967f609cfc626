"""End-to-end throughput over a folder of real images: decode -> resize -> model -> resize back -> encode PNG.

The steps are the ones ``csnet predict`` runs: :func:`csnet.io.images.load_image`, the predictor's
:func:`~csnet.infer.predictor.preprocess_image` (the test protocol's bilinear resize to 224 x 224 and ImageNet
normalization) and :func:`~csnet.infer.predictor.postprocess_logits` (sigmoid, bilinear resize back, uint8), then
:func:`csnet.io.images.encode_image` (PNG).

Two passes over the same files:

* ``sequential``: one image after the other (batches of ``batch_size`` for the model), every stage timed on
  its own - the profile of where the time goes;
* ``parallel``: ``csnet predict``'s own pipeline (:func:`csnet.infer.pipeline.run_pipeline`): decode+resize and
  resize-back+encode in a thread pool (``workers`` threads, a bounded window of images in flight) while the
  main thread runs the model; the figure ``csnet predict`` over a folder can reach.

PNGs are encoded in memory (``out_dir`` writes them too), so disk speed is not measured unless asked for.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

__all__ = ["EndToEndResult", "run_end_to_end", "list_images", "STAGES"]

logger = logging.getLogger(__name__)

STAGES = ("decode", "resize", "model", "postprocess", "encode")
_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class EndToEndResult:
    mode: str
    images: int
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    batch_size: int = 1
    workers: int = 0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        per_image = {k: 1e3 * v / max(self.images, 1) for k, v in self.stage_seconds.items()}
        return {"mode": self.mode, "images": self.images, "seconds": self.seconds, "images_per_s": self.images_per_s,
                "batch_size": self.batch_size, "workers": self.workers, "stage_ms_per_image": per_image}


def list_images(folder: os.PathLike | str, limit: Optional[int] = None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(_EXTENSIONS))})")
    return files[:limit] if limit else files


def _decode(path: Path) -> np.ndarray:
    from csnet.io.images import load_image

    return load_image(path)


def _resize_normalize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from csnet.infer.predictor import preprocess_image

    return preprocess_image(image, size)


def _run_model(model: Callable[[np.ndarray], np.ndarray], inputs: Sequence[np.ndarray]) -> np.ndarray:
    """One batch through the runtime, as in ``csnet predict``."""
    return model(np.stack(inputs))


def _postprocess(logits: np.ndarray, original: tuple[int, int]) -> np.ndarray:
    from csnet.infer.predictor import postprocess_logits

    return postprocess_logits(logits.reshape(logits.shape[-2:]), *original)


def _encode(mask: np.ndarray, path: Optional[Path]) -> bytes:
    from csnet.io.atomic import atomic_write_bytes
    from csnet.io.images import encode_image

    data = encode_image(mask)
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _sequential(files: Sequence[Path], model: Callable[[np.ndarray], np.ndarray], size: tuple[int, int], batch_size: int,
                out_dir: Optional[Path]) -> EndToEndResult:
    stages: dict[str, float] = defaultdict(float)
    start_all = time.perf_counter()
    for chunk in _batches(files, batch_size):
        originals, inputs = [], []
        for path in chunk:
            t0 = time.perf_counter()
            image = _decode(path)
            t1 = time.perf_counter()
            inputs.append(_resize_normalize(image, size))
            t2 = time.perf_counter()
            stages["decode"] += t1 - t0
            stages["resize"] += t2 - t1
            originals.append(image.shape[:2])
        t0 = time.perf_counter()
        logits = _run_model(model, inputs)
        stages["model"] += time.perf_counter() - t0
        for path, original, logit in zip(chunk, originals, logits):
            t0 = time.perf_counter()
            mask = _postprocess(logit, original)
            t1 = time.perf_counter()
            _encode(mask, out_dir / f"{path.stem}.png" if out_dir else None)
            stages["postprocess"] += t1 - t0
            stages["encode"] += time.perf_counter() - t1
    return EndToEndResult("sequential", len(files), time.perf_counter() - start_all,
                          {k: stages[k] for k in STAGES}, batch_size, 0)


def _parallel(files: Sequence[Path], model: Callable[[np.ndarray], np.ndarray], size: tuple[int, int], batch_size: int,
              workers: int, out_dir: Optional[Path]) -> EndToEndResult:
    """``csnet predict``'s own pipeline (:func:`csnet.infer.pipeline.run_pipeline`) with every stage timed."""
    from csnet.infer.pipeline import run_pipeline

    stages: dict[str, float] = defaultdict(float)  # thread-summed seconds per stage (can exceed wall time)
    lock = threading.Lock()

    def add(stage: str, seconds: float) -> None:
        with lock:
            stages[stage] += seconds

    def load(path: Path) -> tuple[tuple[int, int], np.ndarray]:
        t0 = time.perf_counter()
        image = _decode(path)
        t1 = time.perf_counter()
        x = _resize_normalize(image, size)
        add("decode", t1 - t0)
        add("resize", time.perf_counter() - t1)
        return image.shape[:2], x

    def infer(batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        logits = _run_model(model, list(batch))
        add("model", time.perf_counter() - t0)
        return logits

    def finish(path: Path, original: tuple[int, int], logits: np.ndarray) -> None:
        t0 = time.perf_counter()
        mask = _postprocess(logits, original)
        t1 = time.perf_counter()
        _encode(mask, out_dir / f"{path.stem}.png" if out_dir else None)
        add("postprocess", t1 - t0)
        add("encode", time.perf_counter() - t1)

    start_all = time.perf_counter()
    run_pipeline(files, load, infer, finish, batch_size=batch_size, workers=workers)
    return EndToEndResult("parallel", len(files), time.perf_counter() - start_all,
                          {k: stages[k] for k in STAGES}, batch_size, workers)


def run_end_to_end(files: Sequence[Path], model: Callable[[np.ndarray], np.ndarray], size: tuple[int, int] = (224, 224),
                   batch_size: int = 1, workers: int = 2, out_dir: Optional[os.PathLike | str] = None,
                   modes: Sequence[str] = ("sequential", "parallel"), warmup: int = 2) -> list[EndToEndResult]:
    """Run the pipeline over ``files`` with ``model`` (a runtime of :mod:`csnet.infer.runtimes`: normalized
    ``B x 3 x H x W`` float32 -> logits, NumPy) in each of ``modes``."""
    out = Path(out_dir) if out_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for _ in range(warmup):
        model(np.zeros((batch_size, 3, *size), dtype=np.float32))
    results = []
    for mode in modes:
        if mode == "sequential":
            results.append(_sequential(files, model, size, batch_size, out))
        elif mode == "parallel":
            results.append(_parallel(files, model, size, batch_size, max(1, workers), out))
        else:
            raise ValueError(f"unknown mode {mode!r} (sequential, parallel)")
    return results
