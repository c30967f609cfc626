"""Training validation runs the predictor's runtime: its figures do not depend on which runtime that is."""
import pytest
import torch

from csnet.data.dataset import DatasetConfig, SaliencyDataset
from csnet.data.pairs import pair_dataset
from csnet.infer.runtimes import runtime_class
from csnet.train.trainer import validate
from tests.infer.helpers import make_test_model


def test_validate_gives_the_same_figures_on_every_cpu_runtime(tiny_val, one_thread):
    dataset = SaliencyDataset(pair_dataset(tiny_val), DatasetConfig(size=64, augment=False))
    model = make_test_model().train()
    eager = validate(model, dataset, torch.device("cpu"), batch_size=3, runtime="eager")
    assert model.training  # left as it was
    assert eager["n"] == 4 and 0 <= eager["MAE"] <= 1
    for name in ("torchscript", "openvino"):
        if not runtime_class(name).available():
            continue
        other = validate(model, dataset, torch.device("cpu"), batch_size=3, runtime=name)
        assert other["maxF"] == pytest.approx(eager["maxF"], abs=1e-4)
        assert other["MAE"] == pytest.approx(eager["MAE"], abs=1e-4)
