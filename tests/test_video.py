"""Video I/O on real files, written by our writer or by the ffmpeg binary shipped in imageio-ffmpeg."""

import os
import re
import subprocess
import sys
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from jepa_demo.video import (
    VIDEO_SUFFIXES,
    VideoError,
    display_times,
    list_videos,
    nearest_in_time,
    read_clip,
    read_video,
    strided_frame_indices,
    video_info,
    write_video,
)

ROOT = Path(__file__).resolve().parent.parent


def moving_square(frames=16, height=64, width=64) -> np.ndarray:
    """A red square sliding right 3 px a frame over a dark blue background: every frame is different."""
    video = np.zeros((frames, height, width, 3), np.uint8)
    video[..., 2] = 60
    for t in range(frames):
        video[t, 10:26, 3 * t:3 * t + 16] = (250, 40, 40)
    return video


def source_frames(video, clip) -> list[int]:
    """For each frame of `video`, the index of the most similar frame of `clip` (undoes lossy coding)."""
    distance = np.abs(video[:, None].astype(np.int16) - clip[None].astype(np.int16)).mean(axis=(2, 3, 4))
    return distance.argmin(axis=1).tolist()


def ffmpeg(*args):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *map(str, args)], check=True)


def pattern_clip(path, seconds=1, size="80x60", rate=10, *extra):
    """ffmpeg's test pattern (a frame counter and a moving gradient: every frame differs) encoded to `path`."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate={rate}", *extra, path)
    return path


def distinct(video) -> int:
    return len({frame.tobytes() for frame in video})


def test_mp4_round_trip(tmp_path):
    clip = moving_square()
    write_video(tmp_path / "a.mp4", clip, fps=8)
    back = read_video(tmp_path / "a.mp4")
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - clip).mean() < 2  # lossy, but close
    assert source_frames(back, clip) == list(range(16))
    assert video_info(tmp_path / "a.mp4") == {"frames": 16, "fps": 8.0, "width": 64, "height": 64, "duration": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]  # no temporary file left behind


def test_sampling_spreads_over_the_whole_clip(tmp_path):
    clip = moving_square(frames=16)
    write_video(tmp_path / "a.mp4", clip)
    assert source_frames(read_video(tmp_path / "a.mp4", num_frames=4), clip) == [0, 5, 10, 15]
    assert source_frames(read_video(tmp_path / "a.mp4", num_frames=1), clip) == [7]  # the middle
    longer = read_video(tmp_path / "a.mp4", num_frames=31)  # more than the clip holds: every frame, repeated
    assert source_frames(longer, clip) == np.linspace(0, 15, 31).round().astype(int).tolist()
    with pytest.raises(ValueError, match="num_frames"):
        read_video(tmp_path / "a.mp4", num_frames=0)


@pytest.mark.parametrize("read, name", [(read_video, "num_frames"), (read_video, "size"), (read_clip, "max_frames"),
                                        (read_clip, "size")])
@pytest.mark.parametrize("value, message", [(8.0, "must be an integer, got 8.0"),
                                            (True, "must be an integer, got True"),
                                            ("8", "must be an integer, got '8'"), (0, "must be at least 1")])
def test_frame_counts_and_sizes_must_be_whole_numbers(tmp_path, read, name, value, message):
    """BUG: only the value was checked: size=224.0 failed inside Pillow, num_frames=8.0 gave float frame numbers,
    True passed as 1, and read_clip checked nothing (size=0 kept the stored size)."""
    path = tmp_path / "a.mp4"
    write_video(path, moving_square(frames=4))
    given = {"max_frames": 4, "size": 32} if read is read_clip else {}
    with pytest.raises(ValueError, match=f"^{name} {re.escape(message)}"):
        read(path, **{**given, name: value})
    read(path, **{**given, name: np.int64(4)})  # NumPy integers are integers


def test_a_span_samples_only_that_part_of_the_clip(tmp_path):
    clip = moving_square(frames=16)
    write_video(tmp_path / "a.mp4", clip)
    assert source_frames(read_video(tmp_path / "a.mp4", num_frames=4, span=(0.6, 1.0)), clip) == [9, 11, 13, 15]
    assert source_frames(read_video(tmp_path / "a.mp4", num_frames=2, span=(0.0, 0.2)), clip) == [0, 3]
    # fewer frames in the span than asked for: widened around its middle, not frames repeated (steps of 1 and 0)
    assert source_frames(read_video(tmp_path / "a.mp4", num_frames=6, span=(0.0, 0.2)), clip) == [0, 1, 2, 3, 4, 5]
    assert source_frames(read_video(tmp_path / "a.mp4", num_frames=6, span=(0.5, 0.6)), clip) == [6, 7, 8, 9, 10, 11]
    assert source_frames(read_video(tmp_path / "a.mp4", num_frames=6, span=(1.0, 1.0)), clip) == list(range(10, 16))
    assert source_frames(read_video(tmp_path / "a.mp4", num_frames=20, span=(0.4, 0.5)), clip) == \
        np.linspace(0, 15, 20).round().astype(int).tolist()  # the clip is shorter: all of it, repeated
    # BUG: three numbers were a TypeError from deep inside, one an IndexError
    for bad in ((0.5, 0.4), (-0.1, 0.5), (0.0, 1.5), (0.0, 0.5, 1.0), (0.9,)):
        with pytest.raises(ValueError, match="span must be"):
            read_video(tmp_path / "a.mp4", num_frames=4, span=bad)
    with pytest.raises(ValueError, match="span needs num_frames"):  # BUG: every frame came back, the span ignored
        read_video(tmp_path / "a.mp4", span=(0.5, 1.0))
    for bad in (float("nan"), 0, -1.0):  # BUG: NaN meant no limit at all, 0 a refusal of every file
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            read_video(tmp_path / "a.mp4", timeout=bad)


def test_write_video_takes_numpy_numbers_for_fps(tmp_path):
    """BUG: fps=np.float32(8) passed the check and failed imageio's bare 'assert isinstance(fps, float)'."""
    for fps in (np.float32(8), np.int64(8)):
        write_video(tmp_path / "a.mp4", moving_square(frames=4), fps=fps)
        assert video_info(tmp_path / "a.mp4")["fps"] == 8
    for bad in (True, "8", 0, float("nan")):
        with pytest.raises(ValueError, match="fps must be a positive number"):
            write_video(tmp_path / "b.mp4", moving_square(frames=4), fps=bad)


def test_a_gif_faster_than_its_delays_can_say_is_refused(tmp_path):
    """BUG: GIF delays are whole hundredths of a second: 60 fps was written as delays of 2, 1, 2, 2, 1 and 200 fps as
    1 each (read back as 100 fps), which browsers play as 1/10 s: slow and jerky. 50 fps is 2/100 s a frame."""
    with pytest.raises(ValueError, match="^a.gif: a GIF's frame delays are whole hundredths .* at most 50 fps, got 60"):
        write_video(tmp_path / "a.gif", moving_square(frames=4), fps=60)
    assert not (tmp_path / "a.gif").exists()
    write_video(tmp_path / "a.gif", moving_square(frames=4), fps=50)
    assert video_info(tmp_path / "a.gif")["fps"] == 50


