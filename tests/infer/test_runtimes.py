"""csnet.infer.runtimes: every runtime gives the eager model's logits, one registry, fallback only when unavailable.

Speed is never asserted here; see benchmarks/RESULTS.md.
"""
import os

import numpy as np
import pytest
import torch

import csnet
from csnet.infer.fused import randomize_batch_norm
from csnet.infer.runtimes import (
    AUTO_ORDER, DEPRECATED_NAMES, RUNTIMES, Runtime, RuntimeChoiceError, RuntimeUnavailable, available_runtimes,
    canonical_name, create_runtime, runtime_class,
)
from tests.shared_data import require_shared

FP32_ATOL = 1e-4
SHAPES = [(1, 3, 224, 224), (2, 3, 72, 100), (1, 3, 33, 31)]  # multiple of 16 or not, batch 1 and 2
CUDA = torch.cuda.is_available()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name: str = "csnet_l_x1", seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = randomize_batch_norm(csnet.create_model(name), generator).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.5, generator=generator)
    return model


def _input(shape, seed: int = 1) -> np.ndarray:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).numpy()


@pytest.fixture(scope="module")
def model():
    return _model()


def _skip_unless_runnable(name: str) -> str:
    cls = runtime_class(name)
    if not cls.available():
        pytest.skip(f"{name}: {cls.package} is not installed (pip install 'csnet[{cls.extra}]')")
    if "cpu" not in cls.devices and not CUDA:
        pytest.skip(f"{name} runs on CUDA only")
    if name == "compile" and os.environ.get("CSNET_TEST_COMPILE") != "1":
        pytest.skip("inductor compiles for minutes on a small CPU; set CSNET_TEST_COMPILE=1")
    return "cpu" if "cpu" in cls.devices else "cuda"


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_every_runtime_matches_the_eager_model(model, name):
    if name == "openvino-int8":
        pytest.skip("int8 changes the logits by design: test_int8_runtime_agrees_with_float32")
    device = _skip_unless_runnable(name)
    runtime = create_runtime(name, model, device=device, threads=1)
    assert isinstance(runtime, Runtime) and runtime.name == name and runtime.preset_name == "float32"
    for shape in SHAPES:
        x = _input(shape)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        out = runtime(x)
        assert np.abs(expected).max() > 1.0  # a test that can fail
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == expected.shape
        assert np.abs(out - expected).max() < FP32_ATOL * max(1.0, float(np.abs(expected).max())), shape


def test_compile_runtime_captures_the_whole_core_in_one_graph(model):
    # dynamo capture with its "eager" backend: fullgraph (no breaks) and the same numbers, in seconds
    from csnet.infer.fused import fuse
    from csnet.infer.runtimes.compile import compile_fused

    for variant in ("compile", "torch"):
        compiled = compile_fused(fuse(model, variant), backend="eager")
        x = torch.from_numpy(_input(SHAPES[1]))
        with torch.inference_mode():
            assert (compiled(x) - model(x)).abs().max().item() < FP32_ATOL


def test_registry_names_and_deprecated_names():
    assert list(RUNTIMES) == ["eager", "torchscript", "compile", "onnxruntime", "openvino", "openvino-int8",
                             "cuda-graph"]
    assert {"eager", "torchscript"} <= set(available_runtimes())
    assert all(name in RUNTIMES for order in AUTO_ORDER.values() for name in order)
    for old, new in DEPRECATED_NAMES.items():
        assert canonical_name(old) == new and runtime_class(old) is runtime_class(new)
    assert canonical_name(None) == "auto" and canonical_name("OpenVINO") == "openvino"
    with pytest.raises(RuntimeChoiceError, match="unknown runtime 'tensorrt'"):
        runtime_class("tensorrt")
    for name in RUNTIMES:  # one constructor signature, one preset table with the default in it
        cls = runtime_class(name)
        assert cls.default_preset in cls.presets and all(hasattr(p, "dtype") for p in cls.presets.values())


