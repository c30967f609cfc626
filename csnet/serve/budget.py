"""A memory budget for the requests being processed, so the service is bounded by memory, not by a pixel count.

A fixed cap on pixels either refuses phone photos (48 MP and more) or, with enough requests at once,
lets them exhaust the machine. Instead each request reserves what it will cost before its image is decoded
(its pixel count, read from the header, times the peak bytes per pixel of what it asked for) and waits
until that much of the budget is free; one that could never fit is refused with 413 and the figures.
"""
from __future__ import annotations

import asyncio
import io
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

__all__ = ["MemoryBudget", "BYTES_PER_PIXEL", "request_cost", "header_pixels"]

#: Peak bytes per image pixel of a request, by its refinement: the decoded image, the full-size map, the
#: refinement's full-size float arrays, the RGBA result and its PNG. Upper bounds of what was measured
#: (SECURITY.md), so the budget errs on the side of memory.
BYTES_PER_PIXEL = {None: 16, "guided": 40, "matting": 56}


def header_pixels(data: bytes) -> Optional[int]:
    """Width x height from the image's header (nothing decoded), or ``None`` if Pillow cannot read one (the
    decoder then says why)."""
    from PIL import Image

    from csnet.io.images import FORMATS

    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - any unreadable header: load_image reports it properly
        return None
    return max(0, int(width)) * max(0, int(height))


def request_cost(upload_bytes: int, pixels: Optional[int], refine: Optional[str]) -> int:
    """Bytes a request holds at its peak: its upload plus its pixels at :data:`BYTES_PER_PIXEL`."""
    return int(upload_bytes) + (pixels or 0) * BYTES_PER_PIXEL[refine]


class MemoryBudget:
    """``capacity`` bytes shared by the requests in progress, first come first served.

    ``async with budget.hold(n):`` waits until ``n`` bytes are free and returns them at the end. Waiting is in
    arrival order, so a large request is not overtaken forever by smaller ones.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the memory budget must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.used = 0
        self._turn = asyncio.Lock()  # the first waiter alone waits for room; later ones queue behind it
        self._freed = asyncio.Condition()

    def fits(self, nbytes: int) -> bool:
        """Whether ``nbytes`` could ever be held (with nothing else in progress)."""
        return nbytes <= self.capacity

    @asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        if not self.fits(nbytes):
            raise ValueError(f"{nbytes} bytes exceed the budget of {self.capacity}")
        async with self._turn:
            async with self._freed:
                await self._freed.wait_for(lambda: self.used + nbytes <= self.capacity)
                self.used += nbytes
        try:
            yield
        finally:
            async with self._freed:
                self.used -= nbytes
                self._freed.notify_all()
