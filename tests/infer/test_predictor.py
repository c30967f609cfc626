"""csnet.Predictor: the test protocol, input and output kinds, batching, threads, backends, errors."""
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import csnet
from csnet.infer import protocol
from csnet.infer.backends import BackendError, available_backends, resolve_device
from csnet.infer.predictor import Predictor, choose_backend, postprocess_logits, preprocess_image
from csnet.io.images import ImageLoadError
from csnet.models import ModelFileError
from tests.infer.helpers import SIZE, gradient_image, model_file, onnx_file, photos, shared_predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shape", [(8, 8), (224, 224), (225, 301), (1, 500), (700, 37)])
def test_resizes_equal_the_protocol_bit_for_bit(shape):
    image = gradient_image(*shape, seed=shape[0])
    assert np.array_equal(preprocess_image(image), protocol.preprocess(image)[0].numpy())
    logits = np.random.default_rng(1).normal(0, 3, (224, 224)).astype(np.float32)
    assert np.array_equal(postprocess_logits(logits, *shape), protocol.postprocess(logits, shape))


def test_postprocess_float_and_threshold():
    logits = np.random.default_rng(2).normal(0, 3, (224, 224)).astype(np.float32)
    as_float = postprocess_logits(logits, 50, 70, dtype=np.float32)
    assert as_float.dtype == np.float32 and 0 <= as_float.min() and as_float.max() <= 1
    assert np.abs(np.rint(as_float * 255) - protocol.postprocess(logits, (50, 70))).max() <= 1
    binary = postprocess_logits(logits, 50, 70, threshold=0.5)
    assert set(np.unique(binary)) <= {0, 255}
    assert np.array_equal(binary == 255, as_float >= 0.5)


def test_predictor_equals_the_protocol_on_real_photos():
    predictor = Predictor(shared_predictor().module, backend="torch", size=224)
    model = predictor.module
    for path in photos(2):
        image = csnet.io.images.load_image(path)
        with torch.inference_mode():
            expected = protocol.postprocess(model(protocol.preprocess(image)), image.shape[:2])
        mask = predictor.predict(path)
        assert isinstance(mask, Image.Image) and mask.mode == "L" and mask.size == (image.shape[1], image.shape[0])
        assert np.abs(np.asarray(mask).astype(int) - expected).max() <= 1
        assert np.asarray(mask).std() > 5  # the test model's masks are not flat


def test_returns_the_kind_it_was_given():
    predictor = shared_predictor()
    image = gradient_image(40, 60)
    pil = Image.fromarray(image)
    out = predictor.predict(pil)
    assert isinstance(out, Image.Image) and out.mode == "L" and out.size == (60, 40)
    out = predictor.predict(image)
    assert out.dtype == np.uint8 and out.shape == (40, 60)
    out_float = predictor.predict(image.astype(np.float32) / 255)
    assert out_float.dtype == np.float32 and out_float.shape == (40, 60)
    assert 0 <= out_float.min() and out_float.max() <= 1
    assert np.abs(out_float * 255 - out).max() <= 1.0
    gray = predictor.predict(image[:, :, 0])
    assert gray.shape == (40, 60)
    rgba = np.concatenate([image, np.zeros((40, 60, 1), np.uint8)], axis=2)
    assert np.array_equal(predictor.predict(rgba), out)  # alpha is ignored
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    assert predictor.predict(buffer.getvalue()).size == (60, 40)
    many = predictor.predict([image, pil, image[:10, :20]])
    assert isinstance(many, list) and [type(m) for m in many] == [np.ndarray, Image.Image, np.ndarray]
    assert many[2].shape == (10, 20)


def test_cutout_kinds():
    predictor = shared_predictor()
    image = gradient_image(30, 50)
    mask = predictor.predict(image)
    rgba = predictor.cutout(image)
    assert rgba.shape == (30, 50, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[:, :, :3], image) and np.array_equal(rgba[:, :, 3], mask)
    pil = predictor.cutout(Image.fromarray(image))
    assert pil.mode == "RGBA" and pil.size == (50, 30)
    as_float = predictor.cutout(image / 255.0)
    assert as_float.shape == (30, 50, 4) and as_float.dtype == np.float32
    binary = predictor.cutout([image], threshold=0.5)[0]
    assert set(np.unique(binary[:, :, 3])) <= {0, 255}


def test_batches_give_the_same_masks_as_single_images():
    predictor = Predictor(model_file(), backend="torch", batch_size=2, size=SIZE)
    images = [gradient_image(h, w, seed=h) for h, w in [(40, 60), (64, 64), (33, 17), (100, 80), (8, 8)]]
    batched = predictor.predict(images)
    for image, mask in zip(images, batched):
        assert np.abs(predictor.predict(image).astype(int) - mask).max() <= 1


