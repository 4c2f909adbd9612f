"""Video files in and out: decode any common format to uint8 RGB frames, encode frames to browser-ready mp4 or gif.

Decoding uses PyAV (libav, fastest here and it reports streams and frame counts); encoding uses the ffmpeg binary
shipped in imageio-ffmpeg (H.264, yuv420p: what every browser plays) and Pillow for gif. Everything a user might hand
us that is not a readable video becomes a `VideoError` with a plain-language message naming the file. This module
knows nothing about models: resizing for a model happens in `jepa_demo.preprocess`.
"""

import os
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class VideoError(ValueError):
    """A file that cannot be read as a video; the message says which file and why, in plain words."""


def read_video(path, num_frames: int | None = None, size: int | None = None) -> np.ndarray:
    """Decode to uint8 (T, H, W, 3) RGB. `num_frames`: that many frames spread evenly over the clip (repeated when
    the clip is shorter); only those are kept in memory. `size`: scale so the shorter side is `size` pixels."""
    path = _check_path(path)
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    wanted = None
    if num_frames is not None:
        total = _count_frames(path)
        wanted = np.linspace(0, total - 1, num_frames).round().astype(int)
    frames = _decode(path, None if wanted is None else set(wanted.tolist()))
    if wanted is not None:
        if len(frames) < len(set(wanted.tolist())):  # the demux count over-promised: a damaged file
            raise VideoError(f"{path.name}: damaged video (only {len(frames)} frames could be decoded)")
        position = {index: i for i, index in enumerate(sorted(set(wanted.tolist())))}
        frames = [frames[position[index]] for index in wanted]
    video = np.stack(frames)
    return _resize_short_side(video, size) if size else video


def video_info(path) -> dict:
    """{"frames", "fps", "width", "height", "duration"} without decoding pixels (frames counted from packets)."""
    path = _check_path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
    frames = _count_frames(path)
    duration = frames / fps if fps else 0.0
    return {"frames": frames, "fps": fps, "width": width, "height": height, "duration": duration}


def write_video(path, frames: np.ndarray, fps: float = 8.0) -> None:
    """Write uint8 (T, H, W, 3) frames as .mp4 (H.264 yuv420p) or .gif; atomically (temporary name, then rename)."""
    path = Path(path)
    frames = _check_frames(frames)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"{path.name}: can only write .mp4 or .gif, not {suffix or 'no extension'}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        (_write_mp4 if suffix == ".mp4" else _write_gif)(tmp, frames, fps)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path.name}: file not found")
    if path.is_dir():
        raise VideoError(f"{path.name}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path.name}: the file is empty")
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        raise VideoError(f"{path.name}: is an image, not a video")
    return path


def _open(path: Path):
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, OSError) as err:
        raise VideoError(f"{path.name}: not a readable video ({_reason(err)})") from None


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise VideoError(f"{path.name}: not a video (the file has no video stream)")
    stream = container.streams.video[0]
    if stream.codec_context.width < 1 or stream.codec_context.height < 1:
        raise VideoError(f"{path.name}: not a readable video (no picture size)")
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):  # still-image demuxers
        raise VideoError(f"{path.name}: is an image, not a video")
    return stream


def _count_frames(path: Path) -> int:
    """Count video packets (cheap: no decoding); container frame counts are often missing or wrong."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            count = sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.FFmpegError as err:
            raise VideoError(f"{path.name}: damaged video ({_reason(err)})") from None
    if count == 0:
        raise VideoError(f"{path.name}: the video has no frames")
    return count


def _decode(path: Path, keep: set[int] | None) -> list[np.ndarray]:
    """Frames in order; only the indices in `keep` when given."""
    frames = []
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                if keep is None or index in keep:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if keep is not None and index >= max(keep):
                    break
        except av.FFmpegError as err:
            if not frames:
                raise VideoError(f"{path.name}: damaged video ({_reason(err)})") from None
            # A truncated file: keep the frames that really decoded rather than inventing the rest.
    if not frames:
        raise VideoError(f"{path.name}: no frame could be decoded")
    return frames


def _resize_short_side(video: np.ndarray, size: int) -> np.ndarray:
    height, width = video.shape[1:3]
    scale = size / min(height, width)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([np.asarray(Image.fromarray(f).resize(new, Image.BILINEAR, reducing_gap=None)) for f in video])


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) < 1:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    return frames


def _write_mp4(path: str, frames: np.ndarray, fps: float) -> None:
    import imageio_ffmpeg

    # yuv420p needs even sides: pad by repeating the last row/column rather than letting ffmpeg rescale.
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    writer = imageio_ffmpeg.write_frames(path, (frames.shape[2], frames.shape[1]), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=1, quality=8,
                                         output_params=["-movflags", "+faststart"], ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _write_gif(path: str, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.split(":")[-1].strip() or err.__class__.__name__
