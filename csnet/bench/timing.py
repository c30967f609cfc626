"""Latency measurement: warm-up, many repetitions, min/median/max; CUDA events on the GPU.

Nothing here prints; :func:`measure` returns a :class:`Timing` and the caller reports it.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import torch

__all__ = ["Timing", "measure", "load_average", "PeakMemory", "cpu_idle_fraction"]


@dataclass(frozen=True)
class Timing:
    """Per-call latencies in milliseconds (one call = one batch)."""

    times_ms: tuple[float, ...]
    warmup: int

    @property
    def repeat(self) -> int:
        return len(self.times_ms)

    @property
    def min_ms(self) -> float:
        return min(self.times_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def max_ms(self) -> float:
        return max(self.times_ms)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.times_ms)

    def summary(self) -> dict[str, Any]:
        return {"min_ms": self.min_ms, "median_ms": self.median_ms, "max_ms": self.max_ms, "mean_ms": self.mean_ms,
                "repeat": self.repeat, "warmup": self.warmup}


def measure(fn: Callable[[], Any], *, warmup: int = 10, repeat: int = 50, max_seconds: Optional[float] = None,
            min_repeat: int = 5, device: Optional[torch.device] = None) -> Timing:
    """Call ``fn`` ``warmup`` times, then time up to ``repeat`` calls.

    On a CUDA ``device`` every call is bracketed by CUDA events (device-side time, no host sync inside the loop;
    one synchronize at the end). On the CPU each call is timed with ``time.perf_counter``. With
    ``max_seconds``, timing stops early once that much wall time is spent (never before ``min_repeat`` calls),
    so huge batches on a small CPU stay bounded.
    """
    cuda = device is not None and torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    times: list[float] = []
    start_all = time.perf_counter()
    if cuda:
        events = []
        for index in range(repeat):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            events.append((begin, end))
            if max_seconds is not None and index + 1 >= min_repeat and index % 10 == 9:
                torch.cuda.synchronize(device)
                if time.perf_counter() - start_all > max_seconds:
                    break
        torch.cuda.synchronize(device)
        times = [begin.elapsed_time(end) for begin, end in events]
    else:
        for index in range(repeat):
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
            if max_seconds is not None and index + 1 >= min_repeat and time.perf_counter() - start_all > max_seconds:
                break
    return Timing(tuple(times), warmup)


def load_average() -> Optional[tuple[float, float, float]]:
    """The 1/5/15-minute load average (None where the OS has none): state it next to every CPU figure."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None


class PeakMemory:
    """Peak memory during a block: CUDA ``max_memory_allocated``, or on the CPU the process's peak RSS.

    On Linux the RSS high-water mark is reset first (``/proc/self/clear_refs``), so the figure is the peak of
    the block; elsewhere it is the process's peak so far (``reset`` is then False).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.peak_mb: Optional[float] = None
        self.reset = False

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.reset = True
        else:
            try:
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")
                self.reset = True
            except OSError:
                self.reset = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self.peak_mb = _peak_rss_mb()


def _peak_rss_mb() -> Optional[float]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):  # pragma: no cover - non-POSIX
        return None


def as_dict(timing: Timing) -> dict[str, Any]:
    data = asdict(timing)
    data.update(timing.summary())
    return data


def cpu_idle_fraction(interval: float = 0.25) -> Optional[float]:
    """Share of all CPUs idle over the next ``interval`` seconds (Linux ``/proc/stat``; None elsewhere).

    On a shared machine, sample it before a burst of timings and keep the bursts taken while it was idle.
    """
    def read() -> Optional[tuple[int, int]]:
        try:
            with open("/proc/stat") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return idle, sum(fields)

    first = read()
    if first is None:
        return None
    time.sleep(interval)
    second = read()
    if second is None or second[1] == first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1])
