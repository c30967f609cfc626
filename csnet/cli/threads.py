"""How many CPU threads a command gives torch: one policy for ``csnet predict`` and ``csnet train``.

The thread count is a process-wide setting that the library leaves alone and the CLI owns. ``--threads``
wins when given. Otherwise a machine that is already busy (1-minute load average at least the number of
usable cores) gets one thread: torch's intra-op threads wait for each other at every op, so one thread
that lost its core stalls them all (benchmarks/RESULTS.md, run H: csnet_l_x1 predict 57 ms median with 2
threads beside a training job, 26 ms with 1; ``csnet train`` beside another run was about 5x slower with
the default threads than with 1). Under torchrun the cores are shared by the ranks on this machine
(``LOCAL_WORLD_SIZE``): each gets ``cores // ranks``. On an idle machine with one process torch's default
(one per core) is kept.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

__all__ = ["choose_threads", "set_cpu_threads", "usable_cores", "load_average"]

logger = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average() -> Optional[float]:
    """The 1-minute load average, ``None`` where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def choose_threads(requested: Optional[int], load: Optional[float], cores: int, ranks: int = 1) -> Optional[int]:
    """The thread count to set: ``requested`` when given, 1 on a busy machine, the process's share of the
    cores when ``ranks`` processes share them, ``None`` (torch's default) otherwise. A pure function of its
    arguments, so the decision is testable without a busy machine."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        return requested
    if load is not None and load >= cores:
        return 1
    if ranks > 1:
        return max(1, cores // ranks)
    return None


def set_cpu_threads(requested: Optional[int] = None) -> int:
    """Apply :func:`choose_threads` to torch for this process and return the thread count in effect."""
    import torch

    cores, load = usable_cores(), load_average()
    try:
        ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        ranks = 1
    threads = choose_threads(requested, load, cores, ranks)
    if threads is not None:
        torch.set_num_threads(threads)
        if requested is None:
            logger.info("the machine is busy (load %.1f on %d cores): 1 CPU thread (--threads N to choose)",
                        load, cores)
    return torch.get_num_threads()
