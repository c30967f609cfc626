"""The service's refinement (default and per request), rembg's POST /api/remove, the OpenAPI description of
uploads, and the memory budget that lets 48-megapixel photos in by default."""
import asyncio
import io
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from tests.infer.helpers import gradient_image, photos, shared_predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("fastapi")
pytest.importorskip("cv2")
pytest.importorskip("pymatting")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from csnet.serve.app import create_app  # noqa: E402
from csnet.serve.budget import MemoryBudget  # noqa: E402

LOCAL = "http://127.0.0.1:8000"


def encoded(array, image_format="PNG", **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def decoded(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["status"] == status
    return body["error"]["message"]


@pytest.fixture(scope="module")
def photo():
    data = photos(1)[0].read_bytes()
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def client(one_torch_thread):
    with TestClient(create_app(shared_predictor(), max_wait_ms=1), base_url=LOCAL) as test_client:
        yield test_client


def saliency(client, data, **params):
    return client.post("/v1/saliency", params=params, files={"image": ("photo.jpg", data, "image/jpeg")})


def remove(client, data, params=None, **fields):
    return client.post("/api/remove", params=params or {}, data=fields,
                       files={"file": ("photo.jpg", data, "image/jpeg")})


def test_refine_per_request_and_by_default(client, photo):
    data, image = photo
    predictor = shared_predictor()
    plain = predictor.predict(image)
    guided = predictor.predict(image, refine="guided")
    assert np.array_equal(decoded(saliency(client, data)), plain)  # the app's default: no refinement
    assert np.array_equal(decoded(saliency(client, data, refine="guided")), guided)
    cutout = decoded(saliency(client, data, output="cutout", refine="guided"))
    assert np.array_equal(cutout, predictor.cutout(image, refine="guided"))
    assert cutout[:, :, 3].max() == 255 and cutout[:, :, 3].min() == 0
    matting = decoded(saliency(client, data, refine="matting"))
    assert np.array_equal(matting, predictor.predict(image, refine="matting"))
    assert "refine" in error_of(saliency(client, data, refine="magic"), 422)

    with TestClient(create_app(predictor, refine="guided", max_wait_ms=1), base_url=LOCAL) as refined:
        assert np.array_equal(decoded(saliency(refined, data)), guided)
        assert np.array_equal(decoded(saliency(refined, data, refine="none")), plain)
        (model,) = refined.get("/v1/models").json()["models"]
        assert model["refine"] == {"default": "guided", "available": ["guided", "matting"]}


def test_a_refinement_the_server_lacks_is_501_and_refused_at_start(monkeypatch, photo):
    from csnet.infer.refine import RefineError

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(RefineError, match=r"csnet\[refine\]"):
        create_app(shared_predictor(), refine="guided")
    with TestClient(create_app(shared_predictor(), max_wait_ms=1), base_url=LOCAL) as client:
        assert "csnet[refine]" in error_of(saliency(client, photo[0], refine="guided"), 501)
        assert saliency(client, photo[0]).status_code == 200


def test_rembg_endpoint_takes_what_rembg_clients_send(client, photo):
    data, image = photo
    predictor = shared_predictor()
    cutout = decoded(remove(client, data))
    assert cutout.shape == (*image.shape[:2], 4)
    assert np.array_equal(cutout, decoded(saliency(client, data, output="cutout")))
    # options rembg has and csnet does not need are accepted and change nothing
    assert np.array_equal(decoded(remove(client, data, af="240", ab="10", ae="10", ppm="true", model="u2net")),
                          cutout)
    mask = decoded(remove(client, data, om="true"))
    assert mask.ndim == 2 and np.array_equal(mask, predictor.predict(image))
    assert np.array_equal(decoded(remove(client, data, params={"om": "true"})), mask)  # as a query parameter
    matted = decoded(remove(client, data, a="true", om="true"))
    assert np.array_equal(matted, predictor.predict(image, refine="matting"))
    assert np.array_equal(decoded(remove(client, data, params={"refine": "guided"}, om="1")),
                          predictor.predict(image, refine="guided"))

    guided = predictor.predict(image, refine="guided")  # reaches 0 and 255, unlike the raw test model
    red = decoded(remove(client, data, params={"bgc": "255,0,0,255", "refine": "guided"}))
    assert red.shape[2] == 4 and (red[:, :, 3] == 255).all()
    background, inside = guided == 0, guided == 255
    assert background.any() and inside.any()
    assert (red[background][:, :3] == (255, 0, 0)).all() and np.array_equal(red[inside][:, :3], image[inside])
    half = decoded(remove(client, data, params={"bgc": "0,0,255,128", "refine": "guided"}))
    assert (half[background][:, 3] == 128).all() and (half[background][:, :3] == (0, 0, 255)).all()

    assert "bgc" in error_of(remove(client, data, params={"bgc": "red"}), 422)
    assert "om" in error_of(remove(client, data, om="maybe"), 422)
    assert "does not download" in error_of(client.get("/api/remove", params={"url": "http://10.0.0.1/x.jpg"}), 405)
    raw = client.post("/api/remove", content=data, headers={"content-type": "image/jpeg"})
    assert decoded(raw).shape == cutout.shape


def test_openapi_documents_the_uploads(client):
    spec = client.get("/openapi.json").json()
    rembg = spec["paths"]["/api/remove"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert rembg["properties"]["file"] == {"type": "string", "format": "binary",
                                           "description": rembg["properties"]["file"]["description"]}
    assert {"a", "om", "af", "ab", "ae", "ppm", "model"} <= set(rembg["properties"])
    assert {p["name"] for p in spec["paths"]["/api/remove"]["post"]["parameters"]} >= {"bgc", "refine"}
    ours = spec["paths"]["/v1/saliency"]["post"]
    assert ours["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert "image/*" in ours["requestBody"]["content"]
    assert {p["name"] for p in ours["parameters"]} == {"output", "threshold", "refine"}
    assert ours["responses"]["413"]["content"]["application/json"]


def test_memory_budget_refuses_what_cannot_fit_and_queues_the_rest(photo):
    data, image = photo
    pixels = image.shape[0] * image.shape[1]
    app = create_app(shared_predictor(), max_memory_bytes=pixels * 30, max_wait_ms=1)
    with TestClient(app, base_url=LOCAL) as client:
        assert saliency(client, data).status_code == 200  # 16 bytes a pixel fit
        message = error_of(saliency(client, data, refine="guided"), 413)  # 40 do not
        assert "memory budget" in message and "--max-memory-mb" in message
        assert app.state.budget.used == 0

    async def scenario():
        budget = MemoryBudget(100)
        order = []

        async def job(name, nbytes, seconds):
            async with budget.hold(nbytes):
                order.append((name, budget.used))
                await asyncio.sleep(seconds)

        await asyncio.gather(job("a", 60, 0.05), job("b", 60, 0), job("c", 30, 0))
        return order, budget.used

    order, used = asyncio.run(scenario())
    # b waits for a; c, which would fit beside a, waits its turn behind b (no overtaking)
    assert order == [("a", 60), ("b", 60), ("c", 90)] and used == 0
    with pytest.raises(ValueError):
        asyncio.run(MemoryBudget(10).hold(11).__aenter__())


@pytest.mark.slow
def test_a_48_megapixel_photo_is_served_with_the_default_limits():
    """8000 x 6000 (a 48 MP phone camera) passes the defaults, which match the library's and the CLI's."""
    from csnet.io.images import DEFAULT_MAX_PIXELS

    app = create_app(shared_predictor(), max_wait_ms=1)
    (model,) = TestClient(app, base_url=LOCAL).get("/v1/models").json()["models"]
    assert model["limits"]["max_pixels"] == DEFAULT_MAX_PIXELS == shared_predictor().max_pixels
    small = gradient_image(600, 800)
    big = np.asarray(Image.fromarray(small).resize((8000, 6000), Image.Resampling.BILINEAR))
    data = encoded(big, "JPEG", quality=90)
    del big
    with TestClient(app, base_url=LOCAL) as client:
        response = saliency(client, data)
        assert response.status_code == 200, response.text
        assert Image.open(io.BytesIO(response.content)).size == (8000, 6000)


def test_an_animated_gif_upload_says_only_its_first_frame_was_used(client) -> None:
    frames = [Image.new("RGB", (48, 32), colour) for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    gif = buffer.getvalue()
    response = client.post("/v1/saliency", files={"image": ("clip.gif", gif, "image/gif")})
    assert response.status_code == 200
    assert "first frame" in response.headers["X-Csnet-Warning"]
    assert Image.open(io.BytesIO(response.content)).size == (48, 32)
    described = client.post("/v1/saliency", params={"output": "json"},
                            files={"image": ("clip.gif", gif, "image/gif")}).json()
    assert "first frame" in described["warning"]
    still = io.BytesIO()
    frames[0].save(still, format="GIF")
    plain = client.post("/v1/saliency", files={"image": ("still.gif", still.getvalue(), "image/gif")})
    assert plain.status_code == 200 and "X-Csnet-Warning" not in plain.headers
