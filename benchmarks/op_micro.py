"""Single-op timings behind the NHWC CPU kernels of csnet.infer.fused (one thread, min of N calls).

Compares, at the shapes CSNet-L-x1 runs at 224 x 224: PReLU (NCHW, NHWC, NHWC tiled view), 2x2 max-pooling
(max_pool2d NCHW / NHWC, strided torch.maximum), bilinear 2x upsampling of a channel slice vs a contiguous
copy, depthwise and 1x1 convs in NCHW / NHWC / direct oneDNN.

    python benchmarks/op_micro.py --threads 1 --repeat 30
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F


def best_ms(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    print(f"{args.threads} thread(s), min of {args.repeat} calls, ms; torch {torch.__version__}; "
          f"load {os.getloadavg()}")
    for c, h in [(10, 224), (19, 112), (60, 112), (24, 56)]:
        x = torch.randn(1, c, h, h)
        xl = x.contiguous(memory_format=cl)
        slope = torch.rand(c)
        tile = 16 // math.gcd(c, 16)
        tiled = slope.repeat(tile)

        def prelu_tiled():
            nhwc = xl.permute(0, 2, 3, 1)
            return F.prelu(nhwc.reshape(-1, c * tile), tiled).view_as(nhwc).permute(0, 3, 1, 2)

        def max_strided():
            nhwc = xl.permute(0, 2, 3, 1)
            pairs = nhwc.reshape(1, h // 2, 2, h // 2, 2 * c)
            rows = torch.maximum(pairs[:, :, 0], pairs[:, :, 1])
            return torch.maximum(rows[..., :c], rows[..., c:]).permute(0, 3, 1, 2)

        assert torch.equal(prelu_tiled(), F.prelu(x, slope)) and torch.equal(max_strided(), F.max_pool2d(x, 2))
        w_dw, w_11, bias = torch.randn(c, 1, 3, 3), torch.randn(c, c, 1, 1), torch.randn(c)
        rows = {
            "prelu NCHW": best_ms(lambda: F.prelu(x, slope), args.repeat),
            "prelu NHWC": best_ms(lambda: F.prelu(xl, slope), args.repeat),
            "prelu NHWC tiled view": best_ms(prelu_tiled, args.repeat),
            "max_pool2d NCHW": best_ms(lambda: F.max_pool2d(x, 2), args.repeat),
            "max_pool2d NHWC": best_ms(lambda: F.max_pool2d(xl, 2), args.repeat),
            "maximum strided NHWC": best_ms(max_strided, args.repeat),
            "depthwise 3x3 NCHW": best_ms(lambda: F.conv2d(x, w_dw, bias, 1, 1, 1, c), args.repeat),
            "depthwise 3x3 NHWC": best_ms(lambda: F.conv2d(xl, w_dw, bias, 1, 1, 1, c), args.repeat),
            "1x1 NCHW (conv2d)": best_ms(lambda: F.conv2d(x, w_11, bias), args.repeat),
            "1x1 NHWC (conv2d)": best_ms(lambda: F.conv2d(xl, w_11, bias), args.repeat),
            "1x1 NHWC (oneDNN direct)": best_ms(
                lambda: torch.mkldnn_convolution(xl, w_11, bias, (0, 0), (1, 1), (1, 1), 1), args.repeat),
        }
        print(f"\n{c} x {h} x {h}")
        for name, value in rows.items():
            print(f"  {name:<28} {value:7.3f}")
    both = torch.randn(1, 20, 112, 112).contiguous(memory_format=cl)
    part = both[:, 10:]
    up = dict(mode="bilinear", scale_factor=2.0, align_corners=False)
    print("\nbilinear 2x of 10 of 20 channels, 112 -> 224, NHWC")
    print(f"  {'strided channel slice':<28} {best_ms(lambda: F.interpolate(part, **up), args.repeat):7.3f}")
    print(f"  {'contiguous copy, then up':<28} "
          f"{best_ms(lambda: F.interpolate(part.contiguous(memory_format=cl), **up), args.repeat):7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