@pytest.mark.parametrize("height, width, size, expected", [(48, 96, 24, (24, 48)), (96, 48, 24, (48, 24)),
                                                           (48, 96, 96, (96, 192)), (48, 96, 48, (48, 96))])
def test_size_scales_the_shorter_side(tmp_path, height, width, size, expected):
    clip = moving_square(frames=5, height=height, width=width)
    write_video(tmp_path / "a.mp4", clip)
    video = read_video(tmp_path / "a.mp4", num_frames=3, size=size)
    assert video.shape == (3, *expected, 3) and video.dtype == np.uint8
    assert read_video(tmp_path / "a.mp4", size=size).shape == (5, *expected, 3)


def test_reading_every_frame_is_refused_over_the_memory_budget_and_otherwise_gives_every_decoded_frame(
        tmp_path, monkeypatch):
    """BUG: every frame went into a list, then np.stack copied it: twice the clip's size, unbounded (a minute of
    1080p at 30 fps is 11 GB, twice), a MemoryError or the process killed instead of a VideoError."""
    import jepa_demo.video as video

    clip = moving_square(frames=16)
    write_video(tmp_path / "a.mp4", clip)
    with av.open(str(tmp_path / "a.mp4")) as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    assert np.array_equal(read_video(tmp_path / "a.mp4"), decoded)
    monkeypatch.setattr(video, "MAX_READ_ALL_BYTES", 15 * 64 * 64 * 3)  # one frame short of the clip
    refused = r"^a.mp4: holding 16 frames of 64x64 pixels would take .+ GiB, over the limit of .+ GiB; pass num_frames="
    with pytest.raises(VideoError, match=refused):
        read_video(tmp_path / "a.mp4")
    assert read_video(tmp_path / "a.mp4", size=32).shape == (16, 32, 32, 3)
    assert len(read_video(tmp_path / "a.mp4", num_frames=4)) == 4
    # BUG: a sampled read had no limit: 100 frames of a 4K file, without size=, took 2.3 GiB (or the process)
    with pytest.raises(VideoError, match=r"^a.mp4: holding 16 frames of 64x64 pixels would take .+ GiB"):
        read_video(tmp_path / "a.mp4", num_frames=16)
    with pytest.raises(VideoError, match=r"^a.mp4: holding 32 frames of 64x64 pixels"):  # repeated: 32 in the clip
        read_video(tmp_path / "a.mp4", num_frames=32, span=(0.0, 0.5))
    assert read_video(tmp_path / "a.mp4", num_frames=32, size=32).shape == (32, 32, 32, 3)
    # BUG: a count no frame size fits was refused only at the first decoded frame, after its frame numbers were drawn:
    # 10**9 of them took tens of GiB as a list, and the process was killed for its memory
    with monkeypatch.context() as drawing:
        drawing.setattr(video, "sample_frame_indices", lambda *args: pytest.fail("frame numbers drawn"))
        with pytest.raises(VideoError, match=r"^a.mp4: holding 1000000 frames would take at least 2.86 GiB, over the"):
            read_video(tmp_path / "a.mp4", num_frames=10**6, size=32)  # 32x32 pixels or more each
    real_scan = video._scan
    for claimed in (1, 40):  # packets that promise fewer or more frames than the decoder gives
        monkeypatch.setattr(video, "_scan", lambda *args, claimed=claimed: real_scan(*args)._replace(frames=claimed))
        monkeypatch.setattr(video, "MAX_READ_ALL_BYTES", 2**30)
        back = read_video(tmp_path / "a.mp4")
        assert np.array_equal(back, decoded) and back.base is None, claimed  # not a view of a larger buffer
        monkeypatch.setattr(video, "MAX_READ_ALL_BYTES", 15 * 64 * 64 * 3)
        with pytest.raises(VideoError, match=refused if claimed == 1 else "holding 40 frames"):
            read_video(tmp_path / "a.mp4")


def test_a_files_packets_are_scanned_once_until_the_file_changes(tmp_path, monkeypatch):
    """Training draws clip after clip from the same files; an hour-long one took half a second to scan at each draw."""
    from jepa_demo import video

    monkeypatch.setattr(video, "_SCANS", type(video._SCANS)())  # none kept from other tests
    monkeypatch.setattr(video, "_scans_kept", 0)
    scanned = []
    real_scan = video._scan_packets
    monkeypatch.setattr(video, "_scan_packets", lambda path, _=None: scanned.append(path.name) or real_scan(path))
    path = tmp_path / "a.mp4"
    write_video(path, moving_square(frames=12))
    first = read_video(path, num_frames=4, span=(0.0, 0.5))
    assert np.array_equal(read_video(path, num_frames=4, span=(0.0, 0.5)), first)
    assert video_info(path)["frames"] == 12 and scanned.count("a.mp4") == 1
    write_video(path, moving_square(frames=8))  # another file under the same name
    assert video_info(path)["frames"] == 8 and scanned.count("a.mp4") == 2
    before, contents = path.stat(), path.read_bytes()
    while path.stat().st_ctime_ns == before.st_ctime_ns:  # a kernel's coarse clock: until it has ticked
        path.write_bytes(contents)  # rewritten in place with its size and modification time kept, as cp -p does
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    video_info(path)
    assert scanned.count("a.mp4") == 3
    room = 2 * (8 + video._SCAN_OVERHEAD)
    monkeypatch.setattr(video, "_SCANS_MAX_PACKETS", room)  # for two of these 8-frame files
    for name in ("b.mp4", "c.mp4"):
        write_video(tmp_path / name, moving_square(frames=8))
        video_info(tmp_path / name)
    video_info(path)  # the oldest scan went when c.mp4's came
    assert scanned.count("a.mp4") == 4 and len(video._SCANS) == 2
    assert video._scans_kept == sum(scan.frames + video._SCAN_OVERHEAD for scan in video._SCANS.values()) <= room


def test_gif_round_trip_keeps_every_frame(tmp_path):
    clip = np.concatenate([moving_square(frames=6), moving_square(frames=6)[-1:].repeat(4, axis=0)])  # still ending
    write_video(tmp_path / "a.gif", clip, fps=8)
    back = read_video(tmp_path / "a.gif")
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip).max() <= 2  # three flat colours fit any palette
    # GIF delays are whole centiseconds: 1/8 s becomes 12 or 13, and the file really plays for 1.26 s.
    assert video_info(tmp_path / "a.gif") == {"frames": 10, "fps": 8.0, "width": 64, "height": 64, "duration": 1.26}


def test_a_name_of_255_bytes_is_written(tmp_path):
    """BUG: the temporary name added 18 bytes: a name the file system takes failed with 'File name too long'."""
    path = tmp_path / ("a" * 251 + ".gif")
    write_video(path, moving_square(frames=4))
    assert len(read_video(path)) == 4 and os.listdir(tmp_path) == [path.name]


