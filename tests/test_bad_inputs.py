"""Whatever people upload: a corpus of awkward and broken files, made here with ffmpeg and plain bytes, sent through
`read_video`, the command line (a real subprocess) and the app (a real server, through `gradio_client`).

Each file gets a correct result or a clear message that names it and says why: never a traceback, a hang, or a
clip silently padded or cut. The expectations below are the specification.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_video import ffmpeg, pattern_clip  # the same helpers make the video tests' files

from jepa_demo import VideoError, read_video, video_info
from jepa_demo.video import read_clip

ROOT = Path(__file__).resolve().parent.parent

# Refused wherever they are read, with these words.
UNREADABLE = {
    "empty.mp4": "the file is empty",
    "random-bytes.mp4": "not a readable video",
    "notes.mp4": "not a readable video",  # a text file named .mp4
    "truncated.mp4": "damaged video",  # the first 40 % of a 4 s clip: the index promises frames that are not there
    "still.png": "is an image, not a video",
    "still-named.mp4": "is an image, not a video",  # a PNG named .mp4
    # refused before any frame is decoded: a frame refused after decoding says "frame 1 is 6400x6400 pixels"
    "huge-6400x6400.mp4": "the picture is 6400x6400 pixels, over the limit of 40 million",
}
# Files video_info reads whose frames cannot be turned into RGB, and why (swscale has no YCgCo matrix).
UNCONVERTIBLE = {"colour-ycgco.mp4": "cannot convert to RGB"}
# Readable videos (frames, height, width) that no model input can be made of, and why (CLI and app).
UNUSABLE = {
    "one-frame.mp4": "at least 20 frames",
    "wide-1024x16.mp4": "more than 8 times wider",
}
# Readable, and usable by the CLI and the app: (frames, height, width) as read_video must return them.
READABLE = {
    "tiny-8x8.mp4": (30, 8, 8),
    "gray.mp4": (20, 48, 64),
    "long-3min.mp4": (1800, 48, 64),  # the app refuses it (over 60 s); the CLI samples it
    "with-audio.mp4": (20, 48, 64),
    "clip.webm": (20, 48, 64),
    "clip.gif": (20, 48, 64),
    "clip.mov": (20, 48, 64),
    "variable-rate.mp4": (23, 48, 64),
    "truncated-late.mp4": (27, 48, 64),  # 90 % of the 4 s clip: the 27 frames that are really there
}
# What the app answers differently: its duration limit, and Gradio's own check of the upload's extension.
APP_REFUSES = {"long-3min.mp4": "limit is 60 s", "still.png": r"Invalid file type.*\.mp4"}
SHAPES = {**READABLE, "one-frame.mp4": (1, 48, 64), "wide-1024x16.mp4": (20, 16, 1024)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "random-bytes.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (folder / "notes.mp4").write_text("My holiday video, part 2\n" * 100)
    whole = pattern_clip(folder / "whole.tmp.mp4", 4, "64x48", 10, "-movflags", "+faststart").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[:int(len(whole) * 0.4)])
    (folder / "truncated-late.mp4").write_bytes(whole[:int(len(whole) * 0.9)])
    (folder / "whole.tmp.mp4").unlink()
    still = np.zeros((48, 64, 3), np.uint8)
    still[10:30, 20:40] = (255, 200, 0)
    Image.fromarray(still).save(folder / "still.png")
    Image.fromarray(still).save(folder / "still-named.mp4", format="PNG")
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=6400x6400:d=0.5:r=4", "-c:v", "libx264", "-preset", "ultrafast",
            folder / "huge-6400x6400.mp4")
    pattern_clip(folder / "one-frame.mp4", 0.1, "64x48", 10)
    pattern_clip(folder / "wide-1024x16.mp4", 2, "1024x16", 10)
    pattern_clip(folder / "tiny-8x8.mp4", 3, "8x8", 10)
    # A keyframe every 6 frames in the files the seek test reads (x264's default is one in 250), so that a seek lands
    # inside the file, not on its first frame.
    pattern_clip(folder / "gray.mp4", 2, "64x48", 10, "-pix_fmt", "gray", "-g", 6)
    pattern_clip(folder / "long-3min.mp4", 180, "64x48", 10)
    pattern_clip(folder / "with-audio.mp4", 2, "64x48", 10, "-f", "lavfi", "-i", "sine=duration=3", "-shortest",
                 "-g", 6)
    pattern_clip(folder / "clip.webm", 2, "64x48", 10, "-c:v", "libvpx-vp9", "-deadline", "realtime")
    pattern_clip(folder / "clip.gif", 2, "64x48", 10)
    pattern_clip(folder / "clip.mov", 2, "64x48", 10)
    pattern_clip(folder / "colour-ycgco.mp4", 2, "64x48", 10, "-bsf:v", "h264_metadata=matrix_coefficients=8")
    # 10 frames at 10 fps, 10 at 40 fps, 3 at 5 fps (in milliseconds): no single frame rate describes the clip.
    retime = "settb=1/1000,setpts='1000*if(lt(N,10),N/10,if(lt(N,20),1+(N-10)/40,1.25+(N-20)/5))'"
    pattern_clip(folder / "variable-rate.mp4", 2.3, "64x48", 10, "-vf", retime, "-fps_mode", "passthrough",
                 "-enc_time_base", "1:1000", "-video_track_timescale", "1000", "-bf", "0", "-g", 6)
    assert sorted(p.name for p in folder.iterdir()) == sorted({**UNREADABLE, **UNCONVERTIBLE, **UNUSABLE, **READABLE})
    return folder


def test_read_video_reads_every_readable_file_whole_and_refuses_the_rest_by_name(corpus):
    for name, reason in UNREADABLE.items():
        for read in (read_video, lambda p: read_video(p, num_frames=8, size=32), video_info):
            with pytest.raises(VideoError, match=reason) as err:
                read(corpus / name)
            assert str(err.value).startswith(f"{name}: ")
    for name, reason in UNCONVERTIBLE.items():
        assert video_info(corpus / name)["frames"] == 20
        for read in (read_video, lambda p: read_video(p, num_frames=8, size=32)):
            with pytest.raises(VideoError, match=f"{name}: .*{reason}"):
                read(corpus / name)
    for name, (frames, height, width) in SHAPES.items():
        video = read_video(corpus / name)
        assert video.shape == (frames, height, width, 3) and video.dtype == np.uint8, name
        if frames <= 100:  # testsrc's small picture repeats itself over minutes
            assert len({frame.tobytes() for frame in video}) == frames, f"{name}: frames repeated or lost"
        # video_info counts packets without decoding: the cut file's last 3 are there but cannot be decoded.
        assert video_info(corpus / name)["frames"] == frames + 3 * (name == "truncated-late.mp4"), name
    # Timed by its timestamps (the last frame shows from 1.65 s for 0.1 s), not by frames / fps (0.575 s).
    assert video_info(corpus / "variable-rate.mp4")["duration"] == pytest.approx(1.75)
    gray = read_video(corpus / "gray.mp4")
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


def test_a_variable_frame_rate_is_sampled_at_a_steady_step_of_time(corpus):
    """variable-rate.mp4 shows its frames for 0.1, then 0.025, then 0.2 s. One frame in three steps 0.3 s, then
    0.075 s, then 0.25 s: steady motion seeming to speed up fourfold and slow down again, which is what surprise
    measures. Each pick must be the frame nearest to a steady step instead (within 0.1 s, half the longest frame)."""
    path = corpus / "variable-rate.mp4"
    times = np.array([*(np.arange(10) / 10), *(1 + np.arange(10) / 40), 1.25, 1.45, 1.65])  # each frame's start
    whole = read_video(path)
    clip = read_clip(path, max_frames=8, size=48)  # one in 3 of 23 frames: 8 picks, 3 x 1.65 / 22 s apart
    steady = np.arange(8) * 3 * 1.65 / 22
    assert np.abs(times[clip.source_frames] - steady).max() <= 0.1 + 1e-9, clip.source_frames
    assert np.array_equal(clip.frames, whole[clip.source_frames])
    sampled = read_video(path, num_frames=8)  # the model's sampling: the same 8 steps here
    assert np.array_equal(sampled, clip.frames)


def test_seeking_far_in_gives_the_frames_decoding_from_the_start_gives(corpus, monkeypatch):
    """Training reads random stretches of long files by seeking (video.SEEK_FROM); on awkward files too: a variable
    frame rate, frames missing at the end, an audio track, grayscale."""
    import jepa_demo.video as video

    from_start, calls = video._picks_from_start, []
    monkeypatch.setattr(video, "_picks_from_start", lambda *args: calls.append(args) or from_start(*args))
    for name in ("variable-rate.mp4", "truncated-late.mp4", "with-audio.mp4", "long-3min.mp4", "gray.mp4"):
        for span in ((0.6, 1.0), (0.95, 1.0)):
            monkeypatch.setattr(video, "SEEK_FROM", 10**9)
            reference = read_video(corpus / name, num_frames=4, span=span)
            monkeypatch.setattr(video, "SEEK_FROM", 1)
            calls.clear()
            assert np.array_equal(read_video(corpus / name, num_frames=4, span=span), reference), (name, span)
            # only the cut file goes back to decoding from the start: its last frames are missing
            assert bool(calls) == (name == "truncated-late.mp4"), (name, span)


def test_read_video_gives_up_at_its_timeout(corpus):
    with pytest.raises(VideoError, match=r"long-3min.mp4: gave up after 0.01 s"):
        read_video(corpus / "long-3min.mp4", timeout=0.01)
    assert len(read_video(corpus / "long-3min.mp4", num_frames=4, timeout=60)) == 4
    with pytest.raises(VideoError, match=r"long-3min.mp4: gave up after 0.001 s"):
        read_clip(corpus / "long-3min.mp4", max_frames=64, size=32, timeout=0.001)


def test_packets_that_decode_to_no_picture_still_meet_the_timeout(tmp_path):
    """BUG: the deadline was checked only when a picture came out, so a stream of packets that decode to none (hidden
    VP9 frames: a one-bit edit each) could hold a worker for hours, far past the 30-s limit. A stand-in container
    whose packets take 5 ms each and give no picture, as PyAV's decode (demux, then each packet's decode) would."""
    import time
    from types import SimpleNamespace

    from jepa_demo.video import _Deadline, _decode

    decoded = []

    class Hidden:
        def decode(self):
            decoded.append(1)
            time.sleep(0.005)
            return []

    class Container:
        def demux(self, stream):
            return (Hidden() for _ in range(200))  # 1 s in all

        def decode(self, stream):
            for packet in self.demux(stream):
                yield from packet.decode()

    stream = SimpleNamespace(codec_context=SimpleNamespace(width=64, height=64), thread_type=None)
    with pytest.raises(VideoError, match=r"^hidden.webm: gave up after 0.1 s of reading \(0 frames decoded\)"):
        next(_decode(Container(), stream, tmp_path / "hidden.webm", _Deadline(0.1)))
    # stopped at the first packet past 0.1 s, the 21st at most: each takes 5 ms or more (a count, not a time, which a
    # busy machine could stretch); a deadline looked at only every so many packets would read more
    assert len(decoded) <= 21


def test_cli_answers_every_file_or_names_it_with_the_reason(corpus):
    files = sorted(corpus.iterdir())
    result = subprocess.run([sys.executable, "-m", "jepa_demo", "surprise", "--json", *files], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1  # some files failed, the rest were processed
    assert "Traceback" not in result.stderr
    errors = dict(line.split(": ", 1) for line in result.stderr.splitlines())
    refused = {**UNREADABLE, **UNCONVERTIBLE, **UNUSABLE}
    assert {Path(path).name for path in errors} == set(refused)
    for path, message in errors.items():
        assert refused[Path(path).name] in message, message
    answers = {Path(row["file"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(answers) == set(READABLE)
    for name, row in answers.items():
        frames = READABLE[name][0]
        assert len(row["per_step"]) == len(row["step_frames"]) >= 1 and math.isfinite(row["score"]), name
        assert row["score"] == pytest.approx(max(row["per_step"]) - min(row["per_step"]), abs=2e-6), name  # 6 decimals
        assert 0 <= row["peak_frame"] < frames, name
    # The 3-minute clip was sampled over its whole length (64 frames), not cut to its start.
    assert answers["long-3min.mp4"]["step_frames"][-1] > 1500


@pytest.mark.slow
def test_app_answers_every_file_or_names_it_with_the_reason(app_server, corpus, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app_server, verbose=False, download_files=str(tmp_path))
    refused = {**UNREADABLE, **UNCONVERTIBLE, **UNUSABLE, **APP_REFUSES}
    for path in sorted(corpus.iterdir()):
        job = client.submit(handle_file(path), "default", api_name="/surprise")
        if path.name in refused:
            with pytest.raises(Exception, match=refused[path.name]):
                job.result(timeout=120)
        else:
            _, _, numbers = job.result(timeout=120)
            frames = READABLE[path.name][0]
            assert len(numbers["per_step"]) >= 1 and all(map(math.isfinite, numbers["per_step"])), path.name
            assert 0 <= numbers["peak_frame"] < frames, path.name
