"""``csnet predict INPUT... -o OUT``: masks, cutouts, new backgrounds or overlays for images, folders and videos.

Inputs are files, folders (searched recursively; the relative paths are kept under OUT), glob
patterns (quoted, e.g. ``'photos/**/*.jpg'``) or ``-`` (one image on stdin; the PNG goes to stdout).
With one image input, ``-o`` may name the output file itself (``-o mask.png``).

Decoding and encoding run in ``--workers`` threads around the model, so it is never starved. A file
that fails is reported on one line and the others go on; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Optional

from csnet.cli.main import CLIError

log = logging.getLogger(__name__)

_FILE_OUTPUT_SUFFIXES = {".png": "PNG", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP",
                         ".tif": "TIFF", ".tiff": "TIFF"}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}


# ------------------------------------------------------------------------------------------------
# Options shared with `csnet demo` and `csnet serve`.

def add_model_arguments(parser: argparse.ArgumentParser, *, batch: bool = True) -> None:
    """``--model --device --runtime --preset --size`` (and ``--batch-size``): how a Predictor is built."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None, metavar="NAME|FILE",
                       help="a .safetensors model file, an .onnx export, or a name with bundled weights "
                            "(default: the bundled model)")
    group.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    add_runtime_argument(group)
    group.add_argument("--size", type=int, default=None, metavar="S",
                       help="inference resolution: images are resized to S x S and the mask back (default: the "
                            "size the weights were trained at, 224)")
    group.add_argument("--threads", type=int, default=None, metavar="N",
                       help="CPU threads for inference (default: the runtime's, one per core; on busy shared "
                            "cores 1 can be faster)")
    if batch:
        group.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward pass (default 8)")


def add_runtime_argument(parser) -> None:
    """``--runtime NAME --preset NAME`` (and the deprecated ``--backend``), for every command that runs a model."""
    from csnet.infer.runtimes import AUTO_ORDER, DEPRECATED_NAMES, RUNTIMES

    names = ["auto", *RUNTIMES]
    parser.add_argument("--runtime", default=None, choices=names, metavar="NAME",
                        help=f"inference runtime: {', '.join(names)} (auto: on the CPU the first installed of "
                             f"{', '.join(AUTO_ORDER['cpu'])}; {', '.join(AUTO_ORDER['cuda'])} on CUDA; "
                             "onnxruntime for .onnx models)")
    parser.add_argument("--backend", default=None, choices=[*names, *DEPRECATED_NAMES], help=argparse.SUPPRESS)
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="the named runtime's preset, as in `csnet benchmark --preset`: e.g. bfloat16 for "
                             "openvino or the PyTorch runtimes (default: the runtime's own, float32)")


def runtime_choice(args: argparse.Namespace, command: str = "csnet") -> str:
    """The runtime named by ``--runtime``, or by the deprecated ``--backend`` (noted on stderr, one line)."""
    from csnet.infer.runtimes import DEPRECATED_NAMES

    backend = getattr(args, "backend", None)
    if backend is not None and args.runtime is None:
        name = DEPRECATED_NAMES.get(backend, backend)
        print(f"{command}: note: --backend is deprecated; use --runtime {name}", file=sys.stderr)
        return name
    return args.runtime or "auto"


def make_predictor(args: argparse.Namespace, model: Any = "__args__"):
    """A Predictor from the options of :func:`add_model_arguments`; user errors become CLIError."""
    from csnet.infer.predictor import Predictor
    from csnet.infer.runtimes import RuntimeChoiceError, RuntimeUnavailable
    from csnet.models import ModelFileError

    if args.size is not None and args.size < 1:
        raise CLIError(f"--size must be positive, got {args.size}")
    batch_size = getattr(args, "batch_size", 8)
    if batch_size < 1:
        raise CLIError(f"--batch-size must be positive, got {batch_size}")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise CLIError(f"--threads must be positive, got {threads}")
    _set_cpu_threads(threads)  # before the runtime is built: OpenVINO fixes its thread count when it compiles
    try:
        predictor = Predictor(args.model if model == "__args__" else model, device=args.device, size=args.size,
                              runtime=runtime_choice(args), preset=getattr(args, "preset", None),
                              batch_size=batch_size, threads=threads)
    except (ModelFileError, RuntimeUnavailable, RuntimeChoiceError, ImportError) as error:
        raise CLIError(str(error)) from None
    if predictor.device == "cpu" and predictor.runtime_name in ("openvino", "torchscript", "eager"):
        from csnet.cli.malloc import tune_malloc

        tune_malloc()  # glibc keeps freed activations for the next forward (benchmarks/RESULTS.md)
    return predictor


