"""Why OpenVINO's 2-thread latency flips on a virtual machine: time it beside the two vCPUs' core-to-core latency.

Windows alternate, for ``--duration`` seconds: the round trip of a cache line between CPU 0 and CPU 1
(``core_to_core.c``, compiled here with ``cc``), then ``--calls`` calls of the ``openvino`` runtime on 2 threads
and as many on 1 thread (CSNet-L-x1 with trained-like BN statistics, batch 1). The windows are grouped by the
round trip they started with, and each group's median latencies are printed with the correlation between the
round trip and the 2-thread latency. Each core's own compute is timed apart with ``--compute``: a 1-thread matmul
on each CPU at once, its per-second medians printed.

    python benchmarks/latency_flip.py --duration 75 [--compute 40] [--json rows.json]

Stop anything else that uses the CPUs first (the project's training with ``kill -STOP``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def build_probe(folder: Path) -> Path:
    binary = folder / "core_to_core"
    subprocess.run(["cc", "-O2", "-pthread", str(HERE / "core_to_core.c"), "-o", str(binary)], check=True)
    return binary


def round_trip_ns(binary: Path, reps: int = 10) -> float:
    out = subprocess.run([str(binary), str(reps)], capture_output=True, text=True, check=True).stdout
    return float(np.median([float(v) for v in out.split()]))


def compute_per_core(seconds: float) -> None:
    """A 1-thread matmul pinned to each CPU at once; per-second medians of 10 products of 384 x 384."""
    code = ("import os,sys,time,json\nos.sched_setaffinity(0,{int(sys.argv[1])})\nimport numpy as np\n"
            "a=np.random.rand(384,384).astype(np.float32);out=[];end=time.time()+float(sys.argv[2])\n"
            "while time.time()<end:\n t=time.perf_counter()\n for _ in range(10): a@a\n"
            " out.append((time.time(),(time.perf_counter()-t)*1e3))\nprint(json.dumps(out))")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(cpu), str(seconds)], stdout=subprocess.PIPE,
                              env=env, text=True) for cpu in (0, 1)]
    for cpu, proc in enumerate(procs):
        samples = json.loads(proc.communicate()[0])
        start, per_second = samples[0][0], {}
        for t, ms in samples:
            per_second.setdefault(int(t - start), []).append(ms)
        medians = [statistics.median(v) for _, v in sorted(per_second.items())]
        print(f"CPU {cpu}: matmul ms per-second medians {min(medians):.1f}-{max(medians):.1f} "
              f"over {len(medians)} s (median {statistics.median(medians):.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=75.0, help="seconds of alternating windows")
    parser.add_argument("--calls", type=int, default=20, help="2-thread calls per window (half as many on 1)")
    parser.add_argument("--compute", type=float, default=0.0, help="seconds of the per-core compute check first")
    parser.add_argument("--json", type=Path, help="write every window (round trip, medians) here")
    args = parser.parse_args(argv)
    if os.cpu_count() is None or os.cpu_count() < 2:
        parser.error("needs two CPUs")
    if args.compute:
        compute_per_core(args.compute)

    import torch

    import csnet
    from csnet.infer.fused import randomize_batch_norm
    from csnet.infer.runtimes import create_runtime

    model = randomize_batch_norm(csnet.create_model("csnet_l_x1"), torch.Generator().manual_seed(0)).eval()
    runtimes = {threads: create_runtime("openvino", model, threads=threads) for threads in (2, 1)}
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for runtime in runtimes.values():
        for _ in range(20):
            runtime(x)
    with tempfile.TemporaryDirectory() as folder:
        binary = build_probe(Path(folder))
        windows, end = [], time.time() + args.duration
        while time.time() < end:
            row = {"round_trip_ns": round_trip_ns(binary)}
            for threads, calls in ((2, args.calls), (1, max(1, args.calls // 2))):
                times = []
                for _ in range(calls):
                    start = time.perf_counter()
                    runtimes[threads](x)
                    times.append((time.perf_counter() - start) * 1e3)
                row[f"ms_{threads}_threads"] = statistics.median(times)
            windows.append(row)
    if args.json:
        args.json.write_text(json.dumps(windows, indent=1))
    rtt = np.array([w["round_trip_ns"] for w in windows])
    two = np.array([w["ms_2_threads"] for w in windows])
    one = np.array([w["ms_1_threads"] for w in windows])
    print("| round trip | windows | median round trip ns | 2 threads ms | 1 thread ms |")
    print("|---|---|---|---|---|")
    for low, high in ((0, 300), (300, 500), (500, float("inf"))):
        sel = (rtt >= low) & (rtt < high)
        if sel.any():
            label = f"{low}-{high:.0f} ns" if high != float("inf") else f">= {low} ns"
            print(f"| {label} | {sel.sum()} | {np.median(rtt[sel]):.0f} | {np.median(two[sel]):.2f} | "
                  f"{np.median(one[sel]):.2f} |")
    print(f"correlation of round trip and 2-thread latency: {np.corrcoef(rtt, two)[0, 1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
