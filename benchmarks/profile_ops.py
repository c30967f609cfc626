"""Where the time of one CSNet forward goes, per kind of op: eager model vs the fast path (NCHW and NHWC).

torch.profiler over ``--iters`` forwards (batch 1), self CPU time of every aten op, grouped into conv kinds
(depthwise / 1x1 / 3x3 / dilated), PReLU, BatchNorm, upsampling, pooling, adds, concatenation, copies and
the rest. Single-threaded by default so the split does not depend on how busy the other core is.

    python benchmarks/profile_ops.py --model csnet_l_x1 --threads 1 --iters 20 --json profile.json

The profiler's per-op overhead inflates small ops; ``--per-node`` instead times every node of the fast path's
straight-line core (NHWC, the ``fast`` backend) with a wall clock around each call (``torch.fx.Interpreter``),
grouped by op, beside the core's own uninterrupted forward time:

    python benchmarks/profile_ops.py --model csnet_l_x1 --threads 1 --per-node

``--openvino`` reads OpenVINO's own per-layer counters (``PERF_COUNT``) for the ``openvino`` backend instead,
grouped by the layer kind and kernel OpenVINO ran (its fused layers carry the names of the ops they absorbed):

    python benchmarks/profile_ops.py --model csnet_l_x1 --threads 2 --openvino --iters 50
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import csnet
from csnet.io.atomic import atomic_write_text
from csnet.infer.fused import optimize_for_inference, randomize_batch_norm

_CONV_OPS = {"aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::slow_conv_dilated2d",
             "aten::thnn_conv2d", "aten::_nnpack_spatial_convolution", "aten::_convolution"}


def _kind(name: str, shapes) -> str:
    if name in _CONV_OPS:
        try:
            weight = shapes[1]
            if weight and len(weight) == 4:
                if weight[1] == 1 and shapes[0] and shapes[0][1] == weight[0] and weight[0] > 1:
                    return "conv depthwise 3x3"
                if weight[-1] == 1:
                    return "conv 1x1"
            if name == "aten::slow_conv_dilated2d":
                return "conv 3x3 dilated"
            return "conv 3x3 (incl. dilated)"
        except (IndexError, TypeError):
            return "conv"
    table = {
        "aten::_prelu_kernel": "prelu", "aten::native_batch_norm": "batch norm",
        "aten::upsample_bilinear2d": "bilinear upsample", "aten::max_pool2d_with_indices": "max pool",
        "aten::maximum": "max pool", "aten::avg_pool2d": "avg pool", "aten::add": "add", "aten::add_": "add",
        "aten::cat": "cat", "aten::copy_": "copy / layout", "aten::contiguous": "copy / layout",
        "aten::replication_pad2d": "pad", "aten::_replication_pad2d": "pad",
    }
    return table.get(name, "other (dispatch, views, allocation)")


def profile_one(fn, x: torch.Tensor, iters: int) -> dict[str, float]:
    with torch.inference_mode():
        for _ in range(3):
            fn(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(iters):
                fn(x)
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages(group_by_input_shape=True):
        if event.self_cpu_time_total <= 0:
            continue
        totals[_kind(event.key, event.input_shapes)] += event.self_cpu_time_total / 1e3 / iters
    return dict(totals)


def per_node(core: torch.fx.GraphModule, x: torch.Tensor, iters: int) -> tuple[dict[str, float], float]:
    """Wall ms per forward of every op kind of ``core`` (timed node by node), and of ``core`` run directly."""
    seconds: dict[str, float] = defaultdict(float)

    class Timed(torch.fx.Interpreter):
        def run_node(self, node):
            start = time.perf_counter()
            out = super().run_node(node)
            target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
            seconds[target] += time.perf_counter() - start
            return out

    interpreter = Timed(core)
    with torch.inference_mode():
        for _ in range(3):
            interpreter.run(x)
            core(x)
        seconds.clear()
        for _ in range(iters):
            interpreter.run(x)
        start = time.perf_counter()
        for _ in range(iters):
            core(x)
        direct = (time.perf_counter() - start) / iters * 1e3
    return {k: v / iters * 1e3 for k, v in seconds.items()}, direct


def openvino_layers(model: torch.nn.Module, x: torch.Tensor, threads: int, iters: int
                    ) -> tuple[dict[tuple[str, str], list[float]], float]:
    """OpenVINO's per-layer wall ms per forward, keyed by (layer kind, kernel): [ms, layers], and the summed total."""
    from csnet.infer.runtimes import create_runtime

    runner = create_runtime("openvino", model, threads=threads)
    runner.config["PERF_COUNT"] = True
    x = x.numpy()
    runner(x)  # compiles for this shape
    (shape,) = runner.compiled_shapes
    request = runner.request(shape)
    for _ in range(10):
        runner(x)
    layers: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for _ in range(iters):
        runner(x)
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                entry = layers[(info.node_type, info.exec_type)]
                entry[0] += info.real_time.total_seconds() * 1e3 / iters
                entry[1] += 1
    for entry in layers.values():
        entry[1] //= iters
    return dict(layers), sum(entry[0] for entry in layers.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="csnet_l_x1")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--per-node", action="store_true", help="time the fast core node by node instead")
    parser.add_argument("--openvino", action="store_true", help="OpenVINO's per-layer counters instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = randomize_batch_norm(csnet.create_model(args.model), torch.Generator().manual_seed(0)).eval()
    x = torch.randn(1, 3, args.size, args.size)
    if args.openvino:
        layers, total = openvino_layers(model, x, args.threads, args.iters)
        print(f"{args.model} {args.size}x{args.size}, batch 1, {args.threads} thread(s), {args.iters} forwards, "
              f"load {os.getloadavg()}; OpenVINO layers: {total:.2f} ms per forward summed")
        for (kind, kernel), (value, count) in sorted(layers.items(), key=lambda kv: -kv[1][0]):
            print(f"{kind:<30}{kernel:<26}{count:5d} layers {value:8.2f} ms ({100 * value / total:4.1f}%)")
        if args.json:
            rows = [{"layer": kind, "kernel": kernel, "ms": value, "layers": count}
                    for (kind, kernel), (value, count) in layers.items()]
            report = {"argv": sys.argv[1:], "total_ms": total, "layers": rows}
            atomic_write_text(args.json, json.dumps(report, indent=1))
        return 0
    if args.per_node:
        fast = optimize_for_inference(model)
        ms, direct = per_node(fast.core, fast.prepare(x), args.iters)
        print(f"{args.model} {args.size}x{args.size}, batch 1, {args.threads} thread(s), {args.iters} forwards, "
              f"load {os.getloadavg()}; fast NHWC core: {direct:.2f} ms per forward run directly, "
              f"{sum(ms.values()):.2f} ms summed over nodes")
        for op, value in sorted(ms.items(), key=lambda kv: -kv[1]):
            if value >= 0.05:
                print(f"{op:<36}{value:9.2f} ms ({100 * value / sum(ms.values()):4.1f}%)")
        if args.json:
            report = {"argv": sys.argv[1:], "direct_ms": direct, "per_op_ms": ms}
            atomic_write_text(args.json, json.dumps(report, indent=1))
        return 0
    variants = {
        "eager": model,
        "fast NCHW": optimize_for_inference(model, channels_last=False),
        "fast NHWC": optimize_for_inference(model),
    }
    results = {name: profile_one(fn, x, args.iters) for name, fn in variants.items()}
    kinds = sorted({k for r in results.values() for k in r}, key=lambda k: -results["eager"].get(k, 0))
    print(f"{args.model} {args.size}x{args.size}, batch 1, {args.threads} thread(s), {args.iters} forwards, "
          f"load {os.getloadavg()}; self CPU ms per forward (share)")
    print(f"{'op kind':<36}" + "".join(f"{name:>20}" for name in results))
    for kind in kinds:
        cells = []
        for r in results.values():
            total = sum(r.values())
            value = r.get(kind, 0.0)
            cells.append(f"{value:9.2f} ({100 * value / total:4.1f}%)" if value else f"{'-':>18}")
        print(f"{kind:<36}" + "".join(f"{c:>20}" for c in cells))
    print(f"{'total':<36}" + "".join(f"{sum(r.values()):>20.2f}" for r in results.values()))
    if args.json:
        atomic_write_text(args.json, json.dumps({"argv": sys.argv[1:], "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
