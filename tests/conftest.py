import os

import pytest
import torch

# Two CPU threads everywhere: CI has two cores and results must not depend on the thread count.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_thread():
    """One torch thread: on shared cores 2-thread OpenMP is much slower for tiny models."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
