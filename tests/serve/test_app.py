"""The service through FastAPI's TestClient (no socket): endpoints, limits, errors, batching, no disk."""
import io
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.infer.helpers import gradient_image, photos, shared_predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns about its httpx dependency
    from fastapi.testclient import TestClient

from csnet.serve.app import create_app  # noqa: E402
from csnet.serve.batching import MicroBatcher  # noqa: E402

LOCAL = "http://127.0.0.1:8000"  # the Host a browser sends to a local service (TestClient says "testserver")


def png_bytes(array, image_format="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(one_torch_thread):
    app = create_app(shared_predictor(), max_upload_bytes=300_000, max_pixels=2_000_000, max_wait_ms=2)
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


def post(client, data, output=None, **params):
    if output:
        params["output"] = output
    return client.post("/v1/saliency", params=params, files={"image": ("photo.png", data, "image/png")})


def test_health_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok", "model": "test_model.safetensors"}
    (model,) = client.get("/v1/models").json()["models"]
    assert model["params"] == 93_647 and model["backend"] == "eager"
    assert model["limits"]["max_upload_bytes"] == 300_000


def test_mask_cutout_and_json_on_a_real_photo(client):
    data = photos(1)[0].read_bytes()
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    response = post(client, data)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    mask = Image.open(io.BytesIO(response.content))
    assert mask.mode == "L" and mask.size == (image.shape[1], image.shape[0])
    assert np.array_equal(np.asarray(mask), shared_predictor().predict(image))

    cutout = Image.open(io.BytesIO(post(client, data, "cutout").content))
    assert cutout.mode == "RGBA" and np.array_equal(np.asarray(cutout)[:, :, 3], np.asarray(mask))

    region = post(client, data, "json", threshold=0.5).json()
    binary = np.asarray(mask) >= 128
    assert region["width"] == image.shape[1] and region["height"] == image.shape[0]
    assert region["area"] == pytest.approx(binary.mean(), abs=0.01)
    ys, xs = np.nonzero(binary)
    assert region["bbox"] == {"x": int(xs.min()), "y": int(ys.min()), "width": int(xs.max() - xs.min() + 1),
                              "height": int(ys.max() - ys.min() + 1)}

    binary_png = post(client, data, threshold=0.5).content
    assert set(np.unique(np.asarray(Image.open(io.BytesIO(binary_png))))) <= {0, 255}


def test_raw_body_and_field_names(client):
    data = png_bytes(gradient_image(20, 30))
    raw = client.post("/v1/saliency", content=data, headers={"content-type": "image/png"})
    assert raw.status_code == 200 and Image.open(io.BytesIO(raw.content)).size == (30, 20)
    other = client.post("/v1/saliency", files={"file": ("x.png", data, "image/png")})
    assert other.status_code == 200


def _error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["status"] == status and body["error"]["message"]
    return body["error"]["message"]


def test_limits_and_errors(client):
    big = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)  # ~480 KB as PNG
    assert "limit" in _error(post(client, png_bytes(big)), 413)

    def chunks():  # no content-length: the limit is enforced while streaming
        for _ in range(10):
            yield b"\x00" * 40_000

    assert "limit" in _error(client.post("/v1/saliency", content=chunks(),
                                         headers={"content-type": "image/png"}), 413)
    many_pixels = png_bytes(np.zeros((1500, 1500), np.uint8))  # 2.25 MP, a few KB
    assert "too large" in _error(post(client, many_pixels), 413)
    assert "not an image" in _error(post(client, b"GIF89a but not really"), 422)
    assert "empty" in _error(post(client, b""), 422)
    assert "output" in _error(post(client, png_bytes(gradient_image(8, 8)), "nope"), 422)
    assert "threshold" in _error(post(client, png_bytes(gradient_image(8, 8)), threshold=3), 422)
    _error(client.post("/v1/saliency", json={"image": "x"}), 415)
    _error(client.post("/v1/saliency", files={"other": (None, "text")}), 422)
    _error(client.get("/v1/nothing"), 404)


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN, nothing off-site
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "/v1/saliency" in script.text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    _error(client.get("/static/../app.py"), 404)


def test_concurrent_requests_share_forward_passes():
    predictor = shared_predictor()
    app = create_app(predictor, max_batch=8, max_wait_ms=100)
    images = [gradient_image(24 + 4 * i, 32, seed=i) for i in range(8)]
    with TestClient(app, base_url=LOCAL) as client, ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda im: post(client, png_bytes(im)), images))
        batcher = app.state.batcher
    for image, response in zip(images, responses):
        assert response.status_code == 200
        mask = np.asarray(Image.open(io.BytesIO(response.content))).astype(int)
        assert np.abs(mask - predictor.predict(image)).max() <= 1  # batched vs alone: float rounding
    assert batcher.items == 8 and batcher.batches < 8 and batcher.largest_batch > 1


def test_micro_batcher_groups_and_propagates_errors():
    calls = []

    def infer(batch):
        calls.append(len(batch))
        if np.any(batch < 0):
            raise ValueError("negative input")
        return batch * 2

    batcher = MicroBatcher(infer, max_batch=4, max_wait_ms=200)
    barrier = threading.Barrier(6)

    def submit(i):
        barrier.wait()
        return batcher.submit(np.full((1,), float(i))).result(timeout=10)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(submit, range(6)))
    assert [float(r[0]) for r in results] == [0, 2, 4, 6, 8, 10]
    assert sum(calls) == 6 and max(calls) <= 4 and len(calls) < 6
    with pytest.raises(ValueError, match="negative"):
        batcher.submit(np.full((1,), -1.0)).result(timeout=10)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(np.zeros(1))


def test_requests_never_touch_the_file_system(monkeypatch):
    """A 1.5 MB upload (over Starlette's 1 MB spooling threshold) is decoded from memory only."""
    import builtins
    import tempfile

    app = create_app(shared_predictor(), max_upload_bytes=4_000_000)
    noise = np.random.default_rng(1).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    data = png_bytes(noise)
    assert len(data) > 1_100_000
    with TestClient(app, base_url=LOCAL) as client:
        def forbidden(*args, **kwargs):
            raise AssertionError(f"file system touched: {args[:1]}")

        for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
            monkeypatch.setattr(tempfile, name, forbidden)
        monkeypatch.setattr(builtins, "open", forbidden)
        response = post(client, data, "cutout")
        monkeypatch.undo()
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (700, 700)
