"""csnet.infer.pipeline.run_pipeline: batches, errors that skip one item, bounded read-ahead."""
import threading

import numpy as np
import pytest

from csnet.infer.pipeline import run_pipeline


def _load(item: int):
    if item == 3:
        raise ValueError("item 3 is broken")
    return item * 10, np.full((3, 2, 2), item, dtype=np.float32)


def test_every_item_is_finished_once_in_batches_and_a_bad_one_is_skipped():
    finished, done, errors, batches = {}, [], [], []

    def infer(batch: np.ndarray) -> np.ndarray:
        batches.append(len(batch))
        return batch[:, :1] * 2

    def finish(item, state, output):
        finished[item] = (state, float(output.mean()))

    run_pipeline(range(10), _load, infer, finish, batch_size=4, workers=2, on_done=done.append,
                 on_error=lambda item, error: errors.append((item, str(error))))
    assert finished == {i: (i * 10, 2.0 * i) for i in range(10) if i != 3}
    assert sorted(done) == sorted(finished) and errors == [(3, "item 3 is broken")]
    assert sum(batches) == 9 and max(batches) <= 4


def test_errors_stop_the_pipeline_by_default():
    with pytest.raises(ValueError, match="broken"):
        run_pipeline(range(5), _load, lambda batch: batch, lambda *args: None, batch_size=2, workers=1)


def test_read_ahead_is_bounded():
    lock, loaded, finished, most_ahead = threading.Lock(), [0], [0], [0]

    def items():
        for item in range(200):
            with lock:
                most_ahead[0] = max(most_ahead[0], loaded[0] - finished[0])
            yield item

    def load(item):
        with lock:
            loaded[0] += 1
        return None, np.zeros((3, 1, 1), dtype=np.float32)

    def finish(item, state, output):
        with lock:
            finished[0] += 1

    run_pipeline(items(), load, lambda batch: batch, finish, batch_size=3, workers=2)
    assert finished[0] == 200
    assert most_ahead[0] <= 2 * (2 * 3 + 2) + 3  # decoded ahead + pending finishes + one batch
