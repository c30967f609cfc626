"""Fuzz target: the released-config reader (csnet.io.safe_pickle.load_numpy_pickle): mutated real-shaped
``.bin`` pickles, pickles of random plain data, and random opcode streams."""
from __future__ import annotations

import pickle
import pickletools
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from csnet.io.safe_pickle import UnsafePickleError, load_numpy_pickle
from tests.fuzz.strategies import fuzz_settings, mutated


def _release_like(protocol: int) -> bytes:
    """The shape of the authors' ``.bin`` files: 21 ``[in, out]`` entries of numpy int arrays."""
    entries = [[np.array([10, 10]), np.array([10, 10])] for _ in range(20)] + [[3, 4, 6, 4]]
    return pickle.dumps(entries, protocol=protocol)


SEEDS = [_release_like(p) for p in (2, 3, 4, 5)] + [pickle.dumps({"a": (1.5, "x", [np.float32(2)])}, protocol=2)]
OPCODES = [op.code.encode("latin-1") for op in pickletools.opcodes]

plain = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                               ),
                     lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                             st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=10)


def _check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        load_numpy_pickle(path)
    except UnsafePickleError as error:
        assert "\n" not in str(error) and str(path) in str(error)


@fuzz_settings()
@given(data=mutated(SEEDS))
def test_mutated_release_configs_load_or_raise_unsafe_pickle_error(tmp_path: Path, data: bytes) -> None:
    _check(tmp_path / "c.bin", data)


@fuzz_settings()
@given(value=plain, protocol=st.integers(0, 5))
def test_plain_data_round_trips(tmp_path: Path, value, protocol: int) -> None:
    path = tmp_path / "c.bin"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    loaded = load_numpy_pickle(path)  # plain containers are what the reader is for: never refused
    assert repr(loaded) == repr(value) or loaded != loaded  # NaN is not equal to itself


@fuzz_settings()
@given(ops=st.lists(st.tuples(st.sampled_from(OPCODES), st.binary(max_size=9)), max_size=40))
def test_random_opcode_streams_load_or_raise_unsafe_pickle_error(tmp_path: Path, ops) -> None:
    _check(tmp_path / "c.bin", b"".join(code + arg for code, arg in ops) + b".")