def _set_cpu_threads(threads: Optional[int]) -> None:
    """The process's CPU thread count, by the policy ``csnet train`` shares (:mod:`csnet.cli.threads`): ``--threads``
    when given, one thread on a busy machine. The PyTorch and OpenVINO runtimes take torch's count."""
    from csnet.cli.threads import set_cpu_threads

    set_cpu_threads(threads)


# ------------------------------------------------------------------------------------------------

def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image or video files, folders (recursive), quoted globs, or - for stdin")
    parser.add_argument("-o", "--output", default=None, metavar="OUT",
                        help="output folder (or file, for one image; - for stdout). Required unless INPUT is -")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--cutout", action="store_true", help="write RGBA PNG cutouts instead of masks")
    what.add_argument("--background", metavar="COLOR|IMAGE",
                      help="write the object over a colour (white, #00ff00, 0,255,0) or an image")
    what.add_argument("--overlay", action="store_true", help="write the images with the salient region tinted")
    what.add_argument("--blur", nargs="?", type=float, const=0.0, default=None, metavar="RADIUS",
                      help="write the subject sharp over its background blurred (RADIUS pixels, default 2%% of "
                           "the longer side)")
    parser.add_argument("--refine", nargs="?", const="guided", default=None, choices=["guided", "matting", "none"],
                        help="snap the mask to the image's edges (needs csnet[refine]): guided (the default "
                             "when --refine is given alone; fast, also for videos) or matting (stills; seconds "
                             "per photo). Cutouts then reach full opacity and carry no background colour")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="binarize the mask at probability T in [0, 1] (default: soft mask)")
    add_model_arguments(parser)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                        help="threads decoding and encoding images around the model (default min(4, cores))")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs already exist")
    parser.add_argument("--watch", action="store_true",
                        help="with one input folder: keep running and process images and videos (animated GIFs "
                             "too) as they arrive (polled every second, a file once its size stopped changing); "
                             "Ctrl-C stops")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


@dataclass
class Job:
    """One input: ``source`` (None for stdin), the output path(s), and whether it is a video."""

    source: Optional[Path]
    rel: PurePath
    video: bool = False
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "<stdin>" if self.source is None else str(self.source)


def _mode(args: argparse.Namespace) -> str:
    if args.cutout:
        return "cutout"
    if args.background is not None and args.background.strip().lower() == "transparent":
        return "cutout"
    if getattr(args, "blur", None) is not None:
        return "blur"
    if args.background is not None:
        return "background"
    if args.overlay:
        return "overlay"
    return "mask"


def _has_magic(text: str) -> bool:
    return glob.has_magic(text)


def _supported_suffixes() -> tuple[set[str], set[str]]:
    from PIL import Image

    from csnet.infer.video import VIDEO_SUFFIXES

    Image.init()
    images = {s.lower() for s in Image.registered_extensions()} - set(VIDEO_SUFFIXES)
    return images, set(VIDEO_SUFFIXES)


def _gif_as_video(path: Path) -> bool:
    """An animated GIF is processed as a video when the video extra can encode one; otherwise as a still
    (its first frame, with a warning)."""
    import importlib.util

    from csnet.infer.video import is_animated_gif

    return is_animated_gif(path) and importlib.util.find_spec("imageio_ffmpeg") is not None