def test_webm_round_trip(tmp_path):
    clip = moving_square()
    write_video(tmp_path / "a.webm", clip)
    assert source_frames(read_video(tmp_path / "a.webm"), clip) == list(range(16))


@pytest.mark.parametrize("name", ["a.mp4", "a.webm"])
def test_written_video_says_its_colour_matrix_and_range(tmp_path, name):
    """BUG: untagged, a browser shows HD video as BT.709, while ffmpeg converted the RGB frames with BT.601 (limited
    range): colours shifted (pure red gained 23 of green)."""
    write_video(tmp_path / name, moving_square())
    with av.open(str(tmp_path / name)) as container:
        codec = container.streams.video[0].codec_context
        assert (codec.colorspace, codec.color_range) == (5, 1)  # AVCOL_SPC_BT470BG, AVCOL_RANGE_MPEG


def test_odd_sizes_are_padded_for_mp4_and_kept_for_gif(tmp_path):
    clip = moving_square(frames=6, height=45, width=63)
    write_video(tmp_path / "a.mp4", clip)
    write_video(tmp_path / "a.gif", clip)
    mp4 = read_video(tmp_path / "a.mp4")
    assert mp4.shape == (6, 46, 64, 3)  # one edge row and column added for yuv420p
    assert np.abs(mp4[:, :45, :63].astype(int) - clip).mean() < 2
    assert read_video(tmp_path / "a.gif").shape == (6, 45, 63, 3)


@pytest.mark.parametrize("name, extra", [("a.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime"]), ("a.mov", []),
                                         ("a.avi", []), ("a.mkv", []), ("a.m4v", []),
                                         ("yuv444.mp4", ["-pix_fmt", "yuv444p"])])
def test_formats_written_by_ffmpeg(tmp_path, name, extra):
    video = read_video(pattern_clip(tmp_path / name, 1, "80x60", 10, *extra))
    assert video.shape == (10, 60, 80, 3) and video.dtype == np.uint8
    assert distinct(video) == 10
    assert video_info(tmp_path / name) == {"frames": 10, "fps": 10.0, "width": 80, "height": 60, "duration": 1.0}
    assert len(read_video(tmp_path / name, num_frames=4)) == 4


def test_every_suffix_uploads_and_data_folders_accept_is_read(tmp_path):
    codec = {".webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime"], ".3gp": ["-c:v", "libx264"],  # not H.263
             ".mpg": ["-c:v", "mpeg2video"], ".mpeg": ["-c:v", "mpeg2video"],  # MPEG-1 takes no 10 fps
             ".mts": ["-f", "mpegts"], ".m2ts": ["-f", "mpegts"],
             # BUG: a raw Motion-JPEG stream (an IP camera's recording) opens through ffmpeg's jpeg_pipe, and was
             # refused as an image
             ".mjpeg": ["-f", "mjpeg"], ".mjpg": ["-f", "mjpeg"]}
    for suffix in VIDEO_SUFFIXES:
        path = pattern_clip(tmp_path / f"clip{suffix}", 1, "80x60", 10, *codec.get(suffix, []))
        assert read_video(path, num_frames=4).shape == (4, 60, 80, 3), suffix
    assert sorted(path.suffix for path in list_videos(tmp_path)) == sorted(VIDEO_SUFFIXES)
    assert {".mjpeg", ".mjpg"} <= set(VIDEO_SUFFIXES)  # so that the file picker and data folders take them


def test_a_folder_of_links_to_label_folders_is_followed_once_and_an_unreadable_one_named(tmp_path, monkeypatch):
    """BUG: rglob does not enter linked folders, so labels made of links (probe/cats -> /data/cats) vanished, or the
    whole folder held 'no video files'; a folder it could not list was skipped without a word. A file reached twice
    counts once, by its shortest path (its own label, not the label of a folder linking to it)."""
    import os

    probe, elsewhere = tmp_path / "probe", tmp_path / "data"
    for label in ("cats", "dogs"):
        (elsewhere / label).mkdir(parents=True)
        (elsewhere / label / "a.mp4").write_bytes(b"")
        (probe / label).parent.mkdir(exist_ok=True)
        (probe / label).symlink_to(elsewhere / label, target_is_directory=True)
    (elsewhere / "dogs" / "back").symlink_to(probe, target_is_directory=True)  # a loop
    (probe / "also-cats").symlink_to(elsewhere / "cats", target_is_directory=True)  # one folder, two names
    (elsewhere / "cats" / "friends").symlink_to(probe / "dogs", target_is_directory=True)  # dogs inside cats
    assert list_videos(probe) == [probe / "also-cats" / "a.mp4", probe / "dogs" / "a.mp4"]
    assert list_videos(f"{probe}/") == list_videos(probe)  # the loop is found whatever the root's spelling

    real_scandir = os.scandir

    def unreadable_dogs(path="."):
        if Path(path).name == "dogs":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", unreadable_dogs)
    with pytest.raises(ValueError, match=f"^{probe}: cannot read the folder {probe / 'dogs'} .Permission denied.$"):
        list_videos(probe)
    monkeypatch.undo()
    # BUG: a link to a folder (or a file) that is missing, a drive not mounted, dropped its label without a word
    for name, target in (("birds", tmp_path / "unmounted" / "birds"), ("c.mp4", elsewhere / "gone.mp4"),
                         ("St. Bernard", tmp_path / "unmounted" / "dogs")):  # a suffix, ". Bernard", that is a label
        (probe / name).symlink_to(target)
        with pytest.raises(ValueError, match=f"^{probe}: {probe / name} is a link to {target} that cannot be "
                                             "followed .No such file or directory.$"):
            list_videos(probe)
        (probe / name).unlink()
    (probe / ".#notes.txt").symlink_to("user@host.1234:1700000000")  # an editor's lock file: not a video
    assert list_videos(probe) == [probe / "also-cats" / "a.mp4", probe / "dogs" / "a.mp4"]
    # BUG: a folder that can be listed but not entered (chmod -R 644, not root) raised PermissionError: a traceback
    real_stat = os.stat

    def unenterable_dogs(path, *args, **kwargs):  # pathlib's is_symlink and is_file both stat
        if Path(path).parent.name == "dogs":
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", unenterable_dogs)
    with pytest.raises(ValueError, match=f"^{probe}: cannot read {probe / 'dogs' / 'a.mp4'} .Permission denied.$"):
        list_videos(probe)


def test_a_video_is_not_written_into_a_pipe(tmp_path):
    """BUG: ffmpeg wrote into it, then the check of what was written found no file: 'ffmpeg wrote 0 of 4 frames (is
    the disk full?)'."""
    import threading

    os.mkfifo(tmp_path / "clip.mp4")
    # a reader, so that a regression fails rather than hangs: ffmpeg's open of a pipe waits for one
    threading.Thread(target=(tmp_path / "clip.mp4").read_bytes, daemon=True).start()
    with pytest.raises(ValueError, match="clip.mp4: not a regular file"):
        write_video(tmp_path / "clip.mp4", np.zeros((4, 16, 16, 3), np.uint8))


