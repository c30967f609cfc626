"""Fuzz target: model files (csnet.models.load_model: safetensors header, csnet metadata, ChannelConfig) and
configs on their own (ChannelConfig.from_json). Mutations go where a hostile file differs from a real one:
the header (lengths, dtypes, shapes, offsets) and the config JSON (any value at any place)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from csnet.models import ChannelConfig, create_model, load_model, save_model
from csnet.models.hub import ModelFileError
from tests.fuzz.strategies import fuzz_settings, mutated

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.sampled_from((0, 1, 2, -1, 2049, 10**9)),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> bytes:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("seed") / "seed.safetensors"
    save_model(create_model("csnet_l_x1"), path)
    return path.read_bytes()


def _split(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def _join(header: dict, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def _replace_at(value, path: list[int], new):
    """``value`` with the element found by walking ``path`` (indices into lists/dict values) replaced."""
    if not path or not isinstance(value, (list, dict)) or not value:
        return new
    keys = list(range(len(value))) if isinstance(value, list) else list(value)
    key = keys[path[0] % len(keys)]
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[key] = _replace_at(value[key], path[1:], new)
    return copy


def _check_load(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        model = load_model(path)
    except ModelFileError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    assert all(torch.isfinite(p).all() for p in model.parameters())


@fuzz_settings(share=1 / 3)
@given(path=st.lists(st.integers(0, 1000), min_size=1, max_size=8), new=json_values)
def test_any_config_value_loads_or_raises_model_file_error(seed: bytes, tmp_path: Path, path, new) -> None:
    header, payload = _split(seed)
    config = json.loads(header["__metadata__"]["config"])
    header["__metadata__"]["config"] = json.dumps(_replace_at(config, path, new))
    _check_load(tmp_path / "m.safetensors", _join(header, payload))


@fuzz_settings(share=1 / 3)
@given(data=st.data())
def test_tensor_entries_with_any_dtype_shape_or_offsets(seed: bytes, tmp_path: Path, data) -> None:
    header, payload = _split(seed)
    key = data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    field = data.draw(st.sampled_from(("dtype", "shape", "data_offsets", "drop", "extra")))
    if field == "dtype":
        header[key]["dtype"] = data.draw(st.sampled_from(("F16", "BF16", "F64", "I8", "U8", "BOOL", "I64", "X")))
    elif field == "shape":
        header[key]["shape"] = data.draw(st.lists(st.sampled_from((0, 1, 2, 3, 2**31, 2**62)), max_size=5))
    elif field == "data_offsets":
        header[key]["data_offsets"] = data.draw(st.lists(st.integers(-1, len(payload) + 10), min_size=0, max_size=3))
    elif field == "drop":
        del header[key]
    else:
        header[key + ".extra"] = dict(header[key])
    _check_load(tmp_path / "m.safetensors", _join(header, payload))


@fuzz_settings()
@given(data=st.data())
def test_mutated_headers_load_or_raise_model_file_error(seed: bytes, tmp_path: Path, data) -> None:
    (length,) = struct.unpack("<Q", seed[:8])
    head = data.draw(mutated([seed[:8 + length]]))
    _check_load(tmp_path / "m.safetensors", head + seed[8 + length:])


@fuzz_settings()
@given(st.one_of(json_values.map(json.dumps), st.text(max_size=200)))
def test_config_json_parses_or_raises_value_error(text: str) -> None:
    try:
        config = ChannelConfig.from_json(text)
    except ValueError as error:
        assert "\n" not in str(error)
        return
    assert isinstance(config, ChannelConfig)