def _hidden(rel: PurePath) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def collect_inputs(inputs: list[str], exclude: Optional[Path] = None) -> tuple[list[Job], list[str]]:
    """Expand INPUT arguments into jobs (in a stable order) and one-line errors for those that match nothing."""
    image_suffixes, video_suffixes = _supported_suffixes()
    wanted = image_suffixes | video_suffixes
    exclude = exclude.resolve() if exclude is not None else None
    jobs: list[Job] = []
    errors: list[str] = []

    def add(path: Path, rel: PurePath, root: Optional[Path] = None) -> None:
        # files found under an output folder inside the searched folder (earlier results) are not inputs
        if root is not None and exclude is not None and exclude != root.resolve() \
                and exclude in path.resolve().parents:
            return
        jobs.append(Job(path, rel, video=path.suffix.lower() in video_suffixes or _gif_as_video(path)))

    def add_tree(root: Path) -> int:
        count = 0
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and path.suffix.lower() in wanted and not _hidden(rel):
                add(path, rel, root)
                count += 1
        return count

    for text in inputs:
        if text == "-":
            jobs.append(Job(None, PurePath("stdin")))
            continue
        path = Path(text)
        if path.is_dir():
            if add_tree(path) == 0:
                errors.append(f"no images or videos found in {text}")
        elif path.is_file():
            add(path, PurePath(path.name))
        elif _has_magic(text):
            parts = Path(text).parts
            base_parts = []
            for part in parts:
                if _has_magic(part):
                    break
                base_parts.append(part)
            base = Path(*base_parts) if base_parts else Path(".")
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True)) if Path(m).is_file()]
            if not matches:
                errors.append(f"no files match {text}")
            for match in matches:
                add(match, match.relative_to(base) if match.is_relative_to(base) else PurePath(match.name), base)
        else:
            errors.append(f"no such file or directory: {text}")
    return jobs, errors


def assign_outputs(jobs: list[Job], out: Path, mode: str, file_output: bool) -> None:
    """Fill ``job.outputs``: ``OUT/<rel>.png``; inputs that would share one (``a.jpg``, ``a.png``) keep
    their full names instead (``a.jpg.png``, ``a.png.png``), whatever their order."""
    from collections import Counter

    from csnet.infer.video import video_output_paths

    if file_output:
        jobs[0].outputs = {mode: out}
        return
    images = [job for job in jobs if not job.video]
    counts = Counter(job.rel.with_suffix(".png") for job in images)
    used: set[PurePath] = set()
    for job in jobs:
        if job.video:
            kinds = ("mask", "cutout") if mode == "mask" else (mode,)
            job.outputs = video_output_paths(out / job.rel.with_suffix(""), kinds)
            continue
        candidate = job.rel.with_suffix(".png")
        if counts[candidate] > 1:
            log.warning("%s: several inputs map to %s; writing %s", job.label, out / candidate,
                        out / job.rel.with_name(job.rel.name + ".png"))
            candidate = job.rel.with_name(job.rel.name + ".png")
            number = 2
            while candidate in used:  # the same name from two folders given as separate inputs
                candidate = job.rel.with_name(f"{job.rel.name}-{number}.png")
                number += 1
        used.add(candidate)
        job.outputs = {mode: out / candidate}