def test_hidden_names_are_left_out_and_a_cameras_capital_suffixes_listed(tmp_path):
    """BUG: a Mac's AppleDouble file beside each clip copied to a FAT or exFAT drive (._a.mp4, 4 KB, no video) and a
    drive's .Trash-1000 were listed: half the files 'cannot be read' in training, a trash label in the probe."""
    for name in ("cats/IMG_0001.MOV", "cats/._IMG_0001.MOV", "dogs/GOPR0001.MP4", ".Trash-1000/files/c.mp4",
                 "dogs/.hidden/d.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dogs" / ".#notes.txt").symlink_to("user@host.1234:1700000000")  # an editor's lock: a link nowhere
    assert list_videos(tmp_path) == [tmp_path / "cats" / "IMG_0001.MOV", tmp_path / "dogs" / "GOPR0001.MP4"]


@pytest.mark.parametrize("name, extra", [("b-frames.mp4", ["-bf", "3", "-g", "12"]), ("clip.gif", []),
                                         ("open-gop.mp4", ["-bf", "3", "-g", "12", "-x264-params", "open-gop=1"]),
                                         ("clip.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-g", "8"]),
                                         ("clip.mkv", ["-g", "8"]), ("clip.avi", ["-c:v", "mpeg4"]),
                                         # BUG: a seek to a keyframe's pts landed on the next keyframe (MPEG-TS seeks
                                         # by decoding time, earlier with B-frames): every read decoded from the start
                                         ("b-frames.ts", ["-bf", "3", "-g", "12"]),
                                         ("b-frames.mts", ["-bf", "3", "-g", "12"])])
def test_a_stretch_far_in_is_reached_by_seeking_and_gives_the_frames_decoding_from_the_start_gives(
        tmp_path, monkeypatch, name, extra):
    import jepa_demo.video as video

    path = pattern_clip(tmp_path / name, 4, "64x48", 10, *extra)
    from_start = video._picks_from_start
    calls = []
    monkeypatch.setattr(video, "_picks_from_start", lambda *args: calls.append(args) or from_start(*args))
    # the last: 2 frames after the last keyframe, sought first (a demuxer seeking by decoding time would land past
    # every frame of the file)
    for span, count in (((0.5, 0.9), 6), ((0.9, 1.0), 6), ((0.3, 0.35), 6), ((0.95, 1.0), 2)):
        monkeypatch.setattr(video, "SEEK_FROM", 10**9)
        reference = read_video(path, num_frames=count, size=32, span=span)
        monkeypatch.setattr(video, "SEEK_FROM", 1)  # these clips are short: seek for any stretch not at the start
        calls.clear()
        assert np.array_equal(read_video(path, num_frames=count, size=32, span=span), reference), span
        assert not calls, f"{span}: decoded from the start, not after a seek"


def test_frames_over_the_memory_limit_found_after_a_seek_are_refused_without_decoding_from_the_start(tmp_path,
                                                                                                      monkeypatch):
    """BUG: the refusal, raised for the first frame kept after a seek, sent the read back to decode the file from its
    first frame, only to refuse the same frames there (a whole decode of a long file on the way to an error)."""
    import jepa_demo.video as video

    path = pattern_clip(tmp_path / "long.mp4", 30, "32x24", 10, "-g", "50", "-keyint_min", "50")
    monkeypatch.setattr(video, "SEEK_FROM", 120)
    monkeypatch.setattr(video, "_picks_from_start", lambda *args: pytest.fail("decoded from the start"))
    assert len(read_video(path, num_frames=4, span=(0.8, 1.0))) == 4  # reached by seeking
    monkeypatch.setattr(video, "MAX_READ_ALL_BYTES", 3 * 32 * 24 * 3)  # one frame short of the four
    with pytest.raises(VideoError, match=r"^long.mp4: holding 4 frames of 32x24 pixels would take"):
        read_video(path, num_frames=4, span=(0.8, 1.0))


def test_seeking_decodes_from_the_keyframe_before_a_pick_and_never_decodes_a_frame_twice(tmp_path, monkeypatch):
    import jepa_demo.video as video

    decoded, real_decode = [], video._decode

    def counting(*args):
        for frame in real_decode(*args):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(video, "_decode", counting)
    path = pattern_clip(tmp_path / "keyframes-every-50.mp4", 60, "32x24", 10, "-g", "50", "-keyint_min", "50")
    monkeypatch.setattr(video, "SEEK_FROM", 10**9)
    reference = read_video(path, num_frames=4, span=(0.8, 1.0))  # frames 479, 519, 559 and 599 of 600
    assert len(decoded) == 600
    monkeypatch.setattr(video, "SEEK_FROM", 120)
    decoded.clear()
    assert np.array_equal(read_video(path, num_frames=4, span=(0.8, 1.0)), reference)
    assert len(decoded) == 150  # from the keyframe at frame 450
    single = pattern_clip(tmp_path / "one-keyframe.mp4", 60, "32x24", 10, "-g", "1000")
    decoded.clear()
    read_video(single, num_frames=4)  # picks 199 frames apart, but no keyframe to seek to past the first
    assert len(decoded) == len(set(decoded)) <= 600


def test_after_a_seek_it_waits_for_a_keyframe_only_until_the_pick_then_decodes_from_the_start(tmp_path, monkeypatch):
    """A container may mark frames as keyframes that the decoder does not (no sync-sample table, I-frames that are
    not IDR): frames decoded from there could lack their references, so none counts until the decoder marks one."""
    import jepa_demo.video as video

    path = pattern_clip(tmp_path / "keyframes-every-50.mp4", 60, "32x24", 10, "-g", "50", "-keyint_min", "50")
    reference = read_video(path, num_frames=4, span=(0.8, 1.0))  # frames 479 to 599: a seek to frame 450

    class Unmarked:  # the decoder's frame, never marked a keyframe
        key_frame = False

        def __init__(self, frame):
            self.frame = frame

        def __getattr__(self, name):
            return getattr(self.frame, name)

    decoded, real_decode = [], video._decode

    def unmarked(*args):
        for frame in real_decode(*args):
            decoded.append(frame.pts)
            yield Unmarked(frame)

    monkeypatch.setattr(video, "_decode", unmarked)
    assert np.array_equal(read_video(path, num_frames=4, span=(0.8, 1.0)), reference)
    assert len(decoded) == 30 + 600  # frames 450 to 479 after the seek, then the whole file from the start


def test_grayscale_video(tmp_path):
    video = read_video(pattern_clip(tmp_path / "gray.mp4", 1, "80x60", 10, "-pix_fmt", "gray"))
    assert video.shape == (10, 60, 80, 3) and distinct(video) == 10
    assert np.array_equal(video[..., 0], video[..., 1]) and np.array_equal(video[..., 0], video[..., 2])


def test_audio_track_is_ignored(tmp_path):
    path = pattern_clip(tmp_path / "talk.mp4", 1, "80x60", 10, "-f", "lavfi", "-i", "sine=duration=2", "-shortest")
    video = read_video(path)
    assert video.shape == (10, 60, 80, 3) and distinct(video) == 10
    assert video_info(path)["frames"] == 10


