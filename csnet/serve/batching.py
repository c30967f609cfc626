"""Micro-batching: requests that arrive within a few milliseconds of each other share one forward pass.

A single worker thread takes the first waiting input, keeps gathering until ``max_batch`` inputs or
``max_wait_ms`` have passed, runs one ``infer`` call on the stack and hands each caller its row.
Under light load a request waits at most ``max_wait_ms`` more than alone; under heavy load the
batches fill up and throughput rises.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Optional

import numpy as np

__all__ = ["MicroBatcher"]

log = logging.getLogger(__name__)

_STOP = object()


class MicroBatcher:
    """Gathers ``3 x S x S`` inputs into batches for ``infer`` (``B x 3 x S x S`` -> ``B x ...``).

    Args:
        infer: the batched function (e.g. ``Predictor.infer``); called from the worker thread only.
        max_batch: the most inputs per call.
        max_wait_ms: how long the first input of a batch waits for company.

    Attributes:
        batches, items: counts of calls made and inputs served (for metrics and tests).
    """

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], max_batch: int = 8,
                 max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.infer = infer
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.batches = 0
        self.items = 0
        self.largest_batch = 0
        self._queue: "queue.Queue[object]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, x: np.ndarray) -> "Future[np.ndarray]":
        """Queue one input; the future resolves to its row of ``infer``'s output."""
        if self._closed:
            raise RuntimeError("the micro-batcher is closed")
        self._ensure_started()
        future: Future = Future()
        self._queue.put((x, future))
        return future

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued work and stop the worker thread."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="csnet-batcher", daemon=True)
                    self._thread.start()

    def _gather(self, first) -> tuple[list, bool]:
        items, stop = [first], False
        deadline = time.monotonic() + self.max_wait
        while len(items) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            items.append(item)
        return items, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items, stop = self._gather(first)
            live = [(x, f) for x, f in items if f.set_running_or_notify_cancel()]
            if live:
                try:
                    out = self.infer(np.stack([x for x, _ in live]))
                except BaseException as error:  # noqa: BLE001 - every caller learns of the failure
                    log.exception("batched inference failed")
                    for _, future in live:
                        future.set_exception(error)
                else:
                    self.batches += 1
                    self.items += len(live)
                    self.largest_batch = max(self.largest_batch, len(live))
                    for (_, future), row in zip(live, out):
                        future.set_result(row)
            if stop:
                return
