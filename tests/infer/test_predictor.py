"""csnet.Predictor: the test protocol, input and output kinds, batching, threads, runtimes, errors."""
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import csnet
from csnet.infer import protocol
from csnet.infer.predictor import Predictor, postprocess_logits, preprocess_image
from csnet.infer.runtimes import RuntimeChoiceError, RuntimeUnavailable, resolve_device
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
    predictor = Predictor(shared_predictor().module, runtime="eager", size=224)
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
    predictor = Predictor(model_file(), runtime="eager", batch_size=2, size=SIZE)
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
    predictor = Predictor(model_file(), runtime="eager", max_pixels=1_000_000, size=SIZE)
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


def test_model_and_runtime_errors(tmp_path):
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
    with pytest.raises(RuntimeChoiceError, match="unknown runtime"):
        Predictor(model_file(), runtime="tensorrt")
    with pytest.raises(RuntimeChoiceError, match="onnxruntime"):
        Predictor(onnx_file(), runtime="eager")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeUnavailable, match="CUDA"):
            resolve_device("cuda")


def test_auto_runtime_choice_and_old_names(monkeypatch):
    from csnet.infer.runtimes.openvino import OpenVinoRuntime

    monkeypatch.setattr(OpenVinoRuntime, "available", classmethod(lambda cls: False))
    assert Predictor(model_file(), size=SIZE, device="cpu").runtime_name == "torchscript"
    assert Predictor(onnx_file(), size=SIZE).runtime_name == "onnxruntime"
    old = Predictor(model_file(), backend="torch", size=SIZE)  # the earlier keyword and name still work
    assert old.runtime_name == old.backend_name == "eager" and old.backend is old.runtime
    assert Predictor(model_file(), runtime="fast", size=SIZE).runtime_name == "torchscript"
    assert Predictor(torch.nn.Conv2d(3, 1, 1), size=SIZE).runtime_name == "eager"  # auto: only eager runs it


@pytest.mark.parametrize("runtime", ["torchscript", "onnxruntime", "openvino"])
def test_runtimes_match_eager_through_the_predictor_on_any_size(runtime):
    from csnet.infer.runtimes import runtime_class

    if not runtime_class(runtime).available():
        pytest.skip(f"{runtime} is not installed")
    model = shared_predictor().module
    images = [gradient_image(40, 60), gradient_image(75, 31, seed=3)]
    chosen = Predictor(model, runtime=runtime, size=SIZE, cache_dir=False)
    assert chosen.runtime_name == runtime and chosen.describe()["runtime"] == runtime
    for size in (SIZE, (48, 80)):  # the fused runtimes pad to their multiple of 16 and crop back
        eager = Predictor(model, runtime="eager", size=size)
        other = Predictor(model, runtime=runtime, size=size, cache_dir=False)
        batch = np.stack([eager.preprocess(image) for image in images])
        want, got = eager.infer(batch), other.infer(batch)
        # fp32 rounding through ~40 layers grows with the logits (up to ~7 here): 1e-4 relative to them.
        assert np.abs(got - want).max() < 1e-4 * max(1.0, float(np.abs(want).max()))
        for want, got in zip(eager.predict(images), other.predict(images)):
            assert np.abs(np.asarray(want, dtype=int) - np.asarray(got, dtype=int)).max() <= 1


def test_weight_info_drives_size_and_normalization(monkeypatch):
    from dataclasses import replace

    from csnet.models import DEFAULT_MODEL
    from csnet.models.weights import PRETRAINED

    if DEFAULT_MODEL not in PRETRAINED:
        pytest.skip("no bundled model in this build")
    info = replace(PRETRAINED[DEFAULT_MODEL], input_size=(96, 128), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    monkeypatch.setitem(PRETRAINED, DEFAULT_MODEL, info)
    predictor = Predictor(runtime="eager")
    assert predictor.size == (96, 128) and predictor.mean == (0.5, 0.5, 0.5)
    image = gradient_image(40, 60)
    expected = preprocess_image(image, (96, 128), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert np.array_equal(predictor.preprocess(image), expected)
    assert Predictor(runtime="eager", size=64).size == (64, 64)  # an explicit size wins


def test_module_input_and_describe():
    model = shared_predictor().module
    predictor = Predictor(model, runtime="eager", size=SIZE)
    info = predictor.describe()
    assert info["name"] == "csnet_l_x1" and info["params"] == 93_647 and info["runtime"] == info["backend"] == "eager"
    assert "csnet_l_x1" in repr(predictor)
    assert csnet.Predictor is Predictor


def test_onnxruntime_runs_onnx_files_like_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    images = [gradient_image(40, 60), gradient_image(75, 31, seed=3)]
    expected = shared_predictor().predict(images)
    predictor = Predictor(onnx_file(), threads=1, size=SIZE)  # auto: an .onnx file runs on onnxruntime
    assert predictor.runtime_name == "onnxruntime" and predictor.module is None
    for want, got in zip(expected, predictor.predict(images)):
        assert np.abs(want.astype(int) - got).max() <= 1