def test_display_rotation_is_applied(tmp_path):
    pattern_clip(tmp_path / "flat.mp4", 1, "80x60", 10)
    ffmpeg("-display_rotation", 90, "-i", tmp_path / "flat.mp4", "-c", "copy", tmp_path / "portrait.mp4")
    upright = read_video(tmp_path / "portrait.mp4")
    assert np.array_equal(upright, np.rot90(read_video(tmp_path / "flat.mp4"), axes=(1, 2)))
    assert read_video(tmp_path / "portrait.mp4", num_frames=2, size=30).shape == (2, 40, 30, 3)
    info = video_info(tmp_path / "portrait.mp4")
    assert (info["width"], info["height"]) == (60, 80)


@pytest.mark.parametrize("flags", [["-display_hflip"], ["-display_vflip"], ["-display_rotation", 180],
                                   ["-display_rotation", 90, "-display_hflip"], ["-display_rotation", -90],
                                   ["-display_rotation", 90, "-display_vflip"]])  # (-90 + vflip = 90 + hflip)
def test_a_mirrored_or_turned_picture_is_shown_as_ffmpeg_shows_it(tmp_path, flags):
    """BUG: PyAV's rotation ignores a mirror: a display matrix that flips left-right read as a half turn (upside
    down), one that flips top-bottom as nothing. ffmpeg's own autorotation is the reference: its first frame as PNG."""
    from PIL import Image

    pattern_clip(tmp_path / "flat.mp4", 1, "80x60", 10)
    ffmpeg(*flags, "-i", tmp_path / "flat.mp4", "-c", "copy", tmp_path / "shown.mp4")
    ffmpeg("-i", tmp_path / "shown.mp4", "-frames:v", "1", tmp_path / "first.png")
    reference = np.asarray(Image.open(tmp_path / "first.png").convert("RGB")).astype(int)
    first = read_video(tmp_path / "shown.mp4")[0].astype(int)
    assert first.shape == reference.shape and np.abs(first - reference).mean() < 4  # colour conversions differ a bit
    info = video_info(tmp_path / "shown.mp4")
    assert (info["height"], info["width"]) == reference.shape[:2]


