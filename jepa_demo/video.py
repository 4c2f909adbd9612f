"""Video files in and out: decode common formats to uint8 RGB frames, encode frames to mp4, gif or webm.

Decoding uses PyAV (the libav libraries in-process: it reports streams, packets and display rotation). Encoding runs
the ffmpeg binary shipped in imageio-ffmpeg: H.264 yuv420p for .mp4 (what every browser plays), VP9 for .webm and a
palette-optimised .gif. A file a user hands us that is not a readable video becomes a `VideoError` whose message names
the file and says why in plain words.

What this module does not know: models. It returns frames at the file's own size and frame rate (or a sample of
frames at one step and a short-side resize when asked); resizing, cropping and normalising for a model happen in
`jepa_demo.preprocess`.
"""

import errno
import math
import numbers
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import imageio_ffmpeg
import numpy as np
from PIL import Image

from .checkpoint import atomic_write, first_line, is_stream
from .config import shown_above
from .preprocess import MAX_PIXELS, positive_int, sample_frame_indices

# read_video holds the frames it returns at once (every frame without num_frames): a clip that would take more is
# refused rather than exhausting memory (a minute of 1080p at 30 fps takes 11 GB).
MAX_READ_ALL_BYTES = 2 * 2**30


# How far a frame's packet may come from its display position (B-frame reordering: H.264 allows 16 reference frames);
# farther means its timestamps do not follow the frames (see display_times).
MAX_REORDER = 16
# A picked frame this many frames or more past the one before (or from the start) is reached by seeking to the
# keyframe before it (when the frames' timestamps are known) rather than by decoding every frame between; nearer,
# decoding them costs less.
SEEK_FROM = 120

# The containers uploads and data=FOLDER may be, each written and read by the tests: phones' and cameras' (.3gp of
# older phones, .mts/.m2ts of camcorders, .ts recordings, .mjpeg of IP cameras) and older formats too, since a
# folder's files of any other suffix are passed over without a word.
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".gif", ".3gp", ".mts", ".m2ts", ".ts", ".mpg",
                  ".mpeg", ".wmv", ".flv", ".ogv", ".mjpeg", ".mjpg")
# The demuxers ffmpeg may pick for a file, whatever its name. ffmpeg chooses one from the first bytes, and some read
# other files or the network: a text file that starts "ffconcat version 1.0" is a concat script that can play the other
# files next to it (or itself, until no file can be opened), and HLS, DASH and SDP files name further sources. Still
# images stay allowed so that they are refused below with a plain reason.
_DEMUXERS = ",".join(["mov", "matroska", "avi", "gif", "mpegts", "mpeg", "flv", "live_flv", "asf", "ogg", "nut", "dv",
                      "rm", "yuv4mpegpipe", "ivf", "obu", "h264", "hevc", "h263", "m4v", "mpegvideo", "mjpeg", "apng",
                      "image2",
                      *sorted(name for name in av.formats_available if name.endswith("_pipe"))])
# The image demuxer reads a name holding %d as a numbered sequence: "photo%d.jpg" was read as photo1.jpg, photo2.jpg
# and so on, other files, as a video. The file named, and only it.
_ONE_FILE = {"pattern_type": "none"}


class VideoError(ValueError):
    """A file that cannot be read as a video; the message says which file and why, in plain words."""


def with_path(err: VideoError, path) -> str:
    """`err`'s message naming the file by `path` rather than by its name alone (cats/0.mp4 and dogs/0.mp4 look alike
    in a folder of labels)."""
    return f"{path}: {str(err).removeprefix(f'{Path(path).name}: ')}"


class DecodingTimedOut(VideoError):
    """Decoding ran out of its `timeout`: the file's length and size, not the frames asked for, decide that."""


class _Deadline:
    """Decoding loops check it between frames: a clip that takes too long becomes a VideoError, not a stuck worker.
    (One frame's decoding cannot be interrupted; the check comes after it.)"""

    def __init__(self, seconds: float | None):
        if seconds is not None and not seconds > 0:  # NaN too, which no clock passes: no limit at all
            raise ValueError(f"timeout must be a positive number of seconds or None, got {seconds}")
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() > self.end

    def check(self, path: Path, frames_done: int | None = None) -> None:
        if self.passed():
            done = "" if frames_done is None else f" ({frames_done} frames decoded)"
            raise DecodingTimedOut(f"{path.name}: gave up after {self.seconds:g} s of reading{done}; "
                             "try a shorter or smaller clip")


