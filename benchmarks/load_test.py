"""Bounded loopback load test of ``csnet serve``: N requests at concurrency C, requests/s and latency percentiles.

    python benchmarks/load_test.py                                  # starts `csnet serve` on a free port
    python benchmarks/load_test.py --requests 200 --concurrency 8 --model model.safetensors
    python benchmarks/load_test.py --url http://127.0.0.1:8000      # an already running server
    python benchmarks/load_test.py --abuse                          # 200 concurrent + 32 slow clients

``--abuse`` is the hostile mix of issue 14: ``--concurrency`` clients (200) each on its own connection
while ``--slow-clients`` (32) send an upload at one byte a second, with the server's default limits
(64 connections) and a short ``--body-timeout`` (5 s). It reports every status code the fast and the
slow clients got and the latencies of the answered ones; the service is expected to stay up, answer
the connections it admits (200) and refuse the rest quickly (503), and cut the slow uploads off with
408 without them holding prediction slots. Everything is bounded: ``--requests`` in all, ``--deadline``
seconds at most.

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
import threading
import time
from collections import Counter
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
               "--log-level", "warning", "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    if model:
        command += ["--model", model]
    for flag, value in (("--runtime", args.runtime), ("--threads", args.threads), ("--size", args.size),
                        ("--body-timeout", args.body_timeout), ("--max-connections", args.max_connections)):
        if value is not None:
            command += [flag, str(value)]
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


def _slow_upload(url: str, size: int, interval_s: float, deadline: float) -> tuple[int, float]:
    """One slow client: headers at once, then the body one byte per ``interval_s``; ``(status, seconds)``,
    status 0 when the server closed without an answer or ``deadline`` passed first."""
    host, port = url.split("//", 1)[1].split(":")
    start = time.perf_counter()
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall((f"POST /v1/saliency HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/jpeg\r\n"
                          f"Content-Length: {size}\r\n\r\n").encode())
            sock.settimeout(interval_s)
            sent = 0
            while time.monotonic() < deadline:
                try:
                    answer = sock.recv(64)
                    return (int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0), time.perf_counter() - start
                except socket.timeout:  # no answer yet: the next byte
                    if sent < size:
                        sock.sendall(b"\xff")
                        sent += 1
    except (OSError, ValueError, IndexError):
        pass
    return 0, time.perf_counter() - start


def abuse(url: str, data: bytes, args) -> dict:
    """``args.concurrency`` fast clients (``args.requests`` requests in all) beside ``args.slow_clients``
    slow uploads; status codes and latencies of each kind."""
    import httpx

    deadline = time.monotonic() + args.deadline
    slow: list[tuple[int, float]] = []
    lock = threading.Lock()

    def slow_client() -> None:
        result = _slow_upload(url, len(data), 1.0, deadline)
        with lock:
            slow.append(result)

    slow_threads = [threading.Thread(target=slow_client, daemon=True) for _ in range(args.slow_clients)]
    for thread in slow_threads:
        thread.start()
    time.sleep(0.5)  # the slow uploads are in before the crowd arrives

    def one(_: int) -> tuple[float, int]:
        if time.monotonic() > deadline:
            return 0.0, 0
        start = time.perf_counter()
        try:  # a client of its own: one connection each, as that many separate users would open
            with httpx.Client(timeout=max(1.0, deadline - time.monotonic())) as client:
                status = client.post(url + "/v1/saliency", files={"image": ("image.jpg", data, "image/jpeg")}).status_code
        except httpx.HTTPError:
            status = 0  # refused, reset or timed out: counted as 0
        return time.perf_counter() - start, status

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        fast = list(pool.map(one, range(args.requests)))
    elapsed = time.perf_counter() - start
    for thread in slow_threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 2)
    answered = [1000 * seconds for seconds, status in fast if status == 200]
    refused = [1000 * seconds for seconds, status in fast if status == 503]
    return {
        "requests": args.requests, "concurrency": args.concurrency, "slow_clients": args.slow_clients,
        "elapsed_s": round(elapsed, 1),
        "fast_status": dict(sorted(Counter(status for _, status in fast).items())),
        "slow_status": dict(sorted(Counter(status for status, _ in slow).items())),
        "slow_answered_after_s": round(_percentile([s for _, s in slow], 50), 1) if slow else None,
        "latency_ms_200": {"p50": round(_percentile(answered, 50), 1), "p99": round(_percentile(answered, 99), 1)}
        if answered else None,
        "latency_ms_503": {"p50": round(_percentile(refused, 50), 1), "p99": round(_percentile(refused, 99), 1)}
        if refused else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running server (default: start `csnet serve` here)")
    parser.add_argument("--model", help="model for the started server (default: bundled, else random csnet_l_x2)")
    parser.add_argument("--runtime", help="inference runtime of the started server (default: its own choice)")
    parser.add_argument("--threads", type=int, help="inference threads of the started server")
    parser.add_argument("--size", type=int, help="inference size of the started server")
    parser.add_argument("--image", type=Path, help="image to upload (default: scikit-image's astronaut)")
    parser.add_argument("--output", default="mask", choices=["mask", "cutout", "json"])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=None, help="clients at once (default 8; 200 with --abuse)")
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    abuse_group = parser.add_argument_group("abuse mix (--abuse)")
    abuse_group.add_argument("--abuse", action="store_true", help="fast clients beside slow uploads (see above)")
    abuse_group.add_argument("--slow-clients", type=int, default=32)
    abuse_group.add_argument("--deadline", type=float, default=120.0, help="seconds the whole mix may take")
    abuse_group.add_argument("--body-timeout", type=float, help="the started server's --body-timeout "
                                                                "(default 5 with --abuse)")
    abuse_group.add_argument("--max-connections", type=int, help="the started server's --max-connections")
    args = parser.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = 200 if args.abuse else 8
    if args.abuse:
        args.body_timeout = 5.0 if args.body_timeout is None else args.body_timeout

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
                if args.abuse:
                    report = abuse(url, data, args)
                    alive = client.get(url + "/healthz", timeout=10).status_code
                    report["healthz_after"] = alive
                    report["cpu_count"] = os.cpu_count()
                    print(json.dumps(report, indent=2) if args.json else
                          f"abuse: {report['requests']} requests from {report['concurrency']} clients beside "
                          f"{report['slow_clients']} slow uploads in {report['elapsed_s']} s: fast statuses "
                          f"{report['fast_status']}, 200s p50/p99 {report['latency_ms_200']} ms, 503s "
                          f"{report['latency_ms_503']} ms; slow statuses {report['slow_status']} after "
                          f"{report['slow_answered_after_s']} s; /healthz after: {alive}")
                    return 0 if alive == 200 and report["fast_status"].get(200) else 1

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
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:  # connections still open after the abuse mix
                    process.kill()
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
