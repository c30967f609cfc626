"""ONNX export of the fused network: dynamic batch/height/width, onnx.checker, ONNX Runtime within 1e-4 of the
eager PyTorch model (the parity of what `csnet export` writes)."""
import numpy as np
import pytest
import torch

from csnet.infer.onnx_export import check_onnx, export_onnx_bytes
from csnet.models import load_model
from tests.infer.helpers import model_file, onnx_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


SHAPES = [(1, 3, 224, 224), (3, 3, 225, 301), (2, 3, 8, 8)]  # batch 1 and 3, multiple of 16 or not


def _compare(model, path, relative):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for shape in SHAPES:
        x = torch.randn(*shape, generator=generator)
        with torch.inference_mode():
            expected = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == expected.shape
        scale = max(1.0, float(np.abs(expected).max())) if relative else 1.0
        assert np.abs(got - expected).max() < 1e-4 * scale, shape
        assert expected.std() > 0.1  # a model with real outputs, not ~0 logits


def test_released_model_exports_within_1e4(tmp_path):
    """The released CSNet-L-x1 (imported from ../shared, never bundled) through ONNX: |ORT - torch| < 1e-4."""
    from csnet.infer.onnx_export import export_onnx
    from csnet.models.official import import_official
    from tests.shared_data import require_shared

    folder = require_shared("weights", "official")
    model = import_official(folder / "csnet-L-x1.pth.tar", folder / "csnet-L-x1.bin").eval()
    path = export_onnx(model, tmp_path / "released.onnx")
    _compare(model, path, relative=False)


def test_export_is_dynamic_checked_and_matches_pytorch():
    """The test model has larger activations than trained ones: the 1e-4 is relative to its logits."""
    path = onnx_file()
    check_onnx(path)
    check_onnx(path.read_bytes())
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert [o.name for o in graph.output] == ["logits"]

    _compare(load_model(model_file()), path, relative=True)


def test_the_export_is_the_fused_graph():
    from csnet.infer.fused import fuse

    model = load_model(model_file())
    graph = onnx.load_from_string(export_onnx_bytes(model)).graph
    convs = sum(node.op_type == "Conv" for node in graph.node)
    assert "BatchNormalization" not in {node.op_type for node in graph.node}  # folded
    assert convs == fuse(model, "onnx").core.code.count("conv2d(")  # links merged: as many convs as fused
    assert convs < sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    ops = {variant: {node.op_type for node in onnx.load_from_string(export_onnx_bytes(model, variant=variant)).graph.node}
           for variant in ("openvino", "openvino-interpolate")}
    assert "ConvTranspose" in ops["openvino"] and "Resize" not in ops["openvino"]  # upsampling as transposed convs
    assert "Resize" in ops["openvino-interpolate"] and "ConvTranspose" not in ops["openvino-interpolate"]
    with pytest.raises(ValueError, match="unknown export variant"):
        export_onnx_bytes(model, variant="tensorrt")
    with pytest.raises(TypeError, match="CSNet"):
        export_onnx_bytes(torch.nn.Conv2d(3, 1, 1))


def test_check_rejects_a_broken_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(Exception):
        check_onnx(tmp_path / "bad.onnx")
