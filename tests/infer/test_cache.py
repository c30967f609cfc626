"""csnet.infer.cache.cached_file: made once, reused, and an unwritable cache falls back to memory."""
from csnet.infer.cache import cached_file


def test_cached_file_is_made_once_and_unwritable_caches_give_the_bytes(tmp_path):
    calls = []

    def make() -> bytes:
        calls.append(1)
        return b"model"

    path = tmp_path / "sub" / "model.onnx"
    assert cached_file(path, make) == path and path.read_bytes() == b"model"
    assert cached_file(path, make) == path and len(calls) == 1
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert cached_file(blocked / "model.onnx", make) == b"model" and len(calls) == 2
