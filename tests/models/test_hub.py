"""Model files: one .safetensors holds weights and config; round trips are exact; bad files fail clearly."""
import pytest
import torch
from safetensors.torch import save_file

import csnet
from csnet.models import ModelFileError, load_model, read_metadata, save_model


def _randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)


@pytest.mark.parametrize("name", ["csnet_x1", "csnet_l_x2"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, name):
    model = csnet.create_model(name).eval()
    _randomize_bn(model)
    path = save_model(model, tmp_path / "m.safetensors", metadata={"note": "test"})
    loaded = load_model(path)
    assert loaded.config == model.config and not loaded.training
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    meta = read_metadata(path)
    assert meta["format"] == "csnet" and meta["note"] == "test"


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    save_model(csnet.create_model("csnet_l_x1"), tmp_path / "a.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_not_a_model_file(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors at all")
    with pytest.raises(ModelFileError, match="garbage.safetensors: not a readable"):
        load_model(garbage)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ModelFileError, match="plain.safetensors: not a csnet model file"):
        load_model(plain)
    with pytest.raises(ModelFileError, match="no such file and no such model"):
        load_model(tmp_path / "missing.safetensors")


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = save_model(csnet.create_model("csnet_l_x1"), tmp_path / "m.safetensors")
    meta = read_metadata(path)
    from safetensors.torch import load_file

    state = load_file(str(path))
    state.pop("head.bias")
    save_file(state, str(path), metadata=meta)
    with pytest.raises(ModelFileError, match="weights do not match its config"):
        load_model(path)


def test_registered_name_without_bundled_weights():
    with pytest.raises(ModelFileError, match="has no bundled weights"):
        load_model("csnet_x2")
