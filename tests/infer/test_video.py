"""Videos: streamed in batches to a mask MP4 and a VP9 cutout WebM with alpha."""
import numpy as np
import pytest

from csnet.infer.video import VideoError, predict_video, video_output_paths
from tests.infer.helpers import gradient_image, shared_predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")


def make_clip(path, frames=12, width=64, height=48, fps=12):
    """A tiny clip: a bright blob moving across a gradient."""
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, macro_block_size=1, quality=None,
                                         output_params=["-crf", "10"], ffmpeg_log_level="error")
    writer.send(None)
    base = gradient_image(height, width)
    for i in range(frames):
        frame = base.copy()
        frame[10:30, 4 + 2 * i:20 + 2 * i] = 255
        writer.send(frame.tobytes())
    writer.close()
    return path


def read_clip(path, rgba=False):
    input_params = ["-c:v", "libvpx-vp9"] if rgba else None  # ffmpeg's native VP9 decoder drops alpha
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgba" if rgba else "rgb24", bpp=4 if rgba else 3,
                                        input_params=input_params)
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 4 if rgba else 3) for f in reader]
    return meta, frames


def test_mask_and_alpha_videos(tmp_path):
    source = make_clip(tmp_path / "clip.mp4")
    predictor = shared_predictor()
    batches = []
    infer = predictor.infer

    class Recording:
        batch_size, max_pixels = predictor.batch_size, predictor.max_pixels
        preprocess, postprocess = predictor.preprocess, predictor.postprocess

        def infer(self, batch):
            batches.append(len(batch))
            return infer(batch)

    outputs = video_output_paths(tmp_path / "out" / "clip", ("mask", "cutout", "overlay"))
    assert [p.name for p in outputs.values()] == ["clip.mask.mp4", "clip.cutout.webm", "clip.overlay.mp4"]
    done = []
    frames = predict_video(Recording(), source, outputs, batch_size=5, progress=done.append)
    assert frames == 12 and batches == [5, 5, 2] and done == [5, 10, 12]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in outputs.values())

    meta, masks = read_clip(outputs["mask"])
    assert len(masks) == 12 and tuple(meta["size"]) == (64, 48) and meta["fps"] == 12
    meta, cutouts = read_clip(outputs["cutout"], rgba=True)
    assert len(cutouts) == 12 and tuple(meta["size"]) == (64, 48)
    alpha = np.stack([c[:, :, 3] for c in cutouts]).astype(float)
    gray = np.stack([m[:, :, 0] for m in masks]).astype(float)
    assert alpha.std() > 5  # a real alpha channel, not opaque
    assert np.abs(alpha - gray).mean() < 8  # the alpha is the mask (up to lossy coding)
    _, expected = read_clip(source)
    first = predictor.predict(expected[0])
    assert np.abs(gray[0] - first).mean() < 8


def test_odd_sizes_and_errors(tmp_path):
    source = make_clip(tmp_path / "odd.mp4", frames=3, width=64, height=48)
    outputs = video_output_paths(tmp_path / "odd", ("mask",))
    assert predict_video(shared_predictor(), source, outputs) == 3
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoError, match="bad.mp4"):
        predict_video(shared_predictor(), tmp_path / "bad.mp4", video_output_paths(tmp_path / "bad", ("mask",)))
    assert not list(tmp_path.glob("bad.*.mp4")) and not list(tmp_path.glob(".bad*"))  # nothing half-written
    with pytest.raises(VideoError, match="not found"):
        predict_video(shared_predictor(), tmp_path / "missing.mp4", outputs)


def test_animated_gif_is_a_clip_with_its_timing(tmp_path):
    """Each GIF frame is predicted once; a frame shown twice as long lasts two output frames."""
    from PIL import Image

    from csnet.infer.video import is_animated_gif

    frames = [gradient_image(48, 64, seed=i) for i in range(3)]
    for frame, i in zip(frames, range(3)):
        frame[8:40, 8 + 12 * i:24 + 12 * i] = 255
    gif = tmp_path / "anim.gif"
    pil = [Image.fromarray(f) for f in frames]
    pil[0].save(gif, save_all=True, append_images=pil[1:], duration=[100, 200, 100], loop=0)
    pil[0].save(tmp_path / "still.gif")
    assert is_animated_gif(gif) and not is_animated_gif(tmp_path / "still.gif")
    assert not is_animated_gif(tmp_path / "missing.gif")

    decoded = []
    with Image.open(gif) as image:  # what a browser shows: the GIF's own (palette) colours
        for index in range(3):
            image.seek(index)
            decoded.append(np.asarray(image.convert("RGB")))
    outputs = video_output_paths(tmp_path / "anim", ("mask", "cutout"))
    assert predict_video(shared_predictor(), gif, outputs) == 3
    meta, masks = read_clip(outputs["mask"])
    assert meta["fps"] == 10 and len(masks) == 4 and tuple(meta["size"]) == (64, 48)
    expected = [shared_predictor().predict(decoded[i]).astype(float) for i in (0, 1, 1, 2)]
    for mask, want in zip(masks, expected):
        assert np.abs(mask[:, :, 0] - want).mean() < 8
    assert len(read_clip(outputs["cutout"], rgba=True)[1]) == 4

    (tmp_path / "broken.gif").write_bytes(b"GIF89a" + b"\x00" * 20)
    with pytest.raises(VideoError, match="broken.gif"):
        predict_video(shared_predictor(), tmp_path / "broken.gif", video_output_paths(tmp_path / "b", ("mask",)))
