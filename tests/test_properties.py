"""Property-based tests (hypothesis) of the path every clip takes: encode/decode, sampling, preprocessing.

Whatever size, length, frame rate and content a caller gives, the output has the promised shape and dtype and the
promised values, or the call fails with a ValueError that says what was wrong.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jepa_demo import read_video, video_info, write_video
from jepa_demo.config import PreprocessConfig
from jepa_demo.preprocess import check_video_array, preprocess_video, sample_frame_indices
from jepa_demo.video import read_clip

# Each example of the file tests runs ffmpeg once (~0.1 s): a few dozen examples, no per-example deadline.
FILE_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _random_clip(seed: int, frames: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


@settings(deadline=None)  # pure arithmetic, but a loaded 2-core machine can stall any call past the 200 ms default
@given(available=st.integers(1, 5000), wanted=st.integers(1, 64))
def test_the_models_frames_are_one_step_apart_as_far_apart_as_fit_and_centred(available, wanted):
    indices = sample_frame_indices(available, wanted)
    assert len(indices) == wanted and indices.min() >= 0 and indices.max() < available
    if available >= wanted > 1:
        steps = set(np.diff(indices).tolist())
        assert len(steps) == 1 and (step := steps.pop()) >= 1
        assert (step + 1) * (wanted - 1) > available - 1  # one more frame of step would not fit
        assert abs(indices[0] - (available - 1 - indices[-1])) <= 1  # as much left out before as after


@FILE_SETTINGS
@given(frames=st.integers(1, 12), height=st.integers(2, 40), width=st.integers(2, 40),
       fps=st.floats(1.0, 50.0), suffix=st.sampled_from([".mp4", ".gif"]), seed=st.integers(0, 2**16))
def test_any_clip_written_reads_back_with_its_frames_and_size(tmp_path, frames, height, width, fps, suffix, seed):
    path = tmp_path / f"clip{suffix}"
    write_video(path, _random_clip(seed, frames, height, width), fps=fps)
    video = read_video(path)
    if suffix == ".mp4":  # H.264 4:2:0 needs even sides: padded by one edge row/column
        height, width = height + height % 2, width + width % 2
    assert video.shape == (frames, height, width, 3) and video.dtype == np.uint8
    info = video_info(path)
    assert (info["frames"], info["width"], info["height"]) == (frames, width, height)
    assert info["duration"] == pytest.approx(frames / fps, abs=0.01 * frames + 0.02)  # gif: whole centiseconds


@FILE_SETTINGS
@given(frames=st.integers(1, 30), max_frames=st.integers(1, 40), size=st.integers(4, 48))
def test_read_clip_samples_real_frames_in_order_at_the_asked_size(tmp_path, frames, max_frames, size):
    clip = np.zeros((frames, 24, 32, 3), np.uint8)
    clip[..., 0] = (np.arange(frames) * 255 // max(frames - 1, 1))[:, None, None]  # frame i has its own red level
    write_video(tmp_path / "ramp.mp4", clip)
    frames_out, source = read_clip(tmp_path / "ramp.mp4", max_frames=max_frames, size=size)
    step = -(-frames // max_frames)  # the smallest that keeps at most max_frames
    assert len(frames_out) == len(source) <= max_frames and min(frames_out.shape[1:3]) == size
    assert frames_out.dtype == np.uint8
    assert source.tolist() == list(range(0, frames, step))  # in order, evenly timed, over the whole clip
    red = frames_out[:, frames_out.shape[1] // 2, frames_out.shape[2] // 2, 0].astype(int)
    assert np.abs(red - clip[source, 12, 16, 0]).max() <= 4  # each kept frame is the one it claims to be


@settings(max_examples=60, deadline=None)
@given(video=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=24).map(
           lambda shape: (*shape[:3], 3))),
       img_size=st.sampled_from([8, 16, 32]), num_frames=st.none() | st.integers(1, 10))
def test_preprocessing_any_clip_gives_the_model_shape_within_the_normalised_range(video, img_size, num_frames):
    cfg = PreprocessConfig(img_size=img_size, num_frames=num_frames or 2)
    x = preprocess_video(video, cfg, num_frames)
    assert x.shape == (3, num_frames or len(video), img_size, img_size) and x.dtype == torch.float32
    mean, std = torch.tensor(cfg.mean).view(3, 1, 1, 1), torch.tensor(cfg.std).view(3, 1, 1, 1)
    assert torch.isfinite(x).all()
    assert (x >= -mean / std - 1e-5).all() and (x <= (1 - mean) / std + 1e-5).all()


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 30), st.integers(1, 30)), colour=st.tuples(
    *[st.integers(0, 255)] * 3), img_size=st.sampled_from([8, 16]))
def test_a_flat_colour_stays_that_colour_through_any_resize(shape, colour, img_size):
    video = np.broadcast_to(np.array(colour, np.uint8), (*shape, 3))
    cfg = PreprocessConfig(img_size=img_size, num_frames=shape[0])
    x = preprocess_video(video, cfg)
    expected = (torch.tensor(colour) / 255.0 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    assert torch.allclose(x, expected.view(3, 1, 1, 1).expand_as(x), atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64, np.int16, np.int64, np.uint16, bool]),
       # a frames shape half the time: the dtype alone must be refused then (a bare list is rarely one)
       shape=st.one_of(st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.just(3)),
                       st.lists(st.integers(1, 5), min_size=1, max_size=5)))
def test_anything_but_uint8_frames_is_refused_by_name(dtype, shape):
    with pytest.raises(ValueError, match=f"got dtype {np.dtype(dtype)}"):  # the dtype's words, whatever the shape
        check_video_array(np.zeros(shape, dtype))
    if len(shape) != 4 or shape[-1] != 3:
        with pytest.raises(ValueError, match=r"shape \(T, H, W, 3\)"):
            check_video_array(np.zeros(shape, np.uint8))