def test_side_data_pyav_cannot_name_is_read_past(tmp_path):
    """BUG: reading the display matrix went through PyAV's side-data types, which end before ffmpeg 8's EXIF: an MJPEG
    clip whose frames carry Exif raised '31 is not a valid Type', a ValueError, for every read."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "a camera"  # Make
    for i in range(3):
        Image.fromarray(moving_square(frames=3)[i]).save(tmp_path / f"{i}.jpg", exif=exif)
    ffmpeg("-framerate", 8, "-i", tmp_path / "%d.jpg", "-c", "copy", tmp_path / "camera.avi")
    assert read_video(tmp_path / "camera.avi").shape == (3, 64, 64, 3)
    assert video_info(tmp_path / "camera.avi")["width"] == 64


def test_a_read_leaves_no_decoded_frame_for_the_garbage_collector(tmp_path):
    """BUG: reading a frame's display matrix (its side data) ties the frame in a reference cycle (PyAV 18), read for
    every frame: a whole read held every decoded frame until the collector ran (a 1.2 GiB read of 1080p frames
    peaked at 2.6 GiB of memory). The matrix is read once per rotation of a read now."""
    import gc

    pattern_clip(tmp_path / "clip.mp4", 2, "64x48", 10)
    ffmpeg("-display_rotation", 90, "-i", tmp_path / "clip.mp4", "-c", "copy", tmp_path / "turned.mp4")
    gc.collect()
    gc.disable()
    try:
        for read in (lambda: read_video(tmp_path / "turned.mp4"), lambda: read_video(tmp_path / "turned.mp4", 8),
                     lambda: read_video(tmp_path / "turned.mp4", 4, span=(0.8, 1.0))):
            assert read().shape[1:] == (64, 48, 3)  # turned: the matrix was read
            assert sum(type(o).__name__ == "VideoFrame" for o in gc.get_objects()) <= 1
            gc.collect()
    finally:
        gc.enable()


def test_an_orientation_that_changes_midway_is_a_video_error(tmp_path, monkeypatch):
    """BUG: frames turned differently (a display orientation changing midway, as in joined recordings) reached
    np.stack or an array assignment: NumPy's ValueError, which training's folder reader does not catch. Stood in for
    by turning every other frame."""
    from jepa_demo import video

    pattern_clip(tmp_path / "joined.mp4", 1, "80x60", 10)
    upright, turned = video._upright, iter(range(10**6))
    monkeypatch.setattr(video, "_upright",
                        lambda rgb, frame, matrices=None: np.rot90(upright(rgb, frame), next(turned) % 2))
    for read in (lambda: read_video(tmp_path / "joined.mp4"), lambda: read_video(tmp_path / "joined.mp4", 4),
                 lambda: read_clip(tmp_path / "joined.mp4", max_frames=4, size=32)):
        with pytest.raises(VideoError, match=r"^joined.mp4: frame \d+ is turned otherwise than the first"):
            read()


def test_the_main_video_track_is_read_not_the_first(tmp_path):
    """BUG: the first video track was read: a small preview track listed before the main one was taken for the
    video. The largest picture is read now, as ffmpeg picks a video track when converting."""
    pattern_clip(tmp_path / "preview.mp4", 1, "32x24", 10, "-b:v", "20k")
    pattern_clip(tmp_path / "main.mp4", 1, "160x120", 10, "-b:v", "400k")
    ffmpeg("-i", tmp_path / "preview.mp4", "-i", tmp_path / "main.mp4", "-map", "0:v", "-map", "1:v", "-c", "copy",
           tmp_path / "two.mkv")
    assert read_video(tmp_path / "two.mkv").shape == (10, 120, 160, 3)
    assert (video_info(tmp_path / "two.mkv")["width"], read_clip(tmp_path / "two.mkv", 4, 60).frames.shape[2]) == \
        (160, 80)


def test_a_display_matrix_of_zeros_leaves_the_picture_as_stored(tmp_path):
    """A broken muxer can write a track matrix of zeros, which has no angle; ffmpeg plays such a file unturned."""
    flat = pattern_clip(tmp_path / "flat.mp4", 1, "80x60", 10).read_bytes()
    identity = bytes.fromhex("00010000" + "00000000" * 3 + "00010000" + "00000000" * 3 + "40000000")
    matrix = flat.index(identity, flat.index(b"tkhd"))
    (tmp_path / "zeros.mp4").write_bytes(flat[:matrix] + bytes(len(identity)) + flat[matrix + len(identity):])
    assert np.array_equal(read_video(tmp_path / "zeros.mp4"), read_video(tmp_path / "flat.mp4"))
    assert video_info(tmp_path / "zeros.mp4")["width"] == 80


def test_edit_list_hidden_frames_are_not_counted(tmp_path):
    # Cutting without re-encoding keeps the frames back to the last keyframe and hides them with an edit list.
    pattern_clip(tmp_path / "whole.mp4", 2, "80x60", 10, "-g", "20")
    ffmpeg("-ss", 0.5, "-i", tmp_path / "whole.mp4", "-c", "copy", tmp_path / "cut.mp4")
    video = read_video(tmp_path / "cut.mp4")
    assert video_info(tmp_path / "cut.mp4")["frames"] == len(video) < 20
    assert np.array_equal(read_video(tmp_path / "cut.mp4", num_frames=2)[-1], video[-1])


def test_resolution_change_midway(tmp_path):
    # MPEG-TS files can be joined byte by byte; the decoder then switches picture size midway.
    small = pattern_clip(tmp_path / "small.ts", 1, "80x60", 10).read_bytes()
    large = pattern_clip(tmp_path / "large.ts", 1, "160x120", 10).read_bytes()
    (tmp_path / "joined.ts").write_bytes(small + large)
    video = read_video(tmp_path / "joined.ts")
    assert video.shape[1:] == (60, 80, 3) and 18 <= len(video) <= 20  # the decoder may drop a frame at the seam
    assert distinct(video) == len(video)
    # BUG: 1 s, the span of timestamps both halves repeat (the app's 60 s limit took three 50 s recordings for 50 s)
    assert video_info(tmp_path / "joined.ts")["duration"] == pytest.approx(2.0, abs=0.15)


def test_a_first_picture_over_the_limit_is_not_decoded_to_learn_its_size(tmp_path, monkeypatch):
    """BUG: opening a file, ffmpeg's probe decodes a first picture whose container does not give its format (PNG or
    MJPEG in a MOV): a 9 MB file of one 16000 x 16000 PNG took 2 GB and 4 s before the limit was checked. Here a
    160 x 120 PNG stands for it: the probe stops at the limit, and its size stays unknown."""
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=160x120", "-frames:v", "1", "-c:v", "png", tmp_path / "big.mov")
    with monkeypatch.context() as patch:
        patch.setattr("jepa_demo.video.MAX_PIXELS", 80 * 60)
        for read in (read_video, video_info):
            with pytest.raises(VideoError, match=r"^big.mov: not a readable video \(the video stream gives no picture "
                                                 r"size, or its first picture is over the limit of \d+ million pixels"):
                read(tmp_path / "big.mov")
    assert read_video(tmp_path / "big.mov").shape == (1, 120, 160, 3)  # within the limit, read as before


def test_pixel_limit_holds_for_a_picture_size_that_changes_midway(tmp_path, monkeypatch):
    """A small first picture must not let a huge one through later (the limit was checked on the first only)."""
    small = pattern_clip(tmp_path / "small.ts", 1, "80x60", 10).read_bytes()
    large = pattern_clip(tmp_path / "large.ts", 1, "160x120", 10).read_bytes()
    (tmp_path / "joined.ts").write_bytes(small + large)
    monkeypatch.setattr("jepa_demo.video.MAX_PIXELS", 80 * 60)  # 160x120 stands for a picture of 100 megapixels
    for read in (read_video, lambda path: read_video(path, num_frames=16)):
        with pytest.raises(VideoError, match=r"joined.ts: frame \d+ is 160x120 pixels, over the limit"):
            read(tmp_path / "joined.ts")


@pytest.mark.parametrize("script", ["ffconcat version 1.0\nfile real.mp4\n",
                                    "ffconcat version 1.0\nfile playlist.mp4\n",
                                    "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nreal.mp4\n#EXT-X-ENDLIST\n"])
def test_a_playlist_named_like_a_video_is_refused_not_followed(tmp_path, script):
    """ffmpeg picks its demuxer from a file's first bytes: a concat script or an HLS playlist named .mp4 would play the
    files it names (the video next to it, or itself over and over until no file could be opened)."""
    pattern_clip(tmp_path / "real.mp4", 2, "64x48", 10)
    (tmp_path / "playlist.mp4").write_text(script)
    for read in (read_video, video_info):
        with pytest.raises(VideoError, match="playlist.mp4: not a readable video"):
            read(tmp_path / "playlist.mp4")


def test_a_strip_too_wide_to_resize_is_refused_before_decoding(tmp_path, monkeypatch):
    """A 1024x16 strip at a short side of 224 would be 14336x224 pixels a frame: 3.2 million, here over the limit
    (1 million stands for a strip of a few kilopixels that would take gigabytes once resized)."""
    pattern_clip(tmp_path / "strip.mp4", 2, "1024x16", 10)
    monkeypatch.setattr("jepa_demo.video.MAX_PIXELS", 1_000_000)
    for read in (lambda path: read_video(path, size=224), lambda path: read_video(path, num_frames=4, size=224)):
        with pytest.raises(VideoError, match=r"strip.mp4: the picture is 1024x16 pixels; with its short side scaled"):
            read(tmp_path / "strip.mp4")
    assert read_video(tmp_path / "strip.mp4", num_frames=4, size=32).shape == (4, 32, 2048, 3)


def test_unreadable_files_raise_video_error_naming_the_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "text.mp4").write_text("hello, I am not a video\n" * 20)
    (tmp_path / "clips.mp4").mkdir()
    Image.fromarray(moving_square()[0]).save(tmp_path / "still.png")
    Image.fromarray(moving_square()[0]).save(tmp_path / "still.jpg")
    Image.fromarray(moving_square()[0]).save(tmp_path / "png-inside.mp4", format="PNG")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", tmp_path / "song.m4a")
    # MPEG-4 in AVI with its FourCC changed to one ffmpeg does not know: a stream without a decoder.
    known = pattern_clip(tmp_path / "known.avi", 1, "64x48", 10, "-c:v", "mpeg4").read_bytes()
    assert known.count(b"FMP4") == 2
    (tmp_path / "unknown-codec.avi").write_bytes(known.replace(b"FMP4", b"ABCD"))
    cases = {"unknown-codec.avi": "ffmpeg has no decoder for its video codec",
             "missing.mp4": "file not found", "clips.mp4": "folder", "empty.mp4": "empty",
             "noise.mp4": "not a readable video", "text.mp4": "not a readable video",
             "still.png": "is an image, not a video", "still.jpg": "is an image, not a video",
             "png-inside.mp4": "is an image, not a video", "song.m4a": r"no video stream, only audio"}
    for name, reason in cases.items():
        for read in (read_video, lambda p: read_video(p, num_frames=4), video_info):
            with pytest.raises(VideoError, match=reason) as err:
                read(tmp_path / name)
            assert str(err.value).startswith(f"{name}: ")
    with pytest.raises(VideoError, match=r"^zero: not a regular file \(a device or a pipe\)"):
        read_video("/dev/zero")  # BUG: "the file is empty"


def test_an_image_named_with_a_number_pattern_is_that_image_alone(tmp_path):
    """BUG: ffmpeg's image reader takes %d in a name for a numbered sequence: 'photo%d.jpg' was read as a 2-frame
    video of photo1.jpg and photo2.jpg, other files."""
    for number in (1, 2):
        Image.fromarray(moving_square()[number]).save(tmp_path / f"photo{number}.jpg")
    Image.fromarray(moving_square()[0]).save(tmp_path / "photo%d.jpg")
    for read in (read_video, video_info):
        with pytest.raises(VideoError, match=r"^photo%d\.jpg: is an image, not a video$"):
            read(tmp_path / "photo%d.jpg")


def _damaged_packet(path: Path, number: int, count: int = 1) -> Path:
    """`path` with the payload of its video packets `number` .. `number + count - 1` zeroed (their first bytes
    kept): frames the decoder refuses."""
    with av.open(str(path)) as container:
        packets = [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]
    data = bytearray(path.read_bytes())
    for position, size in packets[number:number + count]:
        data[position + 4:position + size] = bytes(size - 4)
    damaged = path.with_name(f"damaged-{path.name}")
    damaged.write_bytes(data)
    return damaged


def _ffmpeg_frames(path: Path, width: int, height: int, *filters) -> np.ndarray:
    """Every frame ffmpeg decodes, none repeated to keep a frame rate."""
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "quiet", "-i", str(path), *filters, "-fps_mode",
                          "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True,
                         check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@pytest.mark.parametrize("codec", ["mjpeg", "libx264"])
def test_a_frame_the_decoder_refuses_is_skipped_as_ffmpeg_skips_it(tmp_path, codec):
    """BUG: one damaged frame made the whole clip a VideoError ('damaged video (decoding failed after 20 frames)'),
    or not, as the frames sampled fell before or after it; players and ffmpeg skip it and play on."""
    clip = _damaged_packet(pattern_clip(tmp_path / "clip.avi", 4, "64x48", 10, "-c:v", codec, "-g", 10), 20)
    video = read_video(clip)
    assert np.array_equal(video, _ffmpeg_frames(clip, 64, 48)) and 30 <= len(video) < 40
    for num_frames in (5, 6, 16, 40):
        assert read_video(clip, num_frames=num_frames).shape == (num_frames, 48, 64, 3)
    assert read_clip(clip, 64, 64).frames.shape == (len(video), 64, 85, 3)  # the app's and the CLI's read
    whole = pattern_clip(tmp_path / "whole.avi", 1, "64x48", 10, "-c:v", "mjpeg")
    with pytest.raises(VideoError, match=r"^damaged-whole.avi: damaged video \(no frame could be decoded: Invalid"):
        read_video(_damaged_packet(whole, 0, count=10))


@pytest.mark.parametrize("ratio, shown", [("1/2", (96, 96)), ("4/3", (96, 256))])
def test_pixels_that_are_not_square_are_shown_as_players_show_them(tmp_path, ratio, shown):
    """BUG: the sample aspect ratio was ignored: a DV, DVD or HDV clip, whose pixels players stretch, reached the model
    squashed, and its centre crop missed part of the scene (four stripes stored 192 wide at 1:2, a square on screen,
    came back as a 192 x 96 picture whose centre square held two of them)."""
    stripes = np.zeros((10, 96, 192, 3), np.uint8)
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        stripes[:, :, 48 * i:48 * (i + 1)] = colour
    write_video(tmp_path / "square.mp4", stripes)
    ffmpeg("-i", tmp_path / "square.mp4", "-vf", f"setsar={ratio}", tmp_path / "stretched.mp4")
    video = read_video(tmp_path / "stretched.mp4")
    height, width = shown
    assert video.shape == (10, height, width, 3)
    assert (video_info(tmp_path / "stretched.mp4")["width"], video_info(tmp_path / "stretched.mp4")["height"]) == \
        (width, height)
    players = _ffmpeg_frames(tmp_path / "stretched.mp4", width, height, "-vf", "scale=iw*sar:ih,setsar=1")
    assert np.abs(video.astype(int) - players).mean() < 2
    middle = [tuple(video[0, height // 2, int(width * x)]) for x in (0.1, 0.35, 0.65, 0.9)]
    assert np.allclose(middle, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)], atol=12), middle
    assert read_video(tmp_path / "stretched.mp4", 4, size=48).shape == (4, 48, 48 * width // height, 3)


def test_cover_art_is_not_taken_for_the_video(tmp_path):
    """Cover art is a video stream marked as an attached picture: a song with one is no one-frame video, and a clip
    carrying a cover larger than its picture is read from its video stream (the largest stream is taken otherwise)."""
    pattern_clip(tmp_path / "clip.mp4", 1, "64x48", 10)
    ffmpeg("-f", "lavfi", "-i", "color=red:size=400x400", "-frames:v", "1", tmp_path / "cover.png")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-i", tmp_path / "cover.png", "-map", "0", "-map", "1",
           "-c:a", "aac", "-c:v", "png", "-disposition:v:0", "attached_pic", tmp_path / "song.m4a")
    ffmpeg("-i", tmp_path / "clip.mp4", "-i", tmp_path / "cover.png", "-map", "0", "-map", "1", "-c:v:0", "copy",
           "-c:v:1", "png", "-disposition:v:1", "attached_pic", tmp_path / "with-cover.mp4")
    with pytest.raises(VideoError, match=r"^song.m4a: not a readable video \(no video stream, only audio\)$"):
        read_video(tmp_path / "song.m4a")
    assert video_info(tmp_path / "with-cover.mp4") == video_info(tmp_path / "clip.mp4")
    assert np.array_equal(read_video(tmp_path / "with-cover.mp4"), read_video(tmp_path / "clip.mp4"))


def test_an_mp4_cut_short_before_its_index_is_said_to_be_cut_short(tmp_path):
    """BUG: an MP4 written as phones and ffmpeg write it, index (moov) last, and cut short by an interrupted copy or
    recording was 'not a video format ffmpeg knows'."""
    data = pattern_clip(tmp_path / "whole.mp4", 2, "64x48", 10).read_bytes()  # no +faststart: the index last
    (tmp_path / "cut.mp4").write_bytes(data[:int(len(data) * 0.6)])
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 20)
    for read in (read_video, video_info):
        with pytest.raises(VideoError, match=r"^cut\.mp4: not a readable video \(an MP4 or MOV file whose index \(its "
                           r"moov atom\) is missing or damaged: often a recording, copy or download cut short"):
            read(tmp_path / "cut.mp4")
        with pytest.raises(VideoError, match=r"^text\.mp4: not a readable video \(its contents are not a video format "
                           r"ffmpeg knows\)$"):
            read(tmp_path / "text.mp4")


@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_truncated_mp4_gives_an_error_or_only_real_frames(tmp_path, keep):
    data = pattern_clip(tmp_path / "whole.mp4", 4, "64x48", 10, "-movflags", "+faststart").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:int(len(data) * keep)])
    from jepa_demo.preprocess import sample_frame_indices

    whole = read_video(tmp_path / "whole.mp4")
    decoded = None
    for num_frames in (None, 8):
        try:
            video = read_video(tmp_path / "cut.mp4", num_frames=num_frames)
        except VideoError as err:
            assert keep == 0.5 and str(err).startswith("cut.mp4: ")  # cut at 0.8, most frames decode: never fails
        else:
            assert distinct(video) == len(video)  # nothing repeated to make up for missing frames
            if num_frames is None:
                assert np.array_equal(video, whole[:len(video)])
                decoded = len(video)
            else:  # fewer frames than the packets promised: sampled again over those that decode, as a whole read
                assert decoded is not None and decoded < len(whole)  # 19 of 22 packets at 0.8, and 8 of 19 frames
                # are not 8 of 18: a count one off would pick other frames
                assert np.array_equal(video, whole[sample_frame_indices(decoded, 8)])


@pytest.mark.parametrize("frames, message", [(np.zeros((2, 8, 8, 3), np.float32), "uint8"),
                                             (np.zeros((8, 8, 3), np.uint8), "shape"),
                                             (np.zeros((2, 8, 8, 4), np.uint8), "shape"),
                                             (np.zeros((0, 8, 8, 3), np.uint8), "shape"),
                                             # BUG: encoded, then deleted as "is the disk full?" (the check reads
                                             # the file back, and refuses frames over the limit)
                                             (np.zeros((1, 6400, 6401, 3), np.uint8), "6401x6400 pixels .+ over"),
                                             # 39,992,975 pixels, 40,005,624 once padded to even sides
                                             (np.zeros((1, 6325, 6323, 3), np.uint8), "6323x6325 pixels .padded")])
def test_write_rejects_bad_arrays(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "x.mp4", frames)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name, longest, encoder", [("strip.mp4", 16384, "H.264"), ("strip.gif", 65535, "GIF"),
                                                    ("strip.webm", 65536, "VP9")])
def test_write_refuses_a_side_its_encoder_cannot_take(tmp_path, name, longest, encoder):
    """BUG: under the pixel limit, but over the encoder's longest side: ffmpeg refused it, and the empty file it left
    read as 'ffmpeg wrote 0 of 2 frames (is the disk full?)'."""
    with pytest.raises(ValueError, match=rf"frames of {longest + 1}x2 pixels: {encoder}( \(\w+\))? takes sides of "
                                         rf"at most {longest} pixels"):
        write_video(tmp_path / name, np.zeros((2, 2, longest + 1, 3), np.uint8))
    assert not list(tmp_path.iterdir())
    write_video(tmp_path / name, np.zeros((2, 2, longest, 3), np.uint8))
    assert read_video(tmp_path / name).shape == (2, 2, longest, 3)


def test_a_write_that_ffmpeg_cannot_finish_leaves_no_file(tmp_path):
    """With files limited to 20 kB (as on a full disk), ffmpeg fails after the last frame is handed over, when x264
    encodes its look-ahead and the gif its palette; imageio-ffmpeg does not report it, and the cut file was renamed
    into place as if complete."""
    noise = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)  # far over 20 kB encoded
    np.save(tmp_path / "noise.npy", noise)
    script = ("import resource, sys, numpy as np; from jepa_demo.video import write_video; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)); "
              "frames = np.load(sys.argv[1])\n"
              "for name in sys.argv[2:]:\n"
              "    try: write_video(name, frames)\n"
              "    except OSError as err: print(err)")
    names = [tmp_path / "clip.mp4", tmp_path / "clip.gif"]
    result = subprocess.run([sys.executable, "-c", script, tmp_path / "noise.npy", *names], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("of 16 frames (is the disk full?)") == 2, result.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["noise.npy"]  # no cut file, no partial one


def test_a_name_with_a_colon_is_written_not_taken_for_a_protocol(tmp_path, monkeypatch):
    """BUG: ffmpeg was handed the relative temporary name ".take:2.<hex>.partial.mp4" and read ".take" as a protocol
    ("Protocol not found")."""
    monkeypatch.chdir(tmp_path)
    clip = moving_square()
    write_video(Path("take:2.mp4"), clip)
    assert source_frames(read_video(Path("take:2.mp4")), clip) == list(range(16))
    assert [path.name for path in tmp_path.iterdir()] == ["take:2.mp4"]


def test_write_rejects_bad_extension_and_fps(tmp_path):
    with pytest.raises(ValueError, match=r"can only write \.mp4, \.gif, \.webm"):
        write_video(tmp_path / "x.avi", moving_square())
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "x.mp4", moving_square(), fps=0)
    assert not list(tmp_path.iterdir())


def test_ffmpeg_stopping_midway_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    """BUG: a disk filling up while frames were still being sent raised imageio's error, which runs over many lines
    with the whole ffmpeg command (the hidden partial file's name in it), into the app's and the tour's messages."""
    import imageio_ffmpeg

    write_frames = imageio_ffmpeg.write_frames

    def stops_after_two(path, *args, **kwargs):
        real = write_frames(path, *args, **kwargs)
        yield next(real)  # ffmpeg started
        for _ in range(2):
            real.send((yield))
        real.close()
        raise OSError("[Errno 32] Broken pipe\n\nFFMPEG COMMAND:\nffmpeg -y -f rawvideo ... .x.partial.mp4\n")

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", stops_after_two)
    with pytest.raises(OSError, match=r"^x\.mp4: ffmpeg stopped after 2 of 16 frames \(\[Errno 32\] Broken pipe: is "
                                      r"the disk full\?\); nothing was written$"):
        write_video(tmp_path / "x.mp4", moving_square())
    assert not list(tmp_path.iterdir())


def test_at_a_constant_frame_rate_picks_by_time_are_the_picks_by_index():
    """Timestamps rounded to the container's clock (here up to 0.4 of a frame off) must not move any pick."""
    rng = np.random.default_rng(0)
    times = np.arange(100) / 30 + rng.uniform(-0.4, 0.4, 100) / 30
    times[[0, -1]] = 0, 99 / 30  # the ends set the steady step
    picks = np.array([0, 3, 7, 50, 98, 99])
    assert nearest_in_time(picks, times).tolist() == picks.tolist()
    times[49:52] = np.array([49.6, 50.7, 51]) / 30  # a stall: 49 and 50 shown late, 49 nearer to where 50 should be
    assert nearest_in_time(picks, times).tolist() == [0, 3, 7, 49, 98, 99]


def test_display_times_come_from_timestamps_only_when_they_can_order_the_frames():
    b_frames = [0, 3, 1, 2, 6, 4, 5]  # decoding order of an I P B B P B B stream, in ticks of 1/10 s
    assert display_times(b_frames, 0.1) == pytest.approx(np.arange(7) / 10)
    joined = [*range(0, 60, 2), *range(1, 61, 2)]  # two recordings whose clocks overlap without colliding
    assert display_times(joined, 0.1) is None  # sorted, they would interleave the two: frame 30 is not frame 1
    assert display_times([0, 1, 1, 2], 0.1) is None and display_times([0, None, 2], 0.1) is None
    assert display_times([0, 1, 2], 0.0) is None


def test_strided_frame_indices_keep_at_most_the_limit_one_in_k():
    assert strided_frame_indices(100, 64).tolist() == list(range(0, 100, 2))
    assert strided_frame_indices(300, 64).tolist() == list(range(0, 300, 5))  # 60 frames: 5 is the smallest step
    assert strided_frame_indices(64, 64).tolist() == list(range(64))
    assert strided_frame_indices(3, 64).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="no frames"):
        strided_frame_indices(0, 64)