def read_video(path, num_frames: int | None = None, size: int | None = None, *,
               timeout: float | None = None, span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Decode a video file to uint8 RGB frames of shape (T, H, W, 3), upright (display rotation applied).

    num_frames: that many frames, one in k, k as large as fits (`jepa_demo.preprocess.sample_frame_indices`: the
        model's own sampling; frames repeat when the clip is shorter; with a variable frame rate, one step of time
        apart instead: see `_sample`); only the selected frames are kept in memory. None: every frame. Either way, a
        VideoError when they would take over MAX_READ_ALL_BYTES, 2 GiB (pass fewer num_frames or a size).
    size: scale each frame so its shorter side is `size` pixels (aspect kept, antialiased bilinear). None: as stored.
    timeout: give up (VideoError) once decoding has taken this many seconds. None: no limit.
    span: with `num_frames`, spread them over this part of the clip instead, (start, end) as fractions of its length
        (training draws random ones: a crop in time), widened around its middle to `num_frames` frames when it holds
        fewer and the clip has them. Frames far apart are reached by seeking (SEEK_FROM).
    """
    path = _check_file(path)
    num_frames = None if num_frames is None else positive_int("num_frames", num_frames)
    size = None if size is None else positive_int("size", size, " pixel")
    if len(span) != 2 or not 0 <= span[0] <= span[1] <= 1:
        raise ValueError(f"span must be (start, end) with 0 <= start <= end <= 1, got {span}")
    if num_frames is None and tuple(span) != (0, 1):  # every frame is read: a span would be ignored without a word
        raise ValueError(f"span needs num_frames, the frames to spread over it, got span={span} alone")
    deadline = _Deadline(timeout)
    if num_frames is None:
        return _read_all(path, size, deadline)
    return _sample(path, _scan(path, deadline), num_frames, size, deadline, span=span).frames


def _read_all(path: Path, size: int | None, deadline: _Deadline) -> np.ndarray:
    """Every frame, into one array sized from the packet count (refused over MAX_READ_ALL_BYTES), so memory holds a
    single copy. A decoder may give fewer frames than the packets (a damaged file) or more: only decoded ones are
    returned, copied out of the larger array (two copies for a moment)."""
    expected = _scan(path, deadline).frames
    video, count, matrices = None, 0, {}
    with _video(path, size) as (container, stream):
        aspect = _pixel_aspect(stream)
        for frame in _decode(container, stream, path, deadline):
            rgb = _to_rgb(frame, size, path, matrices, aspect)
            if video is None:
                video = np.empty(_within_budget(path, max(expected, 1), rgb.shape), np.uint8)
            elif count == len(video):
                video = _grown(path, video)
            _check_same_shape(path, video[0], rgb, count)
            video[count] = rgb
            count += 1
    return video if count == len(video) else video[:count].copy()  # a view would keep the whole buffer alive


def _grown(path: Path, video: np.ndarray) -> np.ndarray:
    """`video` with room for more frames (half as many again, as far as MAX_READ_ALL_BYTES allows)."""
    room = MAX_READ_ALL_BYTES // video[0].nbytes - len(video)
    more = max(1, min(len(video) // 2 + 1, room))
    shape = _within_budget(path, len(video) + more, video.shape[1:])
    grown = np.empty(shape, np.uint8)
    grown[:len(video)] = video
    return grown


class _OverBudget(VideoError):
    """Frames that would take more memory than MAX_READ_ALL_BYTES: the same however they are reached."""


def _within_budget(path: Path, frames: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of `frames` frames of `shape`; VideoError when they would take more than MAX_READ_ALL_BYTES."""
    nbytes = frames * math.prod(shape)
    if nbytes > MAX_READ_ALL_BYTES:
        height, width = shape[:2]
        raise _OverBudget(f"{path.name}: holding {frames} frames of {width}x{height} pixels would take "
                         f"{nbytes / 2**30:.3g} GiB, over the limit of {MAX_READ_ALL_BYTES / 2**30:.3g} GiB; pass "
                         "num_frames= to sample fewer frames or size= to scale them down")
    return (frames, *shape)


def _check_frame_count(path: Path, frames: int, size: int | None) -> None:
    """An _OverBudget for a frame count that no frame size fits in MAX_READ_ALL_BYTES (a frame takes at least 3
    bytes, `size`**2 pixels of 3 when scaled), said before the frames' numbers are drawn: 10**9 of them took tens of
    GiB as a list, and the process was killed for its memory before any frame was decoded."""
    least = frames * 3 * (size or 1) ** 2
    if least > MAX_READ_ALL_BYTES:
        raise _OverBudget(f"{path.name}: holding {frames} frames would take at least {least / 2**30:.3g} GiB, over the "
                          f"limit of {MAX_READ_ALL_BYTES / 2**30:.3g} GiB; pass fewer num_frames")


class Clip(NamedTuple):
    frames: np.ndarray  # uint8 (T, H, W, 3)
    source_frames: np.ndarray  # int (T,): each frame's number in the file, so results can point at the file's frames


def read_clip(path, max_frames: int, size: int, *, max_seconds: float | None = None,
              max_megabytes: float | None = None, max_aspect: float = 8.0, timeout: float | None = None,
              exactly: bool = False) -> Clip:
    """A file someone handed us, decoded for a model within limits: what the app and the CLI read uploads with.

    At most `max_frames` frames, one in k over the whole clip with k as small as that allows (so a long clip is
    sampled, never held whole in memory, and the time between frames stays constant), short side scaled to `size`.
    `exactly`: `max_frames` frames picked as `read_video(path, max_frames)` and the model pick them (k as large as
    fits), for a call that uses one model input's worth of frames.
    Refused with a VideoError that says which limit, before more than the first frame (read for the picture's size
    and rotation) is decoded: a file over `max_megabytes`, a clip
    over `max_seconds`, a picture more than `max_aspect` times wider than high or the reverse (models see a centred
    square of it, and the short-side resize would blow up the long side).
    `timeout`: as in `read_video`.
    """
    path = _check_file(path)
    max_frames, size = positive_int("max_frames", max_frames), positive_int("size", size, " pixel")
    megabytes = path.stat().st_size / 2**20
    if max_megabytes is not None and megabytes > max_megabytes:
        raise VideoError(f"{path.name}: the file is {shown_above(megabytes, max_megabytes)} MB; the limit is "
                         f"{max_megabytes:g} MB. Trim or compress it.")
    deadline = _Deadline(timeout)  # counts from here: a file of millions of packets is slow to scan, too
    info, packets = _info(path, deadline)
    if max_seconds is not None and info["duration"] > max_seconds:
        raise VideoError(f"{path.name}: the clip lasts {shown_above(info['duration'], max_seconds)} s; the limit is "
                         f"{max_seconds:g} s. Trim it to the moment you want to inspect.")
    width, height = info["width"], info["height"]
    if max(width, height) > max_aspect * min(width, height):
        raise VideoError(f"{path.name}: the picture is {width}x{height} pixels, more than {max_aspect:g} times wider "
                         "than high or higher than wide; a model would see only a small centred square of it")
    return _sample(path, packets, max_frames, size, deadline, at_most=not exactly)


def list_videos(root, what: str | None = None, hint: str = "") -> list[Path]:
    """Every video file under the folder `root`, sub-folders included, sorted; ValueError (starting with `what`,
    default the folder, and ending with `hint`) when it is not a folder or holds none."""
    root = Path(root)
    what = what or str(root)
    try:
        is_folder = root.is_dir()
    except OSError as err:  # a name too long, a folder one may not enter: raised, not answered False
        raise ValueError(f"{what}: cannot read it ({err.strerror or err})") from None
    if not is_folder:
        raise ValueError(f"{what}: not a folder{hint}")
    files = sorted(_video_files(root, what))
    if not files:
        raise ValueError(f"{what}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) found")
    return files


def _video_files(root: Path, what: str) -> list[Path]:
    """Files and folders whose names start with a dot are left out. Sub-folders that are links are followed (a probe
    folder of links to where each label's videos live; rglob skipped them, and their labels with them), except a link
    back to a folder above it, which would loop. A file reached by two paths (links, symbolic or hard) counts once,
    under the shorter one in a sub-folder (then the first in order): root/dogs/a.mp4 rather than
    root/cats/friends/a.mp4 through a link to ../dogs, or than root/a.mp4, which no sub-folder labels. A folder that
    cannot be listed, or a link to something missing (a label folder on a drive not mounted), is an error rather than
    a label or a file silently missing."""
    def refuse(err: OSError):
        raise ValueError(f"{what}: cannot read the folder {err.filename} ({err.strerror or err})")

    real_folders, by_file = {}, {}  # walked folder -> its real path; file (device, inode) -> the paths reaching it
    for folder, subfolders, names in os.walk(root, followlinks=True, onerror=refuse):
        real = real_folders[Path(folder)] = os.path.realpath(folder)
        if any(real_folders.get(parent) == real for parent in Path(folder).parents):
            subfolders.clear()  # a link to a folder above: its files are reached there
            continue
        # hidden names are not the user's videos: a Mac's ._clip.mp4 beside each clip copied to a FAT or exFAT
        # drive, a drive's .Trash-1000 folder
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            path = Path(folder) / name
            try:  # a folder that lists but cannot be entered (chmod 644: no x) raises from is_symlink and is_file
                _check_link(path, what)
                if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                    file = path.stat()  # not realpath, blind to hard links (cp -al, rsync --link-dest)
                    by_file.setdefault((file.st_dev, file.st_ino), []).append(path)
            except OSError as err:
                raise ValueError(f"{what}: cannot read {path} ({err.strerror or err})") from None
    depth = len(Path(root).parts)
    return [min(paths, key=lambda path: (len(path.parts) == depth + 1, len(path.parts), str(path)))
            for paths in by_file.values()]


def _check_link(path: Path, what: str) -> None:
    """ValueError for a link that cannot be followed (missing, looping, or where one may not look): it may be a video,
    or a folder of them (os.walk lists a link to a missing folder among the files; a label folder's name may hold a
    dot, 'St. Bernard')."""
    if not path.is_symlink():
        return
    try:
        path.stat()
    except OSError as err:
        raise ValueError(f"{what}: {path} is a link to {os.readlink(path)} that cannot be followed "
                         f"({err.strerror or err})") from None


def folder_label(path, root) -> str | None:
    """The label a folder of videos gives `path`: the sub-folder of `root` it lies in (root/cats/a/b.mp4: cats), or
    None for a file directly in `root`."""
    parts = Path(path).relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def video_info(path) -> dict:
    """{"frames": int, "fps": float, "width": int, "height": int, "duration": float seconds} of the video stream.

    Frames are counted from the file's packets (no full decode); width and height are those `read_video` returns
    (rotation applied); duration spans the frames' timestamps, right for a variable frame rate too (frames / fps when
    they have none, or ones that repeat or restart). Decodes one frame, so a file whose pictures cannot be decoded
    raises `VideoError` here too.
    """
    return _info(_check_file(path))[0]


def _info(path: Path, deadline: _Deadline | None = None) -> tuple[dict, "_Packets"]:
    with _video(path) as (container, stream):
        first = next(_decode(container, stream, path, deadline))
        width = _shown_width(stream.codec_context.width, _pixel_aspect(stream))
        height = stream.codec_context.height
        if _swaps_sides(first):
            width, height = height, width
        # ffmpeg's own choice of output rate; the average rate is off for gifs (delays are whole centiseconds).
        fps = float(stream.guessed_rate or stream.average_rate or 0)
    packets = _scan(path, deadline)
    frames, seconds = packets.frames, packets.seconds
    duration = seconds if seconds is not None else frames / fps if fps else 0.0
    return {"frames": frames, "fps": fps, "width": width, "height": height, "duration": duration}, packets


def write_video(path, frames: np.ndarray, fps: float = 8.0) -> None:
    """Write uint8 (T, H, W, 3) RGB frames to .mp4 (H.264, yuv420p), .gif (looping) or .webm (VP9).

    H.264 in yuv420p needs even sides: an odd height or width is padded by one row or column repeating the edge
    (so reading the file back gives that padded size) rather than letting ffmpeg rescale the whole picture.
    The file appears complete or not at all (`checkpoint.atomic_write`): it is written under a temporary name in the
    same folder, checked to hold every frame, then renamed; OSError otherwise (a full disk, ffmpeg stopped).
    """
    path = Path(path)
    frames = _check_frames(frames)
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    fps = float(fps)  # imageio asserts a float or a Fraction: NumPy's float32 or int64 failed its bare assert
    suffix = path.suffix.lower()
    if suffix not in _WRITERS:
        raise ValueError(f"{path.name}: can only write {', '.join(_WRITERS)} files, not '{suffix or 'no extension'}'")
    if suffix == ".gif" and fps > 50:  # delays of 1/100 s, which browsers play as 1/10 s, or uneven ones
        raise ValueError(f"{path.name}: a GIF's frame delays are whole hundredths of a second and browsers slow those "
                         f"under 2/100 s: at most 50 fps, got {fps:g} (write .mp4 or .webm)")
    height, width = frames.shape[1:3]
    written = (height + height % 2) * (width + width % 2) if suffix == ".mp4" else height * width  # _write_mp4 pads
    if written > MAX_PIXELS:  # a file read_video would refuse, and so would the check of what was written
        raise ValueError(f"frames of {width}x{height} pixels{' (padded to even sides)' if suffix == '.mp4' else ''} "
                         f"are over the limit of {MAX_PIXELS / 1e6:.0f} million a frame; scale them down first")
    encoder, most = _MAX_SIDE[suffix]
    if max(height, width) > most:  # else ffmpeg refuses, and its empty file reads as a full disk
        raise ValueError(f"frames of {width}x{height} pixels: {encoder} takes sides of at most {most} pixels; scale "
                         "them down first")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: folder does not exist")
    if is_stream(path):  # ffmpeg would write it, and the check of what was written find no file
        raise ValueError(f"{path}: not a regular file (a video is written as a file, then checked)")

    def write(partial: str) -> None:
        try:
            _WRITERS[suffix](Path(partial), frames, fps)
        except _EncoderStopped as err:
            raise OSError(f"{path.name}: {err}; nothing was written") from None
        _check_written(Path(partial), path, len(frames))

    # The real suffix last, so ffmpeg picks the right muxer; absolute, so ffmpeg never takes a name like "take:2.mp4"
    # for a protocol (".take:").
    atomic_write(path.absolute(), write, suffix=f".partial{path.suffix}")


def _check_written(partial: Path, path: Path, num_frames: int) -> None:
    # imageio-ffmpeg does not read ffmpeg's exit status, and short clips and gifs are encoded only once the input
    # ends, so a disk filling up or ffmpeg failing then leaves a cut file without an error: count its frames.
    try:
        written = _scan_packets(partial).frames if partial.is_file() and partial.stat().st_size else 0  # not kept
    except VideoError:
        written = 0
    if written != num_frames:
        raise OSError(f"{path.name}: ffmpeg wrote {written} of {num_frames} frames (is the disk full?); nothing was "
                      "written")


def _check_file(path) -> Path:
    if not str(path).strip():  # `info "$CLIP"` with CLIP unset: Path("") is the working folder, whose name is ""
        raise VideoError("no file given (an empty name)")
    path = Path(path)
    try:
        if not path.exists():
            raise VideoError(f"{path.name}: file not found")
        if path.is_dir():
            raise VideoError(f"{path.name}: is a folder, not a video file")
        if not path.is_file():  # /dev/zero, a pipe (<(...)): no size to check, no seeking back to read it again
            raise VideoError(f"{path.name}: not a regular file (a device or a pipe); save the video to a file first")
        if path.stat().st_size == 0:
            raise VideoError(f"{path.name}: the file is empty")
    except OSError as err:  # a folder we may not enter, a name too long for the file system
        raise VideoError(f"{path.name}: cannot be read ({err.strerror or err})") from None
    return path


@contextmanager
def _video(path: Path, size: int | None = None):
    """The open container and its video stream (refused if its frames, short side scaled to `size`, would be over
    MAX_PIXELS); every libav failure to open becomes a VideoError."""
    try:
        # An absolute path, so a name like "concat:a|b" is never taken for an ffmpeg protocol.
        # max_pixels: ffmpeg's probe decodes a first picture whose container does not give its format (PNG or MJPEG
        # in a MOV, a still image): a 9 MB file of one 16000 x 16000 PNG took 2 GB and 4 s before any check here
        container = av.open(str(path.absolute()), metadata_errors="ignore", options={"max_pixels": str(MAX_PIXELS)},
                            container_options={"format_whitelist": _DEMUXERS, **_ONE_FILE})
    except av.FFmpegError as err:
        raise VideoError(f"{path.name}: not a readable video ({_open_failure(err, path)})") from None
    with container:
        yield container, _video_stream(container, path, size)


def _open_failure(err: av.FFmpegError, path: Path) -> str:
    if isinstance(err, av.InvalidDataError) and _starts_like_mp4(path):
        return ("an MP4 or MOV file whose index (its moov atom) is missing or damaged: often a recording, copy or "
                "download cut short; copy or export it again")
    if isinstance(err, av.InvalidDataError):
        return "its contents are not a video format ffmpeg knows"
    if isinstance(err, av.EOFError):
        return "the file ends too early, it may be cut short"
    if isinstance(err, av.ArgumentError):  # what ffmpeg answers for a format that is not on the list above
        return "its contents are a kind of file this program does not read as a video"
    return err.strerror or type(err).__name__


def _starts_like_mp4(path: Path) -> bool:
    """Whether the file opens with an MP4/MOV header (a box typed 'ftyp', QuickTime's 'wide', 'free' or 'mdat'). Phones
    and ffmpeg write the index last, so a file cut short has none, and ffmpeg then says only 'invalid data'."""
    try:
        with path.open("rb") as file:
            return file.read(8)[4:] in (b"ftyp", b"wide", b"free", b"mdat")
    except OSError:
        return False


def _video_stream(container, path: Path, size: int | None = None):
    # ffmpeg opens a still image as a one-frame video through these demuxers (png_pipe, jpeg_pipe, ..., image2), and
    # a raw Motion-JPEG recording (an IP camera's .mjpeg: pictures one after the other) through jpeg_pipe too
    image = container.format.name == "image2" or container.format.name.endswith("_pipe")
    if image and _pictures(path, container.format.name) < 2:
        raise VideoError(f"{path.name}: is an image, not a video")
    # Cover art in an audio file is a video stream too, marked as an attached picture.
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        only_audio = ", only audio" if container.streams.audio else ""
        raise VideoError(f"{path.name}: not a readable video (no video stream{only_audio})")
    # The largest picture, the first of equals, so that a small preview track listed first (some cameras and editors
    # add one) is not taken for the video (ffmpeg, converting, also weighs a track marked default; this does not)
    stream = max(streams, key=lambda s: s.codec_context.width * s.codec_context.height if s.codec_context else 0)
    if stream.codec_context is None:  # PyAV gives a stream no codec context when ffmpeg has no decoder for it
        raise VideoError(f"{path.name}: not a readable video (ffmpeg has no decoder for its video codec)")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width < 1 or height < 1:
        raise VideoError(f"{path.name}: not a readable video (the video stream gives no picture size, or its first "
                         f"picture is over the limit of {MAX_PIXELS / 1e6:.0f} million pixels)")
    width = _shown_width(width, _pixel_aspect(stream))
    if width * height > MAX_PIXELS:
        raise VideoError(f"{path.name}: the picture is {width}x{height} pixels, over the limit of "
                         f"{MAX_PIXELS / 1e6:.0f} million a frame; scale it down first")
    if size and size * size * max(width, height) / min(width, height) > MAX_PIXELS:  # a very wide strip, resized
        raise VideoError(f"{path.name}: the picture is {width}x{height} pixels; with its short side scaled to {size} "
                         f"it would be over the limit of {MAX_PIXELS / 1e6:.0f} million a frame")
    return stream


def _pixel_aspect(stream) -> Fraction | None:
    """The shape of the stream's pixels (width over height) when they are not square, else None. DV and DVD video
    (720 x 576, shown at 4:3 or 16:9) and HDV and AVCHD (1440 x 1080, shown at 1920 x 1080) store pixels narrower or
    wider than high, and players stretch the picture to show it: read as stored, it reached the model squashed and
    its centre crop missed part of the scene. The container's ratio first, then the codec's, as ffmpeg takes them."""
    for ratio in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if ratio and ratio > 0:  # 0:1 is "unknown"
            return None if ratio == 1 else Fraction(ratio)
    return None


def _shown_width(width: int, aspect: Fraction | None) -> int:
    """How many square pixels wide a picture `width` pixels of shape `aspect` is shown (ffmpeg's scale=iw*sar:ih)."""
    return width if aspect is None else max(1, round(width * aspect))


def _pictures(path: Path, demuxer: str) -> int:
    """How many pictures, up to 2, a file an image demuxer opened holds: read apart, so that the container the caller
    holds is not moved past its start."""
    with av.open(str(path.absolute()), format=demuxer, options={"max_pixels": str(MAX_PIXELS)},
                 container_options=_ONE_FILE) as again:
        return sum(1 for _ in zip(range(2), (packet for packet in again.demux(video=0) if packet.size)))


class _Packets(NamedTuple):
    frames: int
    seconds: float | None  # first frame's start to the last one's end; None without timestamps that say it
    # (frames,) each frame's start in seconds, in display order; None when the packets' timestamps cannot say it
    times: np.ndarray | None
    pts: np.ndarray | None = None  # (frames,) the same in the stream's time base: how a decoded frame is recognised
    keyframes: np.ndarray | None = None  # sorted pts of the packets the container marks as keyframes (seek targets)
    # (keyframes,) the decoding time of each, earlier than its pts with B-frames: where to seek instead when a seek to
    # the pts lands past the keyframe (MPEG-TS has no index, and its demuxer seeks by decoding time)
    keyframe_dts: np.ndarray | None = None


# The last scans, kept: training draws clip after clip from the same files, and an hour-long file takes about half a
# second to scan (9000 packets: 0.04 s) before each draw's few frames are decoded. Bounded by their packets, about 16
# bytes each, and a file's own cost (its record, arrays and key, about 1 KB: counted as 64 packets): 4 million, some
# 64 MB a process, hold about 2100 one-minute clips at 30 fps (1864 packets each: 35 hours), or 32000 of two seconds.
_SCANS: OrderedDict[tuple, _Packets] = OrderedDict()
_SCANS_MAX_PACKETS = 4_000_000
_SCAN_OVERHEAD = 64  # packets' worth
_SCANS_LOCK = threading.Lock()
_scans_kept = 0  # the packets _SCANS holds, overhead included


def _scan(path: Path, deadline: _Deadline | None = None) -> _Packets:
    """`_scan_packets(path)`, from the last scans when the file is unchanged: the same inode, size, and times of the
    last change to its contents and to the file (ctime: any write, or a copy that sets the old modification time)."""
    global _scans_kept
    try:
        stat = path.stat()
    except OSError:  # gone or unreadable: the scan says so in its words
        return _scan_packets(path, deadline)
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _SCANS_LOCK:
        if key in _SCANS:
            _SCANS.move_to_end(key)
            return _SCANS[key]
    packets = _scan_packets(path, deadline)
    with _SCANS_LOCK:
        if key not in _SCANS:  # another thread may have scanned it meanwhile
            _SCANS[key] = packets
            _scans_kept += packets.frames + _SCAN_OVERHEAD
        while _scans_kept > _SCANS_MAX_PACKETS:  # the oldest go first
            _, oldest = _SCANS.popitem(last=False)
            _scans_kept -= oldest.frames + _SCAN_OVERHEAD
    return packets


def _scan_packets(path: Path, deadline: _Deadline | None = None) -> _Packets:
    """Frames, duration and frame times from the stream's packets: reads the file but decodes nothing (milliseconds
    for a 10 s clip). Times come from the packets' timestamps, so a variable frame rate is timed right.

    `stream.frames` is not used: it is read from headers, which are 0 in webm/mkv, promise frames that a truncated
    file lacks, and include the frames an edit list hides (clips trimmed without re-encoding).
    """
    count, start, end, stamps, keys, key_dts = 0, math.inf, -math.inf, [], [], []
    with _video(path) as (container, stream):
        try:
            for packet in container.demux(stream):
                # Empty packets only flush the decoder; "discard" packets are decoded but hidden by an edit list.
                if packet.size == 0 or packet.is_discard:
                    continue
                count += 1
                stamps.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
                    key_dts.append(packet.pts if packet.dts is None else packet.dts)
                if packet.pts is not None:
                    start, end = min(start, packet.pts), max(end, packet.pts + (packet.duration or 0))
                if deadline and count % 256 == 0:
                    deadline.check(path)
        except av.FFmpegError as err:
            reason = f"reading failed after {count} frames: {err.strerror}"
            raise VideoError(f"{path.name}: damaged video ({reason})") from None
        seconds = float((end - start) * stream.time_base) if end > start and stream.time_base else None
        time_base = float(stream.time_base or 0)
    if count == 0:
        raise VideoError(f"{path.name}: not a readable video (the video stream has no frames)")
    times = display_times(stamps, time_base)
    if times is None:  # timestamps that repeat or restart (recordings joined byte by byte): their span is no duration
        return _Packets(count, None, times)
    if not keys:
        return _Packets(count, seconds, times)
    order = np.argsort(keys, kind="stable")  # keys are pts, so not None (display_times checked every stamp)
    return _Packets(count, seconds, times, np.sort(np.array(stamps, dtype=np.int64)),
                    np.array(keys, np.int64)[order], np.array(key_dts, np.int64)[order])


def display_times(stamps: list, time_base: float) -> np.ndarray | None:
    """Each frame's start in seconds, in display order, from its packet's timestamp in decoding order (sorted); None
    when they cannot say it: a timestamp missing or repeated, or a packet farther from its sorted place than decoders
    reorder frames (B-frames), which means timestamps that restart or overlap (recordings joined byte by byte)."""
    if not stamps or not time_base or None in stamps or len(set(stamps)) < len(stamps):
        return None
    if np.abs(np.argsort(stamps, kind="stable") - np.arange(len(stamps))).max() > MAX_REORDER:
        return None
    return np.sort(np.array(stamps, dtype=np.float64)) * time_base


def _decode(container, stream, path: Path, deadline: _Deadline | None = None) -> Iterator[av.VideoFrame]:
    """Decoded frames in order, all at the stream's first picture size. A packet the decoder refuses (a damaged
    frame, the last one of a recording cut short) is skipped, as players and ffmpeg skip it: refused, one bad frame
    made the whole clip unreadable, or not, as the frames sampled fell before or after it (some decoders, VP9's,
    drop such frames themselves). A file that cannot be read on (its container damaged), or whose frames all fail, is
    a VideoError."""
    # A stream may change resolution midway (joined recordings); np.stack needs one shape, so keep the first.
    width, height = stream.codec_context.width, stream.codec_context.height
    stream.thread_type = "AUTO"
    decoded, damage = 0, None
    try:
        # container.decode(stream) packet by packet, to check the deadline at each packet: a packet may decode to no
        # picture (a hidden VP9 frame, a P-frame before any keyframe), and a stream of millions of them would
        # otherwise run on unchecked
        for packet in container.demux(stream):
            if deadline:
                deadline.check(path, decoded)
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                damage = damage or err
                continue
            for frame in frames:
                decoded += 1
                if frame.width * frame.height > MAX_PIXELS:  # _video_stream checked only the first picture size
                    raise VideoError(f"{path.name}: frame {decoded} is {frame.width}x{frame.height} pixels, over the "
                                     f"limit of {MAX_PIXELS / 1e6:.0f} million a frame; scale it down first")
                yield frame if (frame.width, frame.height) == (width, height) else frame.reformat(width, height)
    except av.FFmpegError as err:
        reason = f"reading failed after {decoded} frames: {err.strerror}"
        raise VideoError(f"{path.name}: damaged video ({reason})") from None
    if decoded == 0 and damage:
        raise VideoError(f"{path.name}: damaged video (no frame could be decoded: {damage.strerror})")
    if decoded == 0:
        raise VideoError(f"{path.name}: not a readable video (no frame could be decoded)")


def strided_frame_indices(num_available: int, max_frames: int) -> np.ndarray:
    """Every k-th of `num_available` frames from the first, k the smallest step that keeps at most `max_frames`:
    how a long clip is thinned for surprise. Spreading exactly `max_frames` over it would mix steps of k and k + 1
    frames (100 frames to 64: steps of 1 and 2), and an object seeming to speed up and slow down is what surprise
    measures."""
    if num_available < 1 or max_frames < 1:
        raise ValueError("the clip has no frames" if num_available < 1 else "max_frames must be at least 1")
    step = -(-num_available // max_frames)  # ceil
    return np.arange(0, num_available, step, dtype=np.int64)


def _widened(first: int, last: int, count: int, total: int) -> tuple[int, int]:
    """Frames `first`..`last`, widened around their middle to at least `count` of the clip's `total`: a short span
    of a longer clip would repeat frames unevenly (10 frames to 16: steps of 1 and 0), motion that stops and starts,
    which the whole clip read at inference never shows."""
    missing = count - (last - first + 1)
    if missing <= 0:
        return first, last
    last = min(total - 1, max(0, first - missing // 2) + count - 1)
    return last - count + 1, last


def _sample(path: Path, packets: _Packets, num_frames: int, size: int | None, deadline: _Deadline | None = None,
            at_most: bool = False, span: tuple[float, float] = (0.0, 1.0)) -> Clip:
    """`num_frames` frames (`sample_frame_indices`) of the clip `packets` describe, over the part `span` of it;
    `at_most` (for the whole clip): up to `num_frames`, one in k (`strided_frame_indices`); a clip found shorter than
    its packets said is sampled again over its real frames rather than padded.
    With a variable frame rate, one in k frames is not one step of time (a phone slowing to 15 fps in the dark, a
    screen recording that writes frames only when something changes), and steady motion would seem to speed up and
    slow down, as surprise measures: each pick is the frame nearest to where it would fall at a steady rate, as a
    player showing the clip at that rate would: where frames are sparser than the steps, one is shown for two steps
    (a repeat), and where they are denser some are skipped. Each pick is then at most half a frame off its time,
    where picking by index drifts without bound (0.225 s on the test corpus's variable-rate clip)."""
    total = packets.frames
    _check_frame_count(path, min(num_frames, total) if at_most else num_frames, size)
    if at_most:
        indices = strided_frame_indices(total, num_frames)
    else:
        first, last = _widened(*(round(fraction * (total - 1)) for fraction in span), min(num_frames, total), total)
        indices = first + sample_frame_indices(last - first + 1, num_frames)
    if packets.times is not None and total > 1:
        indices = nearest_in_time(indices, packets.times)
    indices = indices.tolist()
    far_apart = np.diff([0, *indices]).max() >= SEEK_FROM
    kept = _picks_after_seek(path, packets, indices, size, deadline) if far_apart else None
    if kept is None:
        kept, last = _picks_from_start(path, indices, size, deadline)
        if len(kept) < len(set(indices)):
            # The stream ended cleanly at frame `last`, before the packet count said: a frame was dropped silently.
            # Sample again over the frames that really exist rather than return a clip cut short or padded.
            # Which timestamps the decoded frames had is unknown then: pick by index.
            return _sample(path, _Packets(last + 1, None, None), num_frames, size, deadline, at_most, span)
    for i in indices:
        _check_same_shape(path, kept[indices[0]], kept[i], i)
    return Clip(_stacked(kept, indices), np.array(indices))


def _stacked(kept: dict, indices: list[int]) -> np.ndarray:
    """np.stack([kept[i] for i in indices]), each frame let go once copied for the last time: the clip's memory is
    then held about once, where stacking held the frames and their copy at once (twice the limit, MAX_READ_ALL_BYTES,
    for a read just under it). `kept` is emptied."""
    last_use = {index: position for position, index in enumerate(indices)}
    out = np.empty((len(indices), *kept[indices[0]].shape), dtype=np.uint8)  # pages taken as they are written
    for position, index in enumerate(indices):
        out[position] = kept[index]
        if last_use[index] == position:
            del kept[index]
    return out


def _check_same_shape(path: Path, first: np.ndarray, rgb: np.ndarray, number: int) -> None:
    """Frames turned differently from the first (a stream whose display orientation changes midway, as joined
    recordings can) cannot form one clip: a VideoError, not NumPy's shape error (which stopped a training run)."""
    if rgb.shape != first.shape:
        raise VideoError(f"{path.name}: frame {number} is turned otherwise than the first ({rgb.shape[1]}x"
                         f"{rgb.shape[0]}, not {first.shape[1]}x{first.shape[0]}): its display orientation changes "
                         "midway; re-encode it")


def _picks_from_start(path: Path, indices: list[int], size: int | None, deadline) -> tuple[dict, int]:
    """Frame index -> RGB picture for the wanted `indices` (sorted), decoding from the first frame; and the index of
    the last frame decoded."""
    wanted, kept, index, matrices = set(indices), {}, -1, {}
    with _video(path, size) as (container, stream):
        aspect = _pixel_aspect(stream)
        for index, frame in enumerate(_decode(container, stream, path, deadline)):
            if index in wanted:
                _keep(kept, index, _to_rgb(frame, size, path, matrices, aspect), path, len(indices))
            if index == indices[-1]:
                break
    return kept, index


def _keep(kept: dict, index: int, rgb: np.ndarray, path: Path, num_frames: int) -> None:
    """kept[index] = rgb; the first frame kept tells the clip's size: `num_frames` of it over MAX_READ_ALL_BYTES is a
    VideoError, as reading every frame is (100 frames of a 4K file without size= take 2.3 GiB), before the rest."""
    if not kept:
        _within_budget(path, num_frames, rgb.shape)
    kept[index] = rgb


def _picks_after_seek(path: Path, packets: _Packets, indices: list[int], size: int | None,
                      deadline) -> dict | None:
    """As `_picks_from_start`, but reaching a wanted frame by seeking to the keyframe before it when that keyframe
    lies SEEK_FROM frames or more past the last frame decoded: picks a minute apart in an hour-long file are not
    decoded through, and a file with few keyframes is not decoded again from one. Each decoded frame is known by its
    timestamp (`packets.pts`, display order). None when that cannot be done or checked (no timestamps, a format that
    cannot seek, a frame whose timestamp the scan did not see or that comes out of order, no frame the decoder marks
    a keyframe between a seek and the pick), for `_picks_from_start` to do it. After a seek, frames count from the
    first sound one the decoder marks a keyframe: a container that marks every frame as one (no sync-sample table)
    must not give frames decoded without their references. A seek whose first such frame is past the keyframe sought
    is made again to the keyframe's decoding time."""
    pts, keyframes = packets.pts, packets.keyframes
    if pts is None or keyframes is None:
        return None
    index_of = {int(stamp): i for i, stamp in enumerate(pts)}
    picks, kept, done, synced, matrices = sorted(set(indices)), {}, -1, True, {}
    by_dts = False  # set once a seek to a keyframe's pts lands past it: this demuxer seeks by decoding time
    try:
        with _video(path, size) as (container, stream):
            frames = _decode(container, stream, path, deadline)  # one decoder: a seek flushes it and demuxes on there
            aspect = _pixel_aspect(stream)
            for pick in picks:
                before = np.searchsorted(keyframes, pts[pick], side="right") - 1  # the keyframe before the pick
                # (every keyframe's pts is a frame's: the scan records both)
                landing = None  # the keyframe sought by its pts, until the first keyframe decoded after the seek
                if before >= 0 and index_of[int(keyframes[before])] - done >= SEEK_FROM:
                    landing, synced = _seek(container, stream, packets, before, by_dts), False
                for frame in frames:
                    index = index_of.get(frame.pts)
                    if index is None or (synced and index <= done):
                        return None  # not a frame the scan saw, or out of order: decoding from the start is sure
                    if landing is not None and frame.key_frame:
                        sought, landing = landing, None
                        if index > index_of[int(keyframes[sought])]:  # landed past it
                            by_dts = True
                            _seek(container, stream, packets, sought, by_dts)
                            continue
                    synced = synced or (frame.key_frame and not frame.is_corrupt)
                    if not synced:
                        if index >= pick:  # no keyframe the decoder recognises before the pick
                            return None
                        continue
                    done = index
                    if index in picks and index not in kept:
                        _keep(kept, index, _to_rgb(frame, size, path, matrices, aspect), path, len(indices))
                    if index >= pick:
                        break
    except av.FFmpegError:
        return None
    except VideoError as err:
        if isinstance(err, _OverBudget) or (deadline and deadline.passed()):
            raise  # decoding from the start would refuse the same frames (or be later still), after decoding more
        return None  # nothing decoded after a seek, or damage there: decoding from the start will say
    return kept if len(kept) == len(picks) else None


def _seek(container, stream, packets: _Packets, key: int, by_dts: bool) -> int | None:
    """Seek to keyframe `key` (of `packets.keyframes`) by its pts, or by its decoding time when `by_dts` or when it is
    the last keyframe (a demuxer that seeks by decoding time would land past every frame, with no keyframe after it
    to tell; a demuxer that seeks by pts lands a keyframe early, a group of frames more to decode). Returns `key` when
    the seek went by a pts later than the decoding time: should it land past the keyframe, it is made again."""
    at, decoding = int(packets.keyframes[key]), int(packets.keyframe_dts[key])
    by_dts = by_dts or key == len(packets.keyframes) - 1
    container.seek(decoding if by_dts else at, stream=stream, backward=True)
    return key if not by_dts and decoding < at else None


def nearest_in_time(indices: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For frame indices chosen as if the frames were evenly spaced in time, the frames whose real start `times`
    (sorted, seconds) are nearest to the times those indices stand for. At a constant frame rate: `indices` again."""
    steady = times[0] + indices * (times[-1] - times[0]) / (len(times) - 1)
    after = np.clip(np.searchsorted(times, steady), 1, len(times) - 1)
    before_is_nearer = steady - times[after - 1] <= times[after] - steady
    return np.where(before_is_nearer, after - 1, after).astype(np.int64)


def _to_rgb(frame: av.VideoFrame, size: int | None, path: Path, matrices: dict | None = None,
            aspect: Fraction | None = None) -> np.ndarray:
    """The frame as ffmpeg shows it: RGB, square pixels (`aspect`: `_pixel_aspect`), upright; short side `size`."""
    try:
        rgb = frame.to_ndarray(format="rgb24")
    except av.FFmpegError as err:
        reason = f"a frame could not be converted to RGB ({err.strerror})"
        if err.errno == errno.ENOTSUP:  # swscale converts the common colour matrices only
            reason = (f"its colours are stored in a form this reader cannot convert to RGB (colour matrix "
                      f"{frame.colorspace}, e.g. YCgCo or ICtCp); re-encode it with BT.709 colours")
        raise VideoError(f"{path.name}: {reason}") from None
    if aspect is not None:  # stretched as stored, before it is turned
        rgb = np.asarray(Image.fromarray(rgb).resize((_shown_width(rgb.shape[1], aspect), rgb.shape[0]),
                                                     Image.Resampling.BILINEAR))
    rgb = np.ascontiguousarray(_upright(rgb, frame, matrices))
    return _resize_short_side(rgb, size) if size else rgb


def _upright(rgb: np.ndarray, frame: av.VideoFrame, matrices: dict | None = None) -> np.ndarray:
    """The picture as ffmpeg shows it, from the frame's display matrix: turned (phones store portrait video sideways)
    and, where the matrix mirrors it, flipped, as ffmpeg's autorotation does (fftools: transpose, hflip, vflip).
    PyAV's `rotation` alone ignores a mirror: a left-right flip reads as a half turn.
    `matrices` (rotation -> matrix) keeps what earlier frames of one read gave, so that a frame's side data is read
    only when its rotation is new: reading it ties the frame in a reference cycle (PyAV 18) that only the garbage
    collector frees, and a whole read held its decoded frames until then (a 1.2 GiB read of 1080p peaked at 2.6 GiB).
    The cost: a mirror that comes or goes midway without a change of angle (per-frame orientation messages, which
    MP4's one matrix per track cannot carry) is not seen, and those frames keep the first matrix's flip."""
    degrees = frame.rotation
    # A degenerate display matrix (all zeros) has no angle: PyAV then gives INT_MIN, and ffmpeg leaves it unturned.
    if not -360 <= degrees <= 360:
        return rgb
    matrices = {} if matrices is None else matrices
    if degrees not in matrices:
        matrices[degrees] = _display_matrix(frame)
    matrix = matrices[degrees]
    theta = -degrees % 360  # ffmpeg's angle, clockwise
    if matrix is None or not any(abs(theta - angle) < 1 for angle in (0, 90, 180, 270, 360)):
        return np.rot90(rgb, round(degrees / 90) % 4)  # no matrix to read, or not a quarter turn: the nearest one
    if abs(theta - 90) < 1:
        return rgb.transpose(1, 0, 2) if matrix[3] > 0 else np.rot90(rgb, -1)
    if abs(theta - 270) < 1:
        return np.rot90(rgb, -1)[::-1] if matrix[3] < 0 else np.rot90(rgb, 1)
    if abs(theta - 180) < 1 and matrix[0] < 0:
        rgb = rgb[:, ::-1]
    return rgb[::-1] if matrix[4] < 0 else rgb


def _display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    try:
        return next((np.frombuffer(bytes(data), "<i4") for data in frame.side_data
                     if data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX), None)
    except ValueError:  # side data of a type PyAV 18 has no name for (ffmpeg 8's EXIF, VIEW_ID, ...): not readable
        return None


def _swaps_sides(frame: av.VideoFrame) -> bool:
    """Whether `_upright` turns the picture a quarter (its width becomes its height)."""
    return _upright(np.zeros((1, 2, 1), np.uint8), frame).shape[0] == 2


def _resize_short_side(rgb: np.ndarray, size: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    if min(height, width) == size:
        return rgb
    if height <= width:  # the long side floored, as preprocess.resize_and_crop sizes it
        new = (max(1, int(width * size / height)), size)
    else:
        new = (size, max(1, int(height * size / width)))
    # Pillow widens the bilinear filter when shrinking, so downscaling is antialiased.
    return np.asarray(Image.fromarray(rgb).resize(new, Image.Resampling.BILINEAR))


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) < 1:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T, H, W >= 1, got {frames.shape}")
    return frames


# The matrix and range of ffmpeg's RGB-to-YUV conversion (BT.601, limited), said in the file: untagged, a browser takes
# HD video for BT.709 and shows it with shifted colours (our reading assumes BT.601 either way).
_BT601_TAGS = ["-colorspace", "bt470bg", "-color_range", "tv"]


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    # crf 12: close to the input, as written clips are often read back as model input; faststart: the index goes
    # first, so browsers start playing before the whole file has arrived.
    _encode(path, frames, fps, "libx264", "yuv420p", ["-crf", "12", "-movflags", "+faststart", *_BT601_TAGS])


def _write_webm(path: Path, frames: np.ndarray, fps: float) -> None:
    # Constant quality (crf with zero bitrate); realtime speed settings, as VP9's default is very slow.
    _encode(path, frames, fps, "libvpx-vp9", "yuv420p",
            ["-crf", "20", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8", *_BT601_TAGS])


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    # One palette fitted to the whole clip. Not Pillow: it merges identical consecutive frames into one, which
    # changes the frame count and so the timeline a reader sees.
    _encode(path, frames, fps, "gif", "pal8", ["-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse", "-loop", "0"])


class _EncoderStopped(OSError):
    """ffmpeg ended while frames were still being sent to it."""


def _encode(path: Path, frames: np.ndarray, fps: float, codec: str, pix_fmt: str, output_params: list[str]) -> None:
    height, width = frames.shape[1:3]
    # macro_block_size=1: imageio-ffmpeg would otherwise rescale sizes that are not multiples of 16.
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec=codec, pix_fmt_out=pix_fmt,
                                         quality=None, macro_block_size=1, output_params=output_params,
                                         ffmpeg_log_level="error")
    writer.send(None)  # start ffmpeg
    sent = 0
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
            sent += 1
    except OSError as err:  # a full disk midway: imageio's message runs on with the whole ffmpeg command
        raise _EncoderStopped(f"ffmpeg stopped after {sent} of {len(frames)} frames ({first_line(err)}: is the "
                              "disk full?)") from None
    writer.close()


_WRITERS = {".mp4": _write_mp4, ".gif": _write_gif, ".webm": _write_webm}
# The longest side each encoder takes (ffmpeg's limits)
_MAX_SIDE = {".mp4": ("H.264 (libx264)", 16384), ".gif": ("GIF", 65535), ".webm": ("VP9 (libvpx)", 65536)}
