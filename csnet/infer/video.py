"""Saliency for videos, streamed: frames are decoded, predicted and encoded in batches, so memory stays
constant whatever the clip's length (nothing but one batch of frames is ever held).

Decoding and encoding run in ffmpeg processes (the binary that ships with ``imageio-ffmpeg``, the
``video`` extra), beside the model. What each output is:

========== ================ ===================================================================
output     file             encoding
========== ================ ===================================================================
mask       ``NAME.mask.mp4``  H.264 (libx264, yuv420p, CRF 16): the mask as gray levels, plays
                            anywhere; odd frame sizes are padded by one row/column of black
cutout     ``NAME.cutout.webm`` VP9 with an alpha channel (libvpx-vp9, yuva420p): the object on a
                            transparent background; plays with transparency in Chrome and
                            Firefox and imports into video editors (decode it with libvpx,
                            ``-c:v libvpx-vp9``; ffmpeg's native VP9 decoder drops alpha)
overlay    ``NAME.overlay.mp4`` H.264: the frames with the salient region tinted
background ``NAME.background.mp4`` H.264: the object over a new colour or image
========== ================ ===================================================================

The audio track is not copied. Every output is written to a temporary file beside its destination
and renamed when the clip is complete.

An animated GIF is a clip too (:func:`is_animated_gif`): its frames are decoded by Pillow, which composes
them as browsers do, and each is predicted once; frames shown longer than others are repeated in the output
so the timing is kept (a GIF's delays vary per frame, a video's frame rate does not).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Union

import numpy as np

from csnet.infer import compose
from csnet.io.atomic import atomic_path

__all__ = ["VIDEO_SUFFIXES", "VIDEO_OUTPUTS", "VideoError", "is_video", "gif_frames", "is_animated_gif",
           "video_output_paths", "predict_video"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                            ".flv", ".ts", ".3gp", ".ogv"})
#: output kind -> file name suffix
VIDEO_OUTPUTS: dict[str, str] = {"mask": ".mask.mp4", "cutout": ".cutout.webm", "overlay": ".overlay.mp4",
                                 "background": ".background.mp4", "blur": ".blur.mp4"}

_H264 = ["-crf", "16", "-preset", "veryfast", "-movflags", "+faststart"]
#: The shortest output frame step for GIFs (50 fps): delays of 10 ms would otherwise multiply every frame.
_GIF_MIN_STEP_MS = 20
#: Browsers show GIF frames with delays of 0 or 10 ms for 100 ms; so does the output.
_GIF_DEFAULT_DELAY_MS = 100
_VP9_ALPHA = ["-b:v", "0", "-crf", "30", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1",
              "-auto-alt-ref", "0"]


class VideoError(RuntimeError):
    """A video that cannot be read or written; the message is one line naming the file."""


def is_video(path: Union[str, os.PathLike]) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def gif_frames(source: Union[str, os.PathLike, bytes]) -> int:
    """Frames of the GIF ``source`` (a path, or an upload's bytes); 1 for anything else, and for a file Pillow
    cannot open (the image decoder reports it)."""
    import io

    from PIL import Image

    if isinstance(source, bytes):
        if not source.startswith(b"GIF8"):
            return 1
        source = io.BytesIO(source)
    elif Path(source).suffix.lower() != ".gif":
        return 1
    try:
        with Image.open(source, formats=("GIF",)) as image:
            return getattr(image, "n_frames", 1)
    except (OSError, ValueError, SyntaxError):
        return 1


def is_animated_gif(source: Union[str, os.PathLike, bytes]) -> bool:
    """Whether ``source`` is a GIF of more than one frame."""
    return gif_frames(source) > 1
    from PIL import Image

    try:
        with Image.open(path, formats=("GIF",)) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, SyntaxError):
        return False


def video_output_paths(out_base: Union[str, os.PathLike], kinds: tuple[str, ...]) -> dict[str, Path]:
    """``{kind: out_base + suffix}``, e.g. ``out/clip`` -> ``out/clip.mask.mp4``."""
    base = os.fspath(out_base)
    return {kind: Path(base + VIDEO_OUTPUTS[kind]) for kind in kinds}


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise VideoError("videos need imageio-ffmpeg: pip install 'csnet[video]'") from error
    return imageio_ffmpeg


def _writer(path: Path, kind: str, size: tuple[int, int], fps: float):
    """A started imageio-ffmpeg writer generator for ``kind`` at ``size = (width, height)``."""
    ffmpeg = _ffmpeg()
    width, height = size
    if kind == "cutout":
        pix_in, pix_out, codec, params = "rgba", "yuva420p", "libvpx-vp9", list(_VP9_ALPHA)
    else:
        pix_in = "gray" if kind == "mask" else "rgb24"
        pix_out, codec, params = "yuv420p", "libx264", list(_H264)
        if width % 2 or height % 2:  # 4:2:0 H.264 needs even sizes
            params += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    writer = ffmpeg.write_frames(str(path), size, pix_fmt_in=pix_in, pix_fmt_out=pix_out, fps=fps,
                                 codec=codec, quality=None, macro_block_size=1, output_params=params,
                                 ffmpeg_log_level="error")
    writer.send(None)
    return writer


Frames = Iterator[tuple[np.ndarray, int]]
"""``(H x W x 3 uint8 frame, how many output frames it lasts)`` in order."""


def _read(source: Path) -> tuple[tuple[int, int], float, Frames, Callable[[], None]]:
    """``((width, height), fps, frames, close)`` of a video, decoded by ffmpeg."""
    ffmpeg = _ffmpeg()
    reader = ffmpeg.read_frames(str(source), pix_fmt="rgb24")
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
        reader.close()
        first = str(error).strip().splitlines()
        raise VideoError(f"cannot read video {source}: {first[-1] if first else 'no video stream'}") from error
    width, height = (int(v) for v in meta["size"])

    def frames() -> Frames:
        try:
            for raw in reader:
                if len(raw) != width * height * 3:
                    return  # a truncated last frame
                yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3), 1
        except RuntimeError as error:  # imageio-ffmpeg reports a dying ffmpeg as RuntimeError
            raise VideoError(f"video decoding failed: {' '.join(str(error).split())[:300]}") from error

    return (width, height), float(meta.get("fps") or 25.0), frames(), reader.close


def _read_gif(source: Path, max_pixels: Optional[int]) -> tuple[tuple[int, int], float, Frames, Callable[[], None]]:
    """``((width, height), fps, frames, close)`` of an animated GIF, decoded by Pillow one frame at a time.

    The output rate is the greatest common divisor of the frame delays (at most 50 fps) and each frame
    lasts its delay in output frames.
    """
    from PIL import Image

    from csnet.io.images import ImageLoadError, load_image

    try:
        load_image(source, max_pixels=max_pixels)  # the size limits and a decodable first frame, as for stills
        image = Image.open(source, formats=("GIF",))
    except (ImageLoadError, OSError) as error:
        raise VideoError(f"cannot read GIF {source}: {getattr(error, 'problem', error)}") from error
    try:
        delays = []
        for index in range(image.n_frames):
            image.seek(index)
            delay = int(image.info.get("duration") or 0)
            delays.append(delay if delay > 10 else _GIF_DEFAULT_DELAY_MS)
    except (OSError, EOFError, ValueError) as error:
        image.close()
        raise VideoError(f"cannot read GIF {source}: frame {len(delays) + 1}: {error}") from error
    step = max(_GIF_MIN_STEP_MS, math.gcd(*delays))

    def frames() -> Frames:
        try:
            for index, delay in enumerate(delays):
                image.seek(index)
                yield np.asarray(image.convert("RGB")), max(1, round(delay / step))
        except (OSError, EOFError, ValueError) as error:
            raise VideoError(f"GIF {source}: frame {index + 1} cannot be decoded ({error})") from error

    return image.size, 1000.0 / step, frames(), image.close


def predict_video(predictor, source: Union[str, os.PathLike], outputs: Mapping[str, Union[str, os.PathLike]], *,
                  batch_size: int = 8, threshold: Optional[float] = None,
                  background: Union[str, tuple, np.ndarray, None] = None,
                  progress: Optional[Callable[[int], None]] = None, refine: Optional[str] = None,
                  blur: Optional[float] = None) -> int:
    """Predict every frame of ``source`` and write the requested outputs.

    Args:
        predictor: a :class:`~csnet.infer.predictor.Predictor`.
        source: a video file ffmpeg can read, or an animated GIF.
        outputs: ``{kind: path}`` with kinds from :data:`VIDEO_OUTPUTS` (see
            :func:`video_output_paths`).
        batch_size: frames per forward pass (and the most frames held at once).
        threshold: binarize masks at this probability.
        background: colour or ``h x w x 3`` uint8 image for the ``background`` output.
        progress: called with the number of frames done after each batch.
        refine: ``"guided"`` to snap each frame's mask to its edges (:mod:`csnet.infer.refine`); matting,
            seconds per frame, is for stills and refused here.
        blur: background blur radius of the ``blur`` output (``None``: 2% of the longer side).

    Returns:
        The number of frames predicted (a GIF's frames, not counting the repeats of longer ones).

    Raises:
        VideoError: the video cannot be decoded or an output cannot be encoded.
    """
    source = Path(source)
    unknown = set(outputs) - set(VIDEO_OUTPUTS)
    if unknown:
        raise ValueError(f"unknown video outputs {sorted(unknown)}; choose from {list(VIDEO_OUTPUTS)}")
    if "background" in outputs and background is None:
        raise ValueError("the background output needs a background colour or image")
    if refine not in (None, "guided"):
        raise ValueError(f"videos are refined with 'guided' only, not {refine!r} (matting takes seconds a frame)")
    if not source.is_file():
        raise VideoError(f"cannot read video {source}: file not found")
    if source.suffix.lower() == ".gif":
        size, fps, decoded, close = _read_gif(source, getattr(predictor, "max_pixels", None))
    else:
        size, fps, decoded, close = _read(source)
    frames = 0
    try:
        with contextlib.ExitStack() as stack:
            writers = {}
            for kind, path in outputs.items():
                tmp = stack.enter_context(atomic_path(path))
                writers[kind] = _writer(tmp, kind, size, fps)
                stack.callback(writers[kind].close)  # runs before the rename: closes ffmpeg first
            batch: list[tuple[np.ndarray, int]] = []
            for item in decoded:
                batch.append(item)
                if len(batch) == batch_size:
                    _process(predictor, batch, writers, threshold, background, refine, blur)
                    frames += len(batch)
                    batch = []
                    if progress:
                        progress(frames)
            if batch:
                _process(predictor, batch, writers, threshold, background, refine, blur)
                frames += len(batch)
                if progress:
                    progress(frames)
            if frames == 0:
                raise VideoError(f"cannot read video {source}: no frames")
    except (BrokenPipeError, OSError) as error:
        raise VideoError(f"video {source}: ffmpeg failed ({' '.join(str(error).split())[:300]})") from error
    finally:
        close()
    return frames


def _process(predictor, frames: list[tuple[np.ndarray, int]], writers: dict, threshold: Optional[float],
             background, refine: Optional[str] = None, blur: Optional[float] = None) -> None:
    logits = predictor.infer(np.stack([predictor.preprocess(frame) for frame, _ in frames]))
    for (frame, repeat), frame_logits in zip(frames, logits):
        mask = predictor.postprocess(frame_logits, frame.shape[0], frame.shape[1], threshold=threshold)
        if refine is not None:
            from csnet.infer.refine import refine_mask

            mask = refine_mask(frame, mask, refine)
        for kind, writer in writers.items():
            if kind == "mask":
                out = mask
            elif kind == "cutout":
                out = compose.cutout(frame, mask)
            elif kind == "overlay":
                out = compose.overlay(frame, mask)
            elif kind == "blur":
                out = compose.blur_background(frame, mask, blur or None)
            else:
                out = compose.replace_background(frame, mask, background)
            data = np.ascontiguousarray(out).tobytes()
            for _ in range(repeat):
                writer.send(data)
