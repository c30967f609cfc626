"""The image pipeline of ``csnet predict`` and the end-to-end benchmark: decode in threads, run the model in batches
on the calling thread, finish (postprocess, encode, write) in threads.

The model never waits for a decode that could have started earlier, and memory stays bounded however many
items there are: at most ``2 * batch_size + workers`` items are loaded ahead and as many finishes are pending.
One failing item never stops the others: its error goes to ``on_error`` and the rest carry on.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Optional, TypeVar

import numpy as np

__all__ = ["run_pipeline"]

Item = TypeVar("Item")


def _raise(item: Any, error: Exception) -> None:
    raise error


def run_pipeline(items: Iterable[Item], load: Callable[[Item], tuple[Any, np.ndarray]],
                 infer: Callable[[np.ndarray], np.ndarray], finish: Callable[[Item, Any, np.ndarray], None], *,
                 batch_size: int, workers: int, on_done: Optional[Callable[[Item], None]] = None,
                 on_error: Callable[[Item, Exception], None] = _raise) -> None:
    """Run every item through ``load -> infer -> finish``.

    Args:
        items: what to process (paths, jobs, ...), consumed lazily.
        load: ``item -> (state, x)`` in a worker thread; ``x`` is one ``3 x S x S`` network input, ``state``
            whatever ``finish`` needs later (the image, or only its size).
        infer: ``B x 3 x S x S -> B x ...`` on the calling thread, one call per batch of up to ``batch_size``.
        finish: ``(item, state, output)`` in a worker thread, for each item's slice of ``infer``'s output.
        batch_size, workers: items per ``infer`` call; worker threads for ``load`` and ``finish``.
        on_done: called with each item whose ``finish`` returned.
        on_error: called with an item and the exception its ``load`` or ``finish`` raised (default: re-raise,
            which stops the pipeline).
    """
    window = 2 * batch_size + workers
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="csnet-io")
    try:
        pending: deque[tuple[Item, Future]] = deque()
        finishing: deque[tuple[Item, Future]] = deque()
        queue = iter(items)

        def refill() -> None:
            while len(pending) < window:
                item = next(queue, _END)
                if item is _END:
                    return
                pending.append((item, pool.submit(load, item)))

        def drain(limit: int) -> None:
            while len(finishing) > limit:
                item, future = finishing.popleft()
                try:
                    future.result()
                except Exception as error:  # noqa: BLE001 - one bad item must not stop the rest
                    on_error(item, error)
                else:
                    if on_done is not None:
                        on_done(item)

        refill()
        batch: list[tuple[Item, Any, np.ndarray]] = []
        while pending or batch:
            if pending:
                item, future = pending.popleft()
                refill()
                try:
                    state, x = future.result()
                    batch.append((item, state, x))
                except Exception as error:  # noqa: BLE001
                    on_error(item, error)
                if len(batch) < batch_size and pending:
                    continue
            if batch:
                outputs = infer(np.stack([x for _, _, x in batch]))
                for (item, state, _), output in zip(batch, outputs):
                    finishing.append((item, pool.submit(finish, item, state, output)))
                batch = []
                drain(window)
        drain(0)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: drop the queued work, finish the running
        raise
    pool.shutdown(wait=True)


_END: Any = object()