def test_image_modes_and_orientation(tmp_path):
    predictor = shared_predictor()
    rgb = gradient_image(48, 64)
    files = {}
    for mode in ("L", "RGBA", "P", "CMYK", "1"):
        files[mode] = tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.fromarray(rgb).convert(mode).save(files[mode])
    Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 257)).save(tmp_path / "16bit.png")
    files["I;16"] = tmp_path / "16bit.png"
    for mode, path in files.items():
        mask = predictor.predict(path)
        assert mask.size == (64, 48), mode
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif)
    assert predictor.predict(tmp_path / "rotated.jpg").size == (48, 64)  # the upright size
    assert predictor.predict(Image.open(tmp_path / "rotated.jpg")).size == (64, 48)  # PIL: its own grid
    Image.fromarray(rgb[:8, :8]).save(tmp_path / "tiny.png")
    assert predictor.predict(tmp_path / "tiny.png").size == (8, 8)


def test_large_images_and_pixel_limit(tmp_path):
    predictor = Predictor(model_file(), backend="torch", max_pixels=1_000_000, size=SIZE)
    huge = np.zeros((3000, 4000, 3), np.uint8)
    huge[1000:2000, 1500:2500] = 200
    mask = predictor.predict(huge)  # arrays are not limited; the map is written in row blocks
    assert mask.shape == (3000, 4000)
    Image.new("1", (2000, 2000)).save(tmp_path / "big.png")  # 4 megapixels in a few KB
    with pytest.raises(ImageLoadError, match="too large"):
        predictor.predict(tmp_path / "big.png")


def test_shared_across_threads():
    predictor = shared_predictor()
    images = [gradient_image(32 + 8 * i, 48, seed=i) for i in range(8)]
    expected = [predictor.predict(image) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(predictor.predict, images))
    for want, got in zip(expected, results):
        assert np.array_equal(want, got)


def test_input_errors(tmp_path):
    predictor = shared_predictor()
    with pytest.raises(TypeError, match="cannot predict on a dict"):
        predictor.predict({})
    with pytest.raises(TypeError, match="tensors"):
        predictor.predict(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((8, 8, 3), np.uint16))
    with pytest.raises(ValueError, match="shape"):
        predictor.predict(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="threshold"):
        predictor.predict(np.zeros((8, 8, 3), np.uint8), threshold=2)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        predictor.predict(tmp_path / "bad.jpg")


def test_model_and_backend_errors(tmp_path):
    from csnet.models import DEFAULT_MODEL
    from csnet.models.weights import PRETRAINED

    if DEFAULT_MODEL not in PRETRAINED:
        with pytest.raises(ModelFileError, match="bundled model"):  # no silent fallback
            Predictor()
    with pytest.raises(ModelFileError, match="nope"):
        Predictor("nope")
    with pytest.raises(ModelFileError, match="no bundled weights"):
        Predictor("csnet_l_x1")  # random weights are never used silently
    with pytest.raises(ModelFileError, match="no such file"):
        Predictor(tmp_path / "missing.onnx")
    with pytest.raises(BackendError, match="unknown backend"):
        Predictor(model_file(), backend="tensorrt")
    with pytest.raises(BackendError, match="onnxruntime"):
        Predictor(onnx_file(), backend="torch")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA"):
            resolve_device("cuda")


def test_auto_backend_choice(monkeypatch):
    from csnet.infer.backends.openvino_backend import OpenVinoBackend

    assert choose_backend("auto", "cpu", onnx_file=True) == "onnxruntime"
    assert choose_backend("auto", "cuda", onnx_file=False) == "torch"
    monkeypatch.setattr(OpenVinoBackend, "available", classmethod(lambda cls: True))
    assert choose_backend("auto", "cpu", onnx_file=False) == "openvino"
    monkeypatch.setattr(OpenVinoBackend, "available", classmethod(lambda cls: False))
    assert choose_backend("auto", "cpu", onnx_file=False) == "fast"
    assert choose_backend("torch", "cpu", onnx_file=False) == "torch"
    assert "fast" in available_backends()


