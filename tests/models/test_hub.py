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


# ------------------------------------------------------------------------------------------ hostile model files
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from safetensors.torch import load_file  # noqa: E402

from csnet.models.config import ChannelConfig  # noqa: E402


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    """A valid model file and its (state, metadata), for the tests to corrupt."""
    path = save_model(csnet.create_model("csnet_l_x1"), tmp_path_factory.mktemp("good") / "good.safetensors")
    return path, load_file(str(path)), read_metadata(path)


def _write(path, state, meta, config=None):
    if config is not None:
        meta = {**meta, "config": config if isinstance(config, str) else json.dumps(config)}
    save_file(state, str(path), metadata=meta)
    return path


def _wide_config(width):
    """csnet_l_x1's config with every width of the second block set to ``width``."""
    config = csnet.create_model("csnet_l_x1").config.to_dict()
    config["stages"][0][0]["out_channels"] = [width, width]
    config["stages"][1][0]["in_channels"] = [width, width]
    return config


def test_huge_widths_are_refused_before_building_anything(tmp_path, good_file):
    _, state, meta = good_file
    path = _write(tmp_path / "wide.safetensors", {"w": torch.zeros(1)}, meta, _wide_config(16_000))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"wide.safetensors: bad model config \(block out_channels must be "
                                             r"in 0\.\.2048, got 16000\)"):
        load_model(path)
    assert time.perf_counter() - start < 1.0  # building a 16,000-wide CSNet takes many seconds and 4 GB


@pytest.mark.parametrize("width, problem", [
    (10 ** 9, "must be in 0..2048"),
    (float("inf"), "must be an integer, got inf"),
    (-3, "must be in 0..2048, got -3"),
    (20.0, "must be an integer, got 20.0"),
    ("20", "must be an integer, got '20'"),
    ([20], "must be an integer"),
    (None, "must be an integer, got None"),
])
def test_bad_widths_give_one_line(tmp_path, good_file, width, problem):
    _, state, meta = good_file
    path = _write(tmp_path / "bad.safetensors", state, meta, _wide_config(width))
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value).startswith(f"{path}: bad model config") and problem in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("edit, problem", [
    (lambda c: c["fusion"].update(dilations=[1, 2, -4, 8, 16]), "fusion dilations must be in 1..64, got -4"),
    (lambda c: c["fusion"].update(dilations=[1, 2, 4, 8, 10 ** 6]), "fusion dilations must be in 1..64"),
    (lambda c: c["stages"][0][0].update(stride=3), "block stride must be in 1..2, got 3"),
    (lambda c: c.update(stages=[[c["stages"][0][0]] * 100]), "at most 64 blocks"),
    (lambda c: c.update(in_chans=10 ** 12), "in_chans must be in 1..16"),
    (lambda c: c.pop("fusion"), "missing 'fusion'"),
    (lambda c: c.update(stages="abc"), "stages must be a list"),
])
def test_bad_configs_give_one_line(tmp_path, good_file, edit, problem):
    _, state, meta = good_file
    config = csnet.create_model("csnet_l_x1").config.to_dict()
    edit(config)
    path = _write(tmp_path / "bad.safetensors", state, meta, config)
    with pytest.raises(ModelFileError, match="bad model config") as info:
        load_model(path)
    assert problem in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["[" * 100_000, "not json", "[1, 2]", '{"stages": [[1]], "fusion": {}}'])
def test_config_that_is_not_a_config(tmp_path, good_file, text):
    _, state, meta = good_file
    path = _write(tmp_path / "bad.safetensors", state, meta, text)
    with pytest.raises(ModelFileError, match=r"bad.safetensors: bad model config \(not a valid ChannelConfig"):
        load_model(path)


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path, good_file):
    _, state, meta = good_file
    state = dict(state)
    state["head.weight"] = torch.zeros(1, 3, 1, 1)
    expected = list(good_file[1]["head.weight"].shape)
    path = _write(tmp_path / "shape.safetensors", state, meta)
    with pytest.raises(ModelFileError, match=(rf"shape.safetensors: weights do not match its config: head\.weight "
                                              rf"is \[1, 3, 1, 1\] in the file, {re_list(expected)} in its config")):
        load_model(path)


def test_missing_and_unexpected_tensors_are_named(tmp_path, good_file):
    _, state, meta = good_file
    extra = _write(tmp_path / "extra.safetensors", {**state, "evil": torch.zeros(2)}, meta)
    with pytest.raises(ModelFileError, match="weights do not match its config: unexpected tensor evil"):
        load_model(extra)
    short = {k: v for k, v in state.items() if k != "head.bias"}
    with pytest.raises(ModelFileError, match="weights do not match its config: head.bias is missing"):
        load_model(_write(tmp_path / "short.safetensors", short, meta))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, good_file, value):
    _, state, meta = good_file
    state = dict(state)
    state["head.weight"] = state["head.weight"].clone()
    state["head.weight"].view(-1)[0] = value
    path = _write(tmp_path / "nan.safetensors", state, meta)
    with pytest.raises(ModelFileError, match="nan.safetensors: tensor head.weight holds NaN or infinite values"):
        load_model(path)


def test_integer_weights_are_refused(tmp_path, good_file):
    _, state, meta = good_file
    state = dict(state)
    state["head.weight"] = torch.ones_like(state["head.weight"], dtype=torch.int8)
    path = _write(tmp_path / "int8.safetensors", state, meta)
    with pytest.raises(ModelFileError, match="int8.safetensors: tensor head.weight is I8, expected a floating-point"):
        load_model(path)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_model_files_get_the_umask_permissions(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = save_model(csnet.create_model("csnet_l_x1"), tmp_path / "m.safetensors")
    finally:
        os.umask(previous)
    assert os.stat(path).st_mode & 0o777 == mode


def test_bounds_do_not_refuse_the_registered_models():
    for name in csnet.list_models():
        config = csnet.create_model(name).config
        assert ChannelConfig.from_json(config.to_json()) == config


def re_list(values):
    return r"\[" + ", ".join(str(v) for v in values) + r"\]"


def test_oversized_config_json_is_refused_unparsed(tmp_path, good_file):
    _, state, meta = good_file
    path = _write(tmp_path / "long.safetensors", state, meta, " " * 2_000_000 + "{}")
    with pytest.raises(ModelFileError, match=r"long.safetensors: bad model config \(its JSON is 2,000,002 characters"):
        load_model(path)
