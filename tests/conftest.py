import os

import torch

# Two CPU threads everywhere: CI has two cores and results must not depend on the thread count.
torch.set_num_threads(min(2, os.cpu_count() or 1))
