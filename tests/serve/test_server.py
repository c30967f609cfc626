"""``csnet serve``'s uvicorn server: over the connection limit the answer is the service's JSON error, not
uvicorn's plain text."""
import json
import socket
import time
import warnings

import pytest

from tests.infer.helpers import shared_predictor

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from csnet.serve.app import create_app  # noqa: E402
from tests.serve.live import live_server  # noqa: E402


def http_get(port, path="/healthz"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
def server():
    with live_server(create_app(shared_predictor()), max_connections=2) as running:
        yield running


def test_over_the_connection_limit_the_503_is_json(server):
    server, port = server
    assert http_get(port)[0] == 200
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        deadline = time.monotonic() + 10
        while len(server.server_state.connections) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        status, headers, body = http_get(port)  # the third connection
        assert status == 503 and headers["content-type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["status"] == 503 and "limit of 2 connections" in error["message"]
        assert headers["retry-after"] == "1"
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while len(server.server_state.connections) > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert http_get(port)[0] == 200  # room again once they are gone


def test_serve_options_reach_the_app():
    from csnet.cli.main import build_parser
    from csnet.cli.serve import build_app
    from tests.infer.helpers import SIZE, model_file

    pytest.importorskip("cv2")
    pytest.importorskip("pymatting")
    args = build_parser().parse_args(["serve", "--model", str(model_file()), "--size", str(SIZE), "--runtime",
                                      "eager", "--refine",
                                      "--max-memory-mb", "512", "--max-upload-mb", "8"])
    app = build_app(args)
    assert app.state.budget.capacity == 512 * 2**20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient warns about its httpx dependency
        from fastapi.testclient import TestClient

    (model,) = TestClient(app, base_url="http://127.0.0.1:8000").get("/v1/models").json()["models"]
    assert model["refine"]["default"] == "guided"
    assert model["limits"]["max_upload_bytes"] == 8 * 2**20 and model["limits"]["max_pixels"] == 100_000_000
