"""Batch-1 CPU latency of several runtimes, measured honestly on a shared machine.

The runtimes (csnet.infer.runtimes, the very calls ``csnet predict --runtime X`` makes) are built once, then timed in short interleaved bursts (every backend a few calls, in a new
random order each round) for ``--duration`` seconds. Before each round the CPU idle share is sampled from
/proc/stat; rounds that started on an idle machine (>= ``--quiet`` idle) are reported apart from the rest, so
the figures of a quiet machine are not mixed with those of a busy one. Prints min / median per backend and
writes every sample to ``--json``.

    python benchmarks/cpu_latency.py --models csnet_l_x1,csnet_l_x2 --threads 2 --duration 300 \
        --backends eager,torchscript,onnxruntime,openvino,onnxruntime-eager --json cpu_latency.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import csnet
from csnet.bench.model_bench import environment
from csnet.bench.timing import cpu_idle_fraction, load_average
from csnet.infer.fused import randomize_batch_norm
from csnet.infer.malloc import tune_malloc
from csnet.infer.runtimes import RUNTIMES, create_runtime


def build(name: str, backend: str, model: torch.nn.Module, threads: int, size: int):
    """runtime name (``name:preset`` for a preset) -> callable on a normalized float32 NumPy batch."""
    if backend == "onnxruntime-eager":  # the unfused model exported as it is (ORT folds BN itself)
        return _ort_unfused(model, threads, size)
    runtime, _, preset = backend.partition(":")
    if runtime not in RUNTIMES:
        raise SystemExit(f"unknown runtime {backend} (known: {', '.join(RUNTIMES)}, onnxruntime-eager)")
    return create_runtime(runtime, model, threads=threads, preset=preset or None)


def _ort_unfused(model: torch.nn.Module, threads: int, size: int):
    import io

    import onnxruntime as ort

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), buffer, input_names=["image"],
                          output_names=["logits"], opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="csnet_l_x1,csnet_l_x2")
    parser.add_argument("--backends", default="eager,torchscript,onnxruntime,openvino")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of timing rounds in all")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per backend per round")
    parser.add_argument("--quiet", type=float, default=0.8, help="idle share that makes a round 'quiet'")
    parser.add_argument("--tune-malloc", action="store_true", help="csnet.infer.malloc.tune_malloc()")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.tune_malloc:
        print("tune_malloc:", tune_malloc())

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size).numpy()
    runners = {}
    for name in args.models.split(","):
        model = randomize_batch_norm(csnet.create_model(name), torch.Generator().manual_seed(0)).eval()
        with torch.inference_mode():
            reference = model(torch.from_numpy(x)).numpy()
        for backend in args.backends.split(","):
            start = time.perf_counter()
            fn = build(name, backend, model, args.threads, args.size)
            with torch.inference_mode():
                out = fn(x)
                fn(x)
            setup = time.perf_counter() - start
            diff = float(abs(out - reference).max())
            runners[(name, backend)] = fn
            print(f"built {name} {backend} in {setup:.1f} s, max |diff| {diff:.1e}", flush=True)
    samples = {key: [] for key in runners}  # (ms, quiet)
    deadline = time.perf_counter() + args.duration
    rounds = quiet_rounds = 0
    with torch.inference_mode():
        while time.perf_counter() < deadline:
            idle = cpu_idle_fraction(0.2)
            quiet = idle is not None and idle >= args.quiet
            keys = list(runners)
            random.shuffle(keys)
            for key in keys:
                fn = runners[key]
                fn(x)
                for _ in range(args.calls):
                    begin = time.perf_counter()
                    fn(x)
                    samples[key].append(((time.perf_counter() - begin) * 1e3, quiet))
            rounds += 1
            quiet_rounds += quiet
    env = environment()
    print(f"\n{rounds} rounds, {quiet_rounds} started with >= {args.quiet:.0%} CPU idle; load now {load_average()}; "
          f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, {args.threads} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, tune_malloc={args.tune_malloc}")
    print(f"{'model':<12} {'backend':<18} {'quiet min':>9} {'quiet med':>9} {'n':>4} | {'all min':>8} {'all med':>8} {'n':>5}")
    summary = []
    for (name, backend), values in samples.items():
        quiet_ms = [ms for ms, q in values if q]
        all_ms = [ms for ms, _ in values]
        row = {"model": name, "backend": backend, "threads": args.threads, "batch_size": args.batch,
               "size": args.size, "quiet_min_ms": min(quiet_ms) if quiet_ms else None,
               "quiet_median_ms": statistics.median(quiet_ms) if quiet_ms else None, "quiet_n": len(quiet_ms),
               "min_ms": min(all_ms), "median_ms": statistics.median(all_ms), "n": len(all_ms)}
        summary.append(row)

        def fmt(v):
            return f"{v:9.2f}" if v is not None else f"{'-':>9}"

        print(f"{name:<12} {backend:<18} {fmt(row['quiet_min_ms'])} {fmt(row['quiet_median_ms'])} "
              f"{row['quiet_n']:>4} | {row['min_ms']:8.2f} {row['median_ms']:8.2f} {row['n']:>5}")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "argv": sys.argv[1:], "rounds": rounds,
                                         "quiet_rounds": quiet_rounds, "summary": summary,
                                         "samples": {f"{k[0]}/{k[1]}": v for k, v in samples.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