@pytest.mark.parametrize("backend", ["fast", "openvino"])
def test_fused_backends_match_torch_on_any_size(backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    model = shared_predictor().module
    images = [gradient_image(40, 60), gradient_image(75, 31, seed=3)]
    chosen = Predictor(model, backend=backend, size=SIZE)
    assert chosen.backend_name == backend and chosen.describe()["backend"] == backend
    if backend == "fast":
        assert chosen.backend.runtime == "fast-jit"
    for size in (SIZE, (48, 80)):  # the fused paths pad to their multiple of 16 and crop back
        torch_predictor = Predictor(model, backend="torch", size=size)
        fast = Predictor(model, backend=backend, size=size)
        batch = np.stack([torch_predictor.preprocess(image) for image in images])
        want, got = torch_predictor.infer(batch), fast.infer(batch)
        # fp32 rounding through ~40 layers grows with the logits (up to ~7 here): 1e-4 relative to them.
        assert np.abs(got - want).max() < 1e-4 * max(1.0, float(np.abs(want).max()))
        for want, got in zip(torch_predictor.predict(images), fast.predict(images)):
            assert np.abs(np.asarray(want, dtype=int) - np.asarray(got, dtype=int)).max() <= 1


def test_fast_backend_refuses_models_it_does_not_know():
    with pytest.raises(BackendError, match="CSNet"):
        Predictor(torch.nn.Conv2d(3, 1, 1), backend="fast")
    with pytest.raises(BackendError, match="CSNet"):
        Predictor(torch.nn.Conv2d(3, 1, 1), backend="openvino")
    predictor = Predictor(torch.nn.Conv2d(3, 1, 1), size=SIZE)  # auto falls back to PyTorch
    assert predictor.backend_name == "torch"


def test_module_input_and_describe():
    model = shared_predictor().module
    predictor = Predictor(model, backend="torch", size=SIZE)
    info = predictor.describe()
    assert info["name"] == "csnet_l_x1" and info["params"] == 93_647 and info["backend"] == "torch"
    assert "csnet_l_x1" in repr(predictor)
    assert csnet.Predictor is Predictor


def test_onnxruntime_backend_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    images = [gradient_image(40, 60), gradient_image(75, 31, seed=3)]
    expected = shared_predictor().predict(images)
    predictor = Predictor(onnx_file(), threads=1, size=SIZE)  # auto: an .onnx file runs on onnxruntime
    assert predictor.backend_name == "onnxruntime" and predictor.module is None
    for want, got in zip(expected, predictor.predict(images)):
        assert np.abs(want.astype(int) - got).max() <= 1


def test_onnxruntime_backend_exports_model_files_once_into_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import csnet.infer.onnx_export as onnx_export

    calls, exported = [], onnx_file().read_bytes()  # made before the patch: onnx_file() exports too

    def fake_export(model, **kwargs):  # the real export is tested in test_onnx_export.py
        calls.append(model)
        return exported

    monkeypatch.setattr(onnx_export, "export_onnx_bytes", fake_export)
    image = gradient_image(40, 60)
    first = Predictor(model_file(), backend="onnxruntime", cache_dir=tmp_path, threads=1, size=SIZE)
    assert len(calls) == 1 and len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    second = Predictor(model_file(), backend="onnxruntime", cache_dir=tmp_path, threads=1, size=SIZE)
    assert len(calls) == 1  # reused
    assert np.array_equal(first.predict(image), second.predict(image))
    Predictor(model_file(), backend="onnxruntime", cache_dir=False, threads=1, size=SIZE)
    assert len(calls) == 2 and len(list((tmp_path / "onnx").glob("*.onnx"))) == 1  # in memory


def test_openvino_backend_keeps_its_export_and_compiled_models_in_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from csnet.infer import fast_backends

    real_export, calls = fast_backends.export_core_onnx, []

    def counting_export(fast, **kwargs):
        calls.append(fast)
        return real_export(fast, **kwargs)

    monkeypatch.setattr(fast_backends, "export_core_onnx", counting_export)
    image = gradient_image(40, 60)
    first = Predictor(model_file(), backend="openvino", cache_dir=tmp_path, threads=1, size=SIZE)
    mask = first.predict(image)
    assert len(calls) == 1 and len(list((tmp_path / "openvino").glob("*.onnx"))) == 1
    assert list((tmp_path / "openvino" / "compiled").iterdir())  # OpenVINO's compiled blob
    second = Predictor(model_file(), backend="openvino", cache_dir=tmp_path, threads=1, size=SIZE)
    assert len(calls) == 1  # reused
    assert np.array_equal(mask, second.predict(image))
    Predictor(model_file(), backend="openvino", cache_dir=False, threads=1, size=SIZE)
    assert len(calls) == 2  # in memory


def test_auto_falls_back_openvino_then_fast_then_torch(monkeypatch, caplog):
    from csnet.infer.backends import fast_backend, openvino_backend

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(openvino_backend.OpenVinoBackend, "available", classmethod(lambda cls: True))
    monkeypatch.setattr(openvino_backend.OpenVinoBackend, "__init__", broken)
    predictor = Predictor(model_file(), backend="auto", device="cpu", size=SIZE)
    assert predictor.backend_name == "fast" and "openvino backend unavailable" in caplog.text
    monkeypatch.setattr(fast_backend.FastBackend, "__init__", broken)
    predictor = Predictor(model_file(), backend="auto", device="cpu", size=SIZE)
    assert predictor.backend_name == "torch" and "fast backend unavailable" in caplog.text
    with pytest.raises(RuntimeError, match="unsupported"):
        Predictor(model_file(), backend="fast", size=SIZE)  # an explicit choice does not fall back
