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
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Union

import numpy as np

from csnet.infer import compose
from csnet.io.atomic import atomic_path

__all__ = ["VIDEO_SUFFIXES", "VIDEO_OUTPUTS", "VideoError", "is_video", "video_output_paths", "predict_video"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                            ".flv", ".ts", ".3gp", ".ogv"})
#: output kind -> file name suffix
VIDEO_OUTPUTS: dict[str, str] = {"mask": ".mask.mp4", "cutout": ".cutout.webm", "overlay": ".overlay.mp4",
                                 "background": ".background.mp4", "blur": ".blur.mp4"}

_H264 = ["-crf", "16", "-preset", "veryfast", "-movflags", "+faststart"]
_VP9_ALPHA = ["-b:v", "0", "-crf", "30", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1",
              "-auto-alt-ref", "0"]


class VideoError(RuntimeError):
    """A video that cannot be read or written; the message is one line naming the file."""


def is_video(path: Union[str, os.PathLike]) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


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


def _read(source: Path) -> tuple[dict, Iterator[bytes]]:
    ffmpeg = _ffmpeg()
    reader = ffmpeg.read_frames(str(source), pix_fmt="rgb24")
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
        reader.close()
        first = str(error).strip().splitlines()
        raise VideoError(f"cannot read video {source}: {first[-1] if first else 'no video stream'}") from error
    return meta, reader


def predict_video(predictor, source: Union[str, os.PathLike], outputs: Mapping[str, Union[str, os.PathLike]], *,
                  batch_size: int = 8, threshold: Optional[float] = None,
                  background: Union[str, tuple, np.ndarray, None] = None,
                  progress: Optional[Callable[[int], None]] = None, refine: Optional[str] = None,
                  blur: Optional[float] = None) -> int:
    """Predict every frame of ``source`` and write the requested outputs.

    Args:
        predictor: a :class:`~csnet.infer.predictor.Predictor`.
        source: a video file ffmpeg can read.
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
        The number of frames processed.

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
    meta, reader = _read(source)
    width, height = (int(v) for v in meta["size"])
    fps = float(meta.get("fps") or 25.0)
    frame_bytes = width * height * 3
    frames = 0
    try:
        with contextlib.ExitStack() as stack:
            writers = {}
            for kind, path in outputs.items():
                tmp = stack.enter_context(atomic_path(path))
                writers[kind] = _writer(tmp, kind, (width, height), fps)
                stack.callback(writers[kind].close)  # runs before the rename: closes ffmpeg first
            batch: list[np.ndarray] = []
            for raw in _frames(reader):
                if len(raw) != frame_bytes:
                    break  # a truncated last frame
                batch.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
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
        reader.close()
    return frames


def _frames(reader: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from reader
    except RuntimeError as error:  # imageio-ffmpeg reports a dying ffmpeg as RuntimeError
        raise VideoError(f"video decoding failed: {' '.join(str(error).split())[:300]}") from error


def _process(predictor, frames: list[np.ndarray], writers: dict, threshold: Optional[float],
             background, refine: Optional[str] = None, blur: Optional[float] = None) -> None:
    logits = predictor.infer(np.stack([predictor.preprocess(frame) for frame in frames]))
    for frame, frame_logits in zip(frames, logits):
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
            writer.send(np.ascontiguousarray(out).tobytes())