def test_presets_and_model_kinds(model, tmp_path):
    with pytest.raises(RuntimeChoiceError, match="no preset 'int4'"):
        create_runtime("eager", model, preset="int4")
    with pytest.raises(RuntimeChoiceError, match="applies to one runtime"):  # never silently the default
        create_runtime("auto", model, preset="bfloat16")
    conv = torch.nn.Conv2d(3, 1, 1)
    for name in ("torchscript", "openvino"):
        if runtime_class(name).available():
            with pytest.raises(RuntimeUnavailable, match="CSNet"):
                create_runtime(name, conv)
    assert create_runtime("auto", conv).name == "eager"  # auto moves on: the fused runtimes cannot run it
    with pytest.raises(RuntimeChoiceError, match="onnxruntime"):
        create_runtime("eager", str(tmp_path / "m.onnx"))
    if not CUDA:
        with pytest.raises(RuntimeUnavailable, match="runs on cuda"):
            create_runtime("cuda-graph", model)
        if runtime_class("openvino").available():
            with pytest.raises(RuntimeUnavailable, match="runs on cpu"):
                create_runtime("openvino", model, device="cuda")


def test_auto_falls_back_only_when_a_runtime_is_unavailable(model, monkeypatch, caplog):
    from csnet.infer.runtimes import openvino, torchscript

    caplog.set_level("INFO", logger="csnet.infer.runtimes")
    monkeypatch.setattr(openvino.OpenVinoRuntime, "available", classmethod(lambda cls: False))
    assert create_runtime("auto", model).name == "torchscript"  # OpenVINO not installed
    assert "openvino runtime unavailable" in caplog.text

    def broken(self, model):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torchscript.TorchScriptRuntime, "setup", broken)
    with pytest.raises(RuntimeError, match="unsupported operator"):  # a bug is raised, never a silent downgrade
        create_runtime("auto", model)


def test_openvino_keeps_few_compiled_shapes_and_runs_bfloat16(model):
    pytest.importorskip("openvino")
    runtime = create_runtime("openvino", model, threads=1)
    runtime.max_shapes = 2
    for height in (32, 64, 96, 64):
        runtime(_input((1, 3, height, 32)))
    assert runtime.compiled_shapes == [(1, 3, 96, 32), (1, 3, 64, 32)]  # most recently used last, oldest dropped
    runtime(_input((3, 3, 64, 32)))  # a batch runs image by image on the compiled batch-1 shape
    assert runtime.compiled_shapes == [(1, 3, 96, 32), (1, 3, 64, 32)]
    bf16 = create_runtime("openvino", model, threads=1, preset="bfloat16")
    x = _input(SHAPES[0])
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    # CPUs without bf16 units run it in fp32; with them, bf16 must stay within 1e-2 on average
    assert np.abs(1 / (1 + np.exp(-bf16(x))) - expected).mean() < 1e-2


def test_openvino_compiles_unpinned_threads_as_its_preset_says(model):
    pytest.importorskip("openvino")
    runtime = create_runtime("openvino", model, threads=2)
    compiled = runtime.request((1, 3, 32, 32)).get_compiled_model()
    # pinned threads made 2-thread latency flip to 1-thread latency (benchmarks/RESULTS.md): OpenVINO must not pin
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 2 and compiled.get_property("NUM_STREAMS") == 1
    # CPU_DENORMALS_OPTIMIZATION stays off: it sets the calling thread's flush-to-zero state, process-wide
    # floating-point behaviour a library must not change for its caller
    assert compiled.get_property("CPU_DENORMALS_OPTIMIZATION") is False


def _calibration_list(folder, count: int = 3, side: int = 32):
    from PIL import Image

    rng = np.random.default_rng(3)
    lines = []
    for i in range(count):  # smooth colour fields, so activations have a photo's range rather than noise's
        low = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        path = folder / f"cal{i}.png"
        Image.fromarray(low).resize((side, side), Image.BILINEAR).save(path)
        lines.append(str(path))
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    return folder / "train.txt"


