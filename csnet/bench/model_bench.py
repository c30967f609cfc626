"""Model speed: several runtimes side by side, per batch size: latency, throughput, GFLOP/s, peak memory.

:func:`benchmark_model` returns plain dict rows (JSON-ready, see :data:`ROW_KEYS`); ``csnet benchmark`` prints
and saves them. Every runtime is also checked against the eager model on one batch (``max_abs_diff`` on the
logits), so a fast number never hides a wrong answer.
"""
from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from csnet.bench.runners import Runner, build_runner, normalize_uint8
from csnet.bench.timing import PeakMemory, load_average, measure
from csnet.infer.runtimes import RuntimeChoiceError, RuntimeUnavailable

__all__ = ["BenchConfig", "benchmark_model", "environment", "ROW_KEYS"]

logger = logging.getLogger(__name__)

ROW_KEYS = ("model", "runtime", "preset", "device", "dtype", "batch_size", "height", "width", "threads",
            "include_preprocess", "min_ms", "median_ms", "max_ms", "mean_ms", "repeat", "warmup", "images_per_s",
            "params", "macs_per_image", "gflops_per_s", "peak_mem_mb", "peak_mem_kind", "setup_s", "first_call_s",
            "max_abs_diff", "max_abs_logit", "load_before", "load_after", "notes")
"""Keys of every row (``images_per_s`` = batch / median; ``gflops_per_s`` = 2 x MACs x batch / median)."""


@dataclass
class BenchConfig:
    device: str = "cpu"
    preset: Optional[str] = None  # each runtime's default
    batch_sizes: Sequence[int] = (1,)
    height: int = 224
    width: int = 224
    threads: Optional[int] = 2
    warmup: int = 10
    repeat: int = 50
    max_seconds: Optional[float] = 20.0
    include_preprocess: bool = False
    check: bool = True


def environment() -> dict[str, Any]:
    """Versions and machine facts to store next to the figures."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    try:
        import openvino

        info["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        info["openvino"] = None
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def benchmark_model(model: torch.nn.Module, name: str, runtimes: Sequence[str], config: BenchConfig,
                    on_row: Optional[Callable[[dict[str, Any]], None]] = None) -> list[dict[str, Any]]:
    """Measure ``model`` (a CSNet, any weights) with every runtime and batch size of ``config``.

    Runtimes that cannot run here (or lack the preset) are skipped with a warning (a row with ``notes`` = the
    reason and no timings). ``on_row`` is called with each row as soon as it is measured.
    """
    from csnet.models.summary import count_macs

    if config.threads is not None and config.device == "cpu":
        torch.set_num_threads(config.threads)
    threads = torch.get_num_threads()
    model = model.eval()
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (config.height, config.width))
    reference: dict[int, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    for runtime in runtimes:
        base = {"model": name, "runtime": runtime, "device": config.device, "height": config.height,
                "width": config.width, "threads": threads, "params": params, "macs_per_image": macs}
        try:
            runner = build_runner(runtime, model, device=config.device, preset=config.preset, threads=threads,
                                  include_preprocess=config.include_preprocess)
        except (RuntimeUnavailable, RuntimeChoiceError) as error:
            logger.warning("%s: skipped (%s)", runtime, error)
            row = {**base, "preset": config.preset, "batch_size": None, "notes": f"skipped: {error}"}
            rows.append(row)
            if on_row:
                on_row(row)
            continue
        described = runner.runtime.describe()
        notes = ", ".join(f"{k} {v}" for k, v in described.items() if k not in ("runtime", "device", "preset"))
        for batch in config.batch_sizes:
            inputs = runner.make_input(batch, config.height, config.width)
            load_before = load_average()
            with PeakMemory(torch.device(config.device)) as memory:
                first = runner.run(inputs)
                timing = measure(lambda: runner.run(inputs), warmup=config.warmup, repeat=config.repeat,
                                 max_seconds=config.max_seconds, device=torch.device(config.device))
            diff = scale = None
            if config.check:
                diff, scale = _check(model, runner, inputs, first, reference)
            median = timing.median_ms
            row = {
                **base,
                "preset": runner.runtime.preset_name,
                "dtype": runner.runtime.preset.dtype,
                "batch_size": batch,
                "include_preprocess": runner.include_preprocess,
                **timing.summary(),
                "images_per_s": batch / (median / 1e3),
                "gflops_per_s": 2 * macs * batch / (median / 1e3) / 1e9,
                "peak_mem_mb": memory.peak_mb,
                "peak_mem_kind": ("cuda max_memory_allocated" if config.device.startswith("cuda")
                                  else "process peak RSS" + ("" if memory.reset else " (not reset)")),
                "setup_s": runner.setup_s,
                "first_call_s": runner.first_call_s.get(tuple(inputs.shape)),
                "max_abs_diff": diff,
                "max_abs_logit": scale,
                "load_before": load_before,
                "load_after": load_average(),
                "notes": notes,
            }
            rows.append(row)
            if on_row:
                on_row(row)
        del runner
    return rows


def _check(model: torch.nn.Module, runner: Runner, inputs: np.ndarray, output: np.ndarray,
           reference: dict[int, np.ndarray]) -> tuple[float, float]:
    """Max |logits - eager float32 logits| on the first (up to 4) images of this batch, and max |logits|
    (the scale that difference is to be read against: random weights give tiny logits)."""
    import copy

    n = min(4, inputs.shape[0])
    key = inputs.shape[0]  # every runner draws the same images for a batch size (seed 0)
    if key not in reference:
        x = normalize_uint8(inputs[:n]) if runner.include_preprocess else inputs[:n]
        with torch.inference_mode():
            reference[key] = copy.deepcopy(model).float().cpu().eval()(torch.from_numpy(x)).numpy()
    expected = reference[key]
    got = np.asarray(output[:n], dtype=np.float32)
    if got.shape != expected.shape:
        return float("inf"), float(np.abs(expected).max())
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())
