"""glibc malloc tuning for long-lived inference processes (opt-in, process-wide: the CLI calls it, never the library)."""
from __future__ import annotations

import logging

__all__ = ["tune_malloc"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc(mmap_threshold_mb: int = 256, trim_threshold_mb: int = 512) -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the OS (glibc only).

    glibc serves every allocation above its mmap threshold with a fresh ``mmap`` and unmaps it on free, so each
    forward of a PyTorch runtime pays page faults on its ~2 MB activations; raising the thresholds lets them be
    reused (measured in ``benchmarks/RESULTS.md``). Process-wide and permanent (the process keeps up to
    ``trim_threshold_mb`` of freed memory), so it is opt-in. Returns False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold_mb) << 20) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, int(trim_threshold_mb) << 20) == 1 and ok
    if ok:
        log.debug("glibc malloc: mmap threshold %d MB, trim threshold %d MB", mmap_threshold_mb, trim_threshold_mb)
    return ok