def test_int8_runtime_agrees_with_float32(model, tmp_path, monkeypatch):
    pytest.importorskip("nncf")
    from csnet.infer import runtimes
    from csnet.infer.runtimes import openvino_int8

    monkeypatch.delenv(openvino_int8.CALIBRATION_ENV, raising=False)
    with pytest.raises(RuntimeUnavailable, match=openvino_int8.CALIBRATION_ENV):
        create_runtime("openvino-int8", model, threads=1)
    monkeypatch.setattr(openvino_int8, "CALIBRATION_SIZE", 32)  # the size the test images are scored at
    monkeypatch.setenv(openvino_int8.CALIBRATION_ENV, str(_calibration_list(tmp_path)))
    int8 = create_runtime("openvino-int8", model, threads=1, cache_dir=tmp_path / "cache")
    assert int8.preset_name == "int8" and "openvino-int8" not in runtimes.AUTO_ORDER["cpu"]  # opt-in only
    fp32 = create_runtime("openvino", model, threads=1)
    from csnet.infer.predictor import preprocess_image
    from csnet.io.images import load_image

    x = preprocess_image(load_image(tmp_path / "cal0.png"), 32)[None]
    probs = [1 / (1 + np.exp(-runtime(x))) for runtime in (fp32, int8)]
    assert np.abs(probs[0] - probs[1]).mean() < 0.02  # int8 steps, not a different network
    assert not np.array_equal(probs[0], probs[1])  # it is quantized (a test that can fail)
    assert list((tmp_path / "cache" / "openvino-int8").glob("*.xml"))  # calibrated once, kept


def test_exports_are_cached_once_and_keyed_by_preset_and_weights(model, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import csnet.infer.onnx_export as onnx_export
    from csnet.infer.cache import cache_key

    real, calls = onnx_export.export_onnx_bytes, []

    def counting(module, **kwargs):
        calls.append(kwargs.get("variant", "onnx"))
        return real(module, **kwargs)

    monkeypatch.setattr(onnx_export, "export_onnx_bytes", counting)
    x = _input(SHAPES[1])
    first = create_runtime("onnxruntime", model, cache_dir=tmp_path, threads=1)(x)
    second = create_runtime("onnxruntime", model, cache_dir=tmp_path, threads=1)(x)
    assert calls == ["onnx"] and np.array_equal(first, second)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    if runtime_class("openvino").available():
        create_runtime("openvino", model, cache_dir=tmp_path, threads=1)(x)
        create_runtime("openvino", model, cache_dir=tmp_path, threads=1)(x)
        assert calls == ["onnx", "openvino"]
        assert list((tmp_path / "openvino" / "compiled").iterdir())  # OpenVINO's compiled blob
        create_runtime("openvino", model, cache_dir=tmp_path, threads=1, preset="bfloat16")(x)
        assert calls == ["onnx", "openvino", "openvino-interpolate"]  # a preset with its own export has its own entry
        assert len(list((tmp_path / "openvino").glob("*.onnx"))) == 2
    other = _model(seed=1)
    assert cache_key(model, "onnx") != cache_key(other, "onnx") != cache_key(other, "openvino")
    assert cache_key(model, "onnx") == cache_key(_model(), "onnx")


def test_released_weights_through_every_cpu_runtime():
    from csnet.models.official import import_official

    weights = require_shared("weights", "official")
    data = np.load(require_shared("reference", "official_io.npz"))
    model = import_official(weights / "csnet-L-x1.pth.tar", weights / "csnet-L-x1.bin").eval()
    for name in ("torchscript", "onnxruntime", "openvino"):
        if runtime_class(name).available():
            out = create_runtime(name, model, threads=2)(data["inputs"])
            assert np.abs(out - data["logits_L_x1"]).max() < FP32_ATOL, name


def test_tune_malloc_applies_or_says_it_does_not():
    from csnet.cli.malloc import tune_malloc

    assert tune_malloc() in (True, False)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("preset", ["float32", "float16"])
def test_cuda_graph_runtime_matches_and_replays(model, preset):
    runtime = create_runtime("cuda-graph", model, device="cuda", preset=preset)
    x = _input((4, 3, 224, 224))
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    out = 1 / (1 + np.exp(-runtime(x)))
    again = 1 / (1 + np.exp(-runtime(x)))  # replay
    assert np.abs(out - expected).max() < (1e-4 if preset == "float32" else 1e-2)
    assert np.array_equal(out, again)
