import contextlib
import os

import pytest
import torch

# Two CPU threads everywhere: CI has two cores and results must not depend on the thread count.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@contextlib.contextmanager
def _torch_threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# One torch thread for small forwards: on shared, busy cores two spinning OpenMP threads make them up to
# 10x slower, and results do not depend on it.
@pytest.fixture
def one_thread():
    """One torch thread during a test."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread during a whole test module (use through ``pytestmark``)."""
    with _torch_threads(1):
        yield
