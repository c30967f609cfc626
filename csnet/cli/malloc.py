"""glibc malloc policy for long-lived PyTorch processes: freed tensors stay in the heap for the next step.

glibc serves every allocation above its mmap threshold (dynamic, at most 32 MB) with a fresh ``mmap`` and
unmaps it on free, and gives the top of the heap back to the OS past its trim threshold. A PyTorch step
allocates and frees the same activation buffers every time, so by default each step page-faults its whole
working set in again (and the kernel zeroes every page): the 224 px training step of ``csnet_l_x2`` at
batch 24 took ~36 million minor faults in four steps and ran 2.7x slower than with this policy
(benchmarks/RESULTS.md, run T3). With mmap off and a large trim threshold the buffers are reused in place.

Process-wide and permanent (the process keeps what it freed, up to ``trim_threshold_mb`` at the top of the
heap), so only the CLI applies it, to commands that run many steps (``train``, ``predict`` on folders,
``benchmark``); the library never does.
"""
from __future__ import annotations

import logging

__all__ = ["tune_malloc"]

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def tune_malloc(trim_threshold_mb: int = 1024, top_pad_mb: int = 64) -> bool:
    """Serve every allocation from the heap and keep freed memory for reuse (glibc only).

    Returns True when glibc took all three settings, False where they do not apply (another libc, or a
    ``mallopt`` that refused one), in which case nothing is changed that matters for correctness.
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
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, int(trim_threshold_mb) << 20) == 1 and ok
    ok = mallopt(_M_TOP_PAD, int(top_pad_mb) << 20) == 1 and ok
    if ok:
        log.debug("glibc malloc: no mmap, trim threshold %d MB, top pad %d MB", trim_threshold_mb, top_pad_mb)
    return ok
