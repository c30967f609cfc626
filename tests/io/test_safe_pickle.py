"""The numpy-only unpickler: the allow-list is exact and checked before any import; small files stay small."""
import pickle
import sys
import time

import numpy as np
import pytest

from csnet.io.safe_pickle import UnsafePickleError, load_numpy_pickle


def _global_pickle(module: str, name: str) -> bytes:
    """A protocol-2 pickle that loads ``module.name`` (and would call it with no arguments)."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."


def test_refused_name_is_never_imported(tmp_path, monkeypatch):
    # a module whose name starts with "numpy" and whose import has a visible side effect
    marker = tmp_path / "imported"
    (tmp_path / "numpy_hostile.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass EvilDType: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "evil.bin"
    path.write_bytes(_global_pickle("numpy_hostile", "EvilDType"))
    with pytest.raises(UnsafePickleError, match=r"evil.bin: refused global numpy_hostile\.EvilDType"):
        load_numpy_pickle(path)
    assert not marker.exists() and "numpy_hostile" not in sys.modules


def test_numpy_submodule_outside_the_list_is_refused(tmp_path):
    path = tmp_path / "f2py.bin"
    path.write_bytes(_global_pickle("numpy.f2py.__main__", "main"))
    with pytest.raises(UnsafePickleError, match=r"refused global numpy\.f2py\.__main__\.main"):
        load_numpy_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_arrays_and_scalars_load_in_every_protocol(tmp_path, protocol):
    data = [np.arange(4.0), {"k": np.float32(1.5), "n": np.int64(3)}, np.array([1, 2], dtype=">i2")]
    path = tmp_path / "ok.bin"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_numpy_pickle(path)
    assert np.array_equal(loaded[0], data[0]) and loaded[1] == data[1] and np.array_equal(loaded[2], data[2])


def test_shared_list_bomb_is_refused_quickly(tmp_path):
    row = [0] * 1000
    plane = [row] * 1000
    bomb = [plane] * 1000  # 10^9 values once np.asarray copies the shared lists
    path = tmp_path / "bomb.bin"
    path.write_bytes(pickle.dumps(bomb, protocol=2))
    assert path.stat().st_size < 10_000
    start = time.perf_counter()
    with pytest.raises(UnsafePickleError, match=r"bomb.bin: too large once expanded: holds more than"):
        load_numpy_pickle(path)
    assert time.perf_counter() - start < 2.0


def test_deep_nesting_is_refused(tmp_path):
    value: list = []
    for _ in range(200):
        value = [value]
    path = tmp_path / "deep.bin"
    path.write_bytes(pickle.dumps(value))
    with pytest.raises(UnsafePickleError, match=r"deep.bin: too large once expanded: nested deeper than 16"):
        load_numpy_pickle(path)


def test_object_arrays_and_large_files_are_refused(tmp_path):
    path = tmp_path / "objects.bin"
    path.write_bytes(pickle.dumps(np.array([[1], [2, 3]], dtype=object)))
    with pytest.raises(UnsafePickleError, match=r"objects.bin: "):
        load_numpy_pickle(path)
    big = tmp_path / "big.bin"
    big.write_bytes(pickle.dumps(np.zeros(10, dtype=np.uint8)))
    with pytest.raises(UnsafePickleError, match=r"big.bin: .* exceeds the limit of 16 bytes"):
        load_numpy_pickle(big, max_bytes=16)
