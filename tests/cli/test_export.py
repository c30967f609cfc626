"""`csnet export`: a checked, verified ONNX file with dynamic shapes."""
import pytest

from csnet.cli.main import main
from tests.infer.helpers import model_file, onnx_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_export_writes_a_verified_onnx(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "models" / "m.onnx"
    assert main(["export", str(model_file()), "-o", str(out), "--no-verify"]) == 0
    assert "onnx.checker ok" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(out)))
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]  # written atomically, no leftovers


def test_verify_compares_onnxruntime_with_pytorch():
    pytest.importorskip("onnxruntime")
    from csnet.cli.export import verify
    from csnet.models import load_model

    difference, scale = verify(load_model(model_file()), str(onnx_file()), sizes=((1, 64, 64), (2, 45, 67)))
    assert scale > 1 and difference < 1e-4 * scale


@pytest.mark.parametrize("args, message", [
    (["nope", "-o", "{tmp}/m.onnx"], "nope"),
    (["{model}", "-o", "{tmp}/m.txt"], ".onnx"),
    (["{tmp}/missing.safetensors", "-o", "{tmp}/m.onnx"], "no such file"),
])
def test_export_errors_are_one_line(tmp_path, capsys, args, message):
    argv = [a.format(tmp=tmp_path, model=model_file()) for a in args]
    assert main(["export", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