class Report:
    """Counts and one-line error messages (printed above the progress bar)."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.done = self.failed = self.skipped = self.frames = 0
        self.bar = tqdm(total=total, unit="img", disable=True if quiet else None, dynamic_ncols=True,
                        file=sys.stderr, leave=False)

    def ok(self, count: int = 1) -> None:
        self.done += count
        self.bar.update(count)

    def fail(self, message: str) -> None:
        self.failed += 1
        self.bar.update(1)
        self.bar.write(f"csnet predict: error: {message}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _error_message(job: Job, error: BaseException) -> str:
    from csnet.io.images import ImageLoadError

    if isinstance(error, ImageLoadError):
        return str(error).replace("<bytes>", "<stdin>") if job.source is None else str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{job.label}: cannot write {error.filename} ({error.strerror or error})"
    text = " ".join(str(error).split()) or type(error).__name__
    return text if job.label in text else f"{job.label}: {text}"


def _background_value(spec: str):
    from csnet.infer.compose import parse_color
    from csnet.io.images import ImageLoadError, load_image

    if Path(spec).is_file():
        try:
            return load_image(spec)
        except ImageLoadError as error:
            raise CLIError(f"--background: {error}") from None
    try:
        return parse_color(spec)
    except ValueError:
        raise CLIError(f"--background: {spec!r} is neither a colour (white, #00ff00, 0,255,0) nor an image file") from None


def compose_output(image, mask, mode: str, background=None, *, refine: Optional[str] = None,
                   blur: Optional[float] = None):
    """The array to write for ``mode`` (mask, cutout, background, overlay, blur); with ``refine`` the mask is
    refined first and a cutout's edge colours are the object's own."""
    from csnet.infer import compose

    if refine is not None:
        from csnet.infer.refine import refine_mask

        mask = refine_mask(image, mask, refine)
    if mode == "mask":
        return mask
    if mode == "cutout":
        if refine is not None:
            from csnet.infer.refine import estimate_foreground

            return compose.cutout(estimate_foreground(image, mask), mask)
        return compose.cutout(image, mask)
    if mode == "overlay":
        return compose.overlay(image, mask)
    if mode == "blur":
        return compose.blur_background(image, mask, blur or None)
    return compose.replace_background(image, mask, background)


def _write(path: Path, array) -> None:
    from csnet.io.atomic import atomic_write_bytes
    from csnet.io.images import encode_image

    image_format = _FILE_OUTPUT_SUFFIXES.get(path.suffix.lower(), "PNG")
    atomic_write_bytes(path, encode_image(array, image_format))


def _write_stdout(job: Job, array) -> None:
    from csnet.io.images import encode_image

    sys.stdout.buffer.write(encode_image(array))
    sys.stdout.buffer.flush()


def _warn_if_animated(path: Path) -> None:
    """An animated GIF is predicted on its first frame only: say so rather than let the rest vanish silently."""
    from csnet.infer.video import gif_frames

    frames = gif_frames(path)
    if frames > 1:
        log.warning("%s: animated GIF with %d frames; only the first is used (pip install 'csnet[video]' to "
                    "process every frame, as a video)", path, frames)


def run_images(predictor, jobs: list[Job], *, mode: str, threshold: Optional[float], background, workers: int,
               report: Report, stdin_bytes: Optional[bytes] = None,
               write: Callable[[Job, Any], None] | None = None, refine: Optional[str] = None,
               blur: Optional[float] = None) -> None:
    """Decode in threads -> batch -> one runtime call per batch -> postprocess and write in threads
    (:func:`csnet.infer.pipeline.run_pipeline`: bounded memory; a bad file is reported and skipped)."""
    from csnet.infer.pipeline import run_pipeline
    from csnet.io.images import load_image

    keep_image = mode != "mask" or refine is not None

    def decode(job: Job):
        source = stdin_bytes if job.source is None else job.source
        if job.source is not None:
            _warn_if_animated(job.source)  # no-op for anything but a .gif
        image = load_image(source, max_pixels=predictor.max_pixels)
        return (image if keep_image else image.shape[:2]), predictor.preprocess(image)

    def finish(job: Job, image, logits) -> None:
        height, width = image.shape[:2] if keep_image else image
        mask = predictor.postprocess(logits, height, width, threshold=threshold)
        out = compose_output(image if keep_image else None, mask, mode, background, refine=refine, blur=blur)
        if write is not None:
            write(job, out)
        else:
            _write(job.outputs[mode], out)

    run_pipeline(jobs, decode, predictor.infer, finish, batch_size=predictor.batch_size, workers=workers,
                 on_done=lambda job: report.ok(),
                 on_error=lambda job, error: report.fail(_error_message(job, error)))


def run_videos(predictor, jobs: list[Job], *, threshold, background, report: Report, quiet: bool,
               refine: Optional[str] = None, blur: Optional[float] = None) -> None:
    from tqdm import tqdm

    from csnet.infer.video import VideoError, predict_video

    for job in jobs:
        bar = tqdm(unit="frame", desc=job.rel.name, disable=True if quiet else None, leave=False, file=sys.stderr)
        last = [0]

        def progress(frames: int) -> None:
            bar.update(frames - last[0])
            last[0] = frames

        try:
            frames = predict_video(predictor, job.source, job.outputs, batch_size=predictor.batch_size,
                                   threshold=threshold, background=background, progress=progress,
                                   refine=refine, blur=blur)
            report.frames += frames
            report.ok()
        except (VideoError, OSError, ValueError) as error:
            report.fail(_error_message(job, error))
        finally:
            bar.close()


_WATCH_INTERVAL_S = 1.0
_WATCH_BATCH = 256  # at most this many new files per round: memory and latency stay bounded however many arrive


def _watch(args: argparse.Namespace, mode: str, background, refine, blur, report: Report, first: list[Job],
           out: Optional[Path]) -> int:
    """Process ``first``, then poll the input folder and process each new image (or video, animated GIFs
    included) once its size is stable.

    A file is seen once per (path, size, mtime): a file rewritten later is processed again. Ctrl-C ends the
    loop after the round in progress (the pipeline finishes or drops its queued work) with exit code 0.
    """
    if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir() or out is None:
        raise CLIError("--watch takes one input folder and -o OUT")
    root = Path(args.inputs[0])
    predictor = make_predictor(args)
    seen: set[tuple[Path, int, int]] = set()
    sizes: dict[Path, int] = {}

    def stamp(job: Job) -> tuple[Path, int, int]:
        stat = job.source.stat()  # type: ignore[union-attr]
        return job.source, stat.st_size, stat.st_mtime_ns  # type: ignore[return-value]

    def process(jobs: list[Job]) -> None:
        for job in jobs:
            seen.add(stamp(job))
        run_images(predictor, [job for job in jobs if not job.video], mode=mode, threshold=args.threshold,
                   background=background, workers=args.workers, report=report, refine=refine, blur=blur)
        run_videos(predictor, [job for job in jobs if job.video], threshold=args.threshold, background=background,
                   report=report, quiet=args.quiet, refine=refine, blur=blur)

    try:
        process([job for job in first if job.source is not None])
        for job in collect_inputs([str(root)], exclude=out)[0]:
            seen.add(stamp(job))  # what was there at the start (skipped, done, or failed) is not "new"
        if not args.quiet:
            print(f"watching {root} (Ctrl-C stops)", file=sys.stderr)
        while True:
            time.sleep(_WATCH_INTERVAL_S)
            jobs = collect_inputs([str(root)], exclude=out)[0]
            ready = []
            for job in jobs:
                try:
                    key = stamp(job)
                except OSError:
                    continue  # gone between listing and stat
                if key in seen:
                    continue
                if sizes.get(job.source) == key[1]:  # same size as one poll ago: the writer is done
                    ready.append(job)
                sizes[job.source] = key[1]  # type: ignore[index]
            if ready:
                ready = ready[:_WATCH_BATCH]
                assign_outputs(ready, out, mode, False)
                for job in ready:
                    sizes.pop(job.source, None)  # type: ignore[arg-type]
                process(ready)
    except KeyboardInterrupt:
        pass
    report.close()
    if not args.quiet:
        print(f"{report.done} done, {report.failed} failed, {report.skipped} skipped", file=sys.stderr)
    return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    mode = _mode(args)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CLIError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.workers < 1:
        raise CLIError(f"--workers must be positive, got {args.workers}")
    stdin_input = "-" in args.inputs
    if stdin_input and len(args.inputs) > 1:
        raise CLIError("- (stdin) cannot be combined with other inputs")
    if args.output is None and not stdin_input:
        raise CLIError("give an output folder with -o OUT (or read - from stdin to write to stdout)")
    to_stdout = args.output == "-" or (args.output is None and stdin_input)
    out = None if to_stdout else Path(args.output)
    background = _background_value(args.background) if mode == "background" else None

    refine = None if args.refine in (None, "none") else args.refine
    blur = getattr(args, "blur", None)
    if blur is not None and blur < 0:
        raise CLIError(f"--blur must be >= 0, got {blur}")
    if refine is not None:
        from csnet.infer.refine import missing_modules

        missing = missing_modules(refine, cutout=mode == "cutout")
        if missing:
            raise CLIError(f"--refine {refine} needs {', '.join(missing)}: pip install 'csnet[refine]'")

    jobs, errors = collect_inputs(args.inputs, exclude=out if out is not None and out.is_dir() else None)
    if not jobs and not errors:
        raise CLIError("no images or videos found")
    if not jobs:  # every input is missing: say so, rather than judging -o against no inputs
        for message in errors:
            print(f"csnet predict: error: {message}", file=sys.stderr)
        return 1
    file_output = False
    if out is not None and out.suffix.lower() in _FILE_OUTPUT_SUFFIXES and not out.is_dir():
        if len(jobs) != 1 or jobs[0].video:
            gif = " (an animated GIF is processed as a video: -o NAME.webm or NAME.mp4)" if jobs[0].video else ""
            raise CLIError(f"-o {out} names a file, but the inputs are not exactly one image; give a folder{gif}")
        file_output = True
        if mode in ("cutout",) and _FILE_OUTPUT_SUFFIXES[out.suffix.lower()] not in _ALPHA_FORMATS:
            raise CLIError(f"a cutout has transparency: write it as .png, .webp or .tif, not {out.suffix}")
    if to_stdout and any(job.video for job in jobs):
        raise CLIError("videos cannot be written to stdout; give -o OUT")
    from csnet.infer.video import VIDEO_SUFFIXES

    video_file = out is not None and out.suffix.lower() in VIDEO_SUFFIXES and not out.is_dir()
    if video_file:  # `-o clip.mp4` names the one output video, not a folder
        if len(jobs) != 1 or not jobs[0].video:
            raise CLIError(f"-o {out} names a video file, but the inputs are not exactly one video; give a folder")
        if mode == "cutout" and out.suffix.lower() != ".webm":
            raise CLIError(f"a video cutout has transparency: write it as .webm (VP9 with alpha), not {out.suffix}")
        jobs[0].outputs = {mode: out}
    elif out is not None:
        assign_outputs(jobs, out, mode, file_output)

    report = Report(total=len(jobs) + len(errors), quiet=args.quiet or to_stdout)
    for message in errors:
        report.fail(message)
    todo: list[Job] = []
    for job in jobs:
        if job.source is not None and any(p.resolve() == job.source.resolve() for p in job.outputs.values()):
            report.fail(f"{job.label}: the output would overwrite the input; choose another -o")
        elif args.skip_existing and job.outputs and all(p.exists() for p in job.outputs.values()):
            report.skipped += 1
            report.bar.update(1)
        else:
            todo.append(job)

    start = time.perf_counter()
    if args.watch:
        return _watch(args, mode, background, refine, blur, report, todo, out)
    if todo:
        predictor = make_predictor(args)
        log.debug("%r", predictor)
        stdin_bytes = sys.stdin.buffer.read() if stdin_input else None
        write = _write_stdout if to_stdout else None
        images = [job for job in todo if not job.video]
        videos = [job for job in todo if job.video]
        run_images(predictor, images, mode=mode, threshold=args.threshold, background=background,
                   workers=args.workers, report=report, stdin_bytes=stdin_bytes, write=write, refine=refine,
                   blur=blur)
        run_videos(predictor, videos, threshold=args.threshold, background=background, report=report,
                   quiet=args.quiet, refine=refine, blur=blur)
    report.close()
    elapsed = time.perf_counter() - start
    if not args.quiet:
        rate = f", {report.done / elapsed:.1f} images/s" if report.done and elapsed > 0 else ""
        frames = (f", {report.frames} video frames ({report.frames / elapsed:.1f} frames/s)"
                  if report.frames and elapsed > 0 else "")
        print(f"{report.done} done, {report.failed} failed, {report.skipped} skipped in {elapsed:.1f} s"
              f"{rate}{frames}", file=sys.stderr if to_stdout else sys.stdout)
    return 1 if report.failed else 0
