"""Bounded loopback load test of ``csnet serve``: N requests at concurrency C, requests/s and latency percentiles.

    python benchmarks/load_test.py                                  # starts `csnet serve` on a free port
    python benchmarks/load_test.py --requests 200 --concurrency 8 --model model.safetensors
    python benchmarks/load_test.py --url http://127.0.0.1:8000      # an already running server

Without ``--url`` the server runs in a subprocess (its own interpreter, so the client's threads do
not share its GIL) with the given ``--model``; with no model and no bundled weights it serves a
randomly initialized csnet_l_x2 (the speed is the same as trained weights). The image is
scikit-image's astronaut (512 x 512) as a JPEG unless ``--image`` names one. Needs the serve and
demo extras and httpx.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _default_image() -> bytes:
    from PIL import Image

    from csnet.infer.demo import sample_images

    (_, astronaut), = sample_images(["astronaut"])
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _start_server(args, scratch: Path) -> tuple[subprocess.Popen, str]:
    model = args.model
    if model is None:
        from csnet.models import DEFAULT_MODEL
        from csnet.models.weights import PRETRAINED

        if DEFAULT_MODEL not in PRETRAINED:
            import csnet

            model = str(csnet.save_model(csnet.create_model("csnet_l_x2"), scratch / "csnet_l_x2_random.safetensors"))
            print("note: no bundled weights; serving a randomly initialized csnet_l_x2", file=sys.stderr)
    port = _free_port()
    command = [sys.executable, "-m", "csnet.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--backend", args.backend, "--max-batch", str(args.max_batch),
               "--max-wait-ms", str(args.max_wait_ms)]
    if model:
        command += ["--model", model]
    if args.threads:
        command += ["--threads", str(args.threads)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(client, url: str, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read().strip()[-2000:]}")
        try:
            if client.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not become ready in {timeout:.0f} s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running server (default: start `csnet serve` here)")
    parser.add_argument("--model", help="model for the started server (default: bundled, else random csnet_l_x2)")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime"])
    parser.add_argument("--threads", type=int, help="inference threads of the started server")
    parser.add_argument("--image", type=Path, help="image to upload (default: scikit-image's astronaut)")
    parser.add_argument("--output", default="mask", choices=["mask", "cutout", "json"])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    import httpx

    data = args.image.read_bytes() if args.image else _default_image()
    process = None
    with tempfile.TemporaryDirectory(prefix="csnet-load-") as scratch:
        url = args.url
        if url is None:
            process, url = _start_server(args, Path(scratch))
        try:
            limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
            with httpx.Client(limits=limits, timeout=120) as client:
                _wait_ready(client, url, process)

                def one(_: int) -> tuple[float, int]:
                    start = time.perf_counter()
                    response = client.post(url + "/v1/saliency", params={"output": args.output},
                                           files={"image": ("image.jpg", data, "image/jpeg")})
                    return time.perf_counter() - start, response.status_code

                with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                    list(pool.map(one, range(args.warmup)))
                    start = time.perf_counter()
                    results = list(pool.map(one, range(args.requests)))
                    elapsed = time.perf_counter() - start
                model_info = client.get(url + "/v1/models").json()["models"][0]
        finally:
            if process is not None:
                process.terminate()
                process.wait(10)

    latencies = [1000 * seconds for seconds, status in results if status == 200]
    errors = sum(1 for _, status in results if status != 200)
    batching = model_info.get("batching", {})
    report = {
        "requests": args.requests, "concurrency": args.concurrency, "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "latency_ms": {"p50": round(_percentile(latencies, 50), 1), "p90": round(_percentile(latencies, 90), 1),
                       "p99": round(_percentile(latencies, 99), 1), "mean": round(statistics.mean(latencies), 1)}
        if latencies else None,
        "image_bytes": len(data), "output": args.output,
        "server": {k: model_info.get(k) for k in ("name", "backend", "device", "input_size")},
        "mean_batch": round(batching["items"] / batching["batches"], 2) if batching.get("batches") else None,
        "cpu_count": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat = report["latency_ms"] or {}
        print(f"{report['requests']} requests at concurrency {report['concurrency']} against "
              f"{report['server']['name']} ({report['server']['backend']} on {report['server']['device']}): "
              f"{report['requests_per_s']} requests/s, p50 {lat.get('p50')} ms, p90 {lat.get('p90')} ms, "
              f"p99 {lat.get('p99')} ms, {errors} errors, mean batch {report['mean_batch']}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
