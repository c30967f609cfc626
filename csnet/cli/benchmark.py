"""``csnet benchmark``: inference speed of a model, several runtimes side by side; or end to end over a folder.

    csnet benchmark --runtime eager,torchscript,onnxruntime,openvino --threads 2 --repeat 200
    csnet benchmark --device cuda --batch-sizes 1,10,100,256 --preset float16 --runtime eager,torchscript,cuda-graph
    csnet benchmark --end-to-end ../shared/data/PASCAL-S/images --runtime onnxruntime --workers 2

Each runtime is the one ``csnet predict --runtime X`` builds (:mod:`csnet.infer.runtimes`), timed on the very
call predict makes: a normalized float32 NumPy batch made beforehand, so the network alone is timed, unless
``--include-preprocess`` (uint8 in, normalized in NumPy inside the timed call). Figures on a shared machine are
noisy: the load average is printed and stored with every row; compare min and median.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from csnet.cli.main import CLIError

_DEFAULT_RUNTIMES = {"cpu": "eager,torchscript,onnxruntime,openvino", "cuda": "eager,torchscript,cuda-graph"}
_DEFAULT_BATCHES = {"cpu": "1", "cuda": "1,10,100,256"}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="registered model name or a .safetensors model file (default: the bundled model, or "
                             "csnet_l_x2 with --train; "
                             "a registered name without bundled weights runs random weights with trained-like "
                             "BN statistics: same timings as trained weights, checked with denormals flushed)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--runtime", default=None,
                        help="comma-separated: eager, torchscript, compile, onnxruntime, openvino, cuda-graph "
                             f"(default cpu: {_DEFAULT_RUNTIMES['cpu']}; cuda: {_DEFAULT_RUNTIMES['cuda']})")
    parser.add_argument("--backend", default=None, help=argparse.SUPPRESS)  # the deprecated name of --runtime
    parser.add_argument("--preset", "--dtype", dest="preset", default=None,
                        help="every runtime's preset (default: each one's own, float32); the PyTorch runtimes "
                             "have float32, float16, bfloat16; openvino float32, bfloat16; compile also "
                             "max-autotune; onnxruntime float32, no-spin")
    parser.add_argument("--batch-sizes", type=_int_list, default=None,
                        help="comma-separated batch sizes (default cpu: 1; cuda: 1,10,100,256)")
    parser.add_argument("--size", type=int, nargs="+", default=[224], metavar="N",
                        help="input size: N for N x N, or H W (default 224)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and ONNX Runtime (default: 2, or the core count if lower)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--repeat", type=int, default=100, help="timed calls per batch size (default 100)")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="stop timing a batch size after this long, keeping >= 5 calls (default 30)")
    parser.add_argument("--include-preprocess", action="store_true",
                        help="time the uint8 NHWC -> normalized conversion (NumPy) too")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="keep freed activations in the heap (glibc mallopt; process-wide, as csnet predict "
                             "does: csnet.cli.malloc.tune_malloc)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip comparing every runtime's logits with the eager model")
    parser.add_argument("--json", type=Path, default=None, metavar="F", help="write the rows as a JSON list")
    tr = parser.add_argument_group("training step (forward + loss + backward + Adam, as csnet train runs it)")
    tr.add_argument("--train", action="store_true",
                    help="time the training step instead: today's (fp32, NCHW, batch 24) beside the recipe's fast "
                         "step, side by side (default model csnet_l_x2)")
    tr.add_argument("--train-modes", default=None,
                    help="comma-separated training modes (default fp32-nchw,fast,fast-ddp2: today's step, the "
                         "recipe's in one process and in two 1-thread DDP ranks; csnet.bench.train_bench.TRAIN_MODES "
                         "holds the others, e.g. fast-b16, fp32-malloc)")
    tr.add_argument("--steps", type=int, default=10, help="timed training steps per mode (default 10)")
    e2e = parser.add_argument_group("end to end (decode -> resize -> model -> encode over a folder)")
    e2e.add_argument("--end-to-end", type=Path, default=None, metavar="DIR",
                     help="measure images/s over the images in DIR with the first --runtime, plus a per-stage "
                          "profile, sequentially and with decode/encode in threads")
    e2e.add_argument("--limit", type=int, default=None, help="use only the first N images of DIR")
    e2e.add_argument("--workers", type=int, default=2, help="decode/encode threads in parallel mode (default 2)")
    e2e.add_argument("--out", type=Path, default=None, help="also write the PNG masks here")


def _size(values: list[int]) -> tuple[int, int]:
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise CLIError(f"--size takes N or H W (positive), got {' '.join(map(str, values))}")
    return values[0], values[1]


def _runtimes(args: argparse.Namespace, device: str) -> list[str]:
    """The runtimes asked for, old names (``--backend fast``) mapped with a one-line note, duplicates dropped."""
    from csnet.infer.runtimes import DEPRECATED_NAMES, RUNTIMES

    text, notes = args.runtime, []
    if text is None and args.backend is not None:
        notes.append("--backend is deprecated; use --runtime")
        text = args.backend
    names: list[str] = []
    for name in (n.strip().lower() for n in (text or _DEFAULT_RUNTIMES[device]).split(",")):
        if name in DEPRECATED_NAMES:
            notes.append(f"{name!r} is now {DEPRECATED_NAMES[name]!r}")
            name = DEPRECATED_NAMES[name]
        if name and name not in names:
            names.append(name)
    if notes:
        print(f"csnet benchmark: note: {'; '.join(notes)}", file=sys.stderr)
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise CLIError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    return names


def run(args: argparse.Namespace) -> int:
    import torch

    from csnet.cli.info import resolve_model
    from csnet.infer.fused import randomize_batch_norm
    from csnet.models import DEFAULT_MODEL, is_model
    from csnet.models.weights import PRETRAINED

    if args.train:
        return _train(args)
    if args.model is None:
        args.model = DEFAULT_MODEL
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: CUDA is not available here")
    runtimes = _runtimes(args, device)
    batches = args.batch_sizes or _int_list(_DEFAULT_BATCHES[device])
    height, width = _size(args.size)
    threads = args.threads if args.threads is not None else min(2, os.cpu_count() or 1)
    if threads < 1:
        raise CLIError("--threads must be >= 1")
    if args.repeat < 1 or args.warmup < 0:
        raise CLIError("--repeat must be >= 1 and --warmup >= 0")
    model = resolve_model(args.model).eval()
    if is_model(args.model) and not Path(args.model).is_file() and args.model not in PRETRAINED:
        # Random weights: give BN and PReLU trained-like statistics so activations and logits are O(1) (a
        # fresh init's logits are ~1e-9 and the runtimes' differences would be read against nothing).
        randomize_batch_norm(model, torch.Generator().manual_seed(0))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(args, model, device, runtimes, batches, height, width, threads)
    finally:
        torch.set_num_threads(previous_threads)


def _run(args: argparse.Namespace, model, device: str, runtimes: list[str], batches: list[int], height: int,
         width: int, threads: int) -> int:
    from csnet.bench import BenchConfig, benchmark_model, environment, load_average
    from csnet.bench.report import format_end_to_end, format_rows

    env = environment()
    if args.tune_malloc:
        from csnet.cli.malloc import tune_malloc

        env["tune_malloc"] = tune_malloc()
    print(f"csnet benchmark: {args.model} on {device} ({env['gpu'] if device == 'cuda' else env['processor']}), "
          f"preset {args.preset or 'default'}, {height}x{width}, {threads} threads, torch {env['torch']}, "
          f"onnxruntime {env['onnxruntime'] or 'not installed'}, openvino {env['openvino'] or 'not installed'}, "
          f"load average {load_average()}")

    if args.end_to_end is not None:
        rows = _end_to_end(args, model, runtimes[0], device, threads, (height, width), batches[0])
        print(format_end_to_end(rows))
    else:
        config = BenchConfig(device=device, preset=args.preset, batch_sizes=batches, height=height, width=width,
                             threads=threads, warmup=args.warmup, repeat=args.repeat, max_seconds=args.max_seconds,
                             include_preprocess=args.include_preprocess, check=args.check)
        try:
            rows = benchmark_model(model, args.model, runtimes, config)
        except ValueError as error:
            raise CLIError(str(error)) from None
        print(format_rows(rows))
    if args.json is not None:
        for row in rows:
            row["environment"] = env
        from csnet.io.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=2))
        print(f"wrote {len(rows)} rows to {args.json}")
    return 0


def _end_to_end(args: argparse.Namespace, model, runtime: str, device: str, threads: int,
                size: tuple[int, int], batch: int) -> list[dict]:
    from csnet.bench import build_runner, load_average
    from csnet.bench.end_to_end import list_images, run_end_to_end
    from csnet.infer.runtimes import RuntimeChoiceError, RuntimeUnavailable

    if device != "cpu":
        raise CLIError("--end-to-end runs on the CPU only for now")
    try:
        files = list_images(args.end_to_end, args.limit)
    except FileNotFoundError as error:
        raise CLIError(str(error)) from None
    try:
        runner = build_runner(runtime, model, device=device, preset=args.preset, threads=threads)
    except (RuntimeUnavailable, RuntimeChoiceError) as error:
        raise CLIError(f"{runtime}: {error}") from None
    load_before = load_average()
    results = run_end_to_end(files, runner.call, size=size, batch_size=batch, workers=args.workers,
                             out_dir=args.out)
    rows = []
    for result in results:
        row = result.to_dict()
        row.update({"model": args.model, "runtime": runtime, "preset": runner.runtime.preset_name, "device": device,
                    "threads": threads, "height": size[0], "width": size[1], "folder": str(args.end_to_end),
                    "median_ms": 1e3 * result.seconds / max(result.images, 1), "load_before": load_before,
                    "load_after": load_average()})
        rows.append(row)
    return rows


def _train(args: argparse.Namespace) -> int:
    import torch

    from csnet.bench import environment, load_average
    from csnet.bench.train_bench import FAST, FAST_DDP, TODAY, TRAIN_MODES, benchmark_train, format_train_rows

    if args.device != "cpu":
        raise CLIError("--train measures the CPU step here; on CUDA train with --amp and --channels-last")
    default = f"{TODAY.name},{FAST.name},{FAST_DDP.name}"
    names = [m.strip() for m in (args.train_modes or default).split(",") if m.strip()]
    unknown = [n for n in names if n not in TRAIN_MODES]
    if unknown:
        raise CLIError(f"unknown training mode(s) {', '.join(unknown)}; choose from {', '.join(TRAIN_MODES)}")
    height, width = _size(args.size)
    if height != width or height % 16:
        raise CLIError("--train needs one square size, a multiple of 16")
    if args.steps < 1:
        raise CLIError("--steps must be >= 1")
    model = args.model or "csnet_l_x2"
    threads = args.threads if args.threads is not None else min(2, os.cpu_count() or 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    env = environment()
    print(f"csnet benchmark --train: {model}, {height} px, {threads} threads, torch {env['torch']}, "
          f"load average {load_average()}")
    try:
        rows = benchmark_train(model, [TRAIN_MODES[n] for n in names], size=height, steps=args.steps,
                               warmup=args.warmup if args.warmup != 10 else 2, max_seconds=args.max_seconds * 4,
                               threads=threads)
    except (KeyError, ValueError) as error:
        raise CLIError(str(error)) from None
    finally:
        torch.set_num_threads(previous)
    print(format_train_rows(rows))
    if args.json is not None:
        from csnet.io.atomic import atomic_write_text

        for row in rows:
            row["environment"] = env
            row["threads"] = threads
        atomic_write_text(args.json, json.dumps(rows, indent=2))
        print(f"wrote {len(rows)} rows to {args.json}")
    return 0
