import numpy as np
import pytest
import torch

from jepa_demo.config import PreprocessConfig
from jepa_demo.inference import JEPAModel
from jepa_demo.preprocess import denormalize, preprocess_video, resize_and_crop, sample_frame_indices
from jepa_demo.world import WorldConfig, render_clip
from train.data import WorldBatches


def test_training_and_app_preprocessing_give_identical_tensors(tiny_model, tiny_preprocess):
    """Training batches and what the app/CLI feed the model go through the same function, bit for bit."""
    batches = WorldBatches(tiny_preprocess, batch_size=3, seed=5, rank=0, world_size=1, max_objects=3,
                           detail_prob=0.0, noise_std=0.0)
    batch = batches[4]
    app = JEPAModel(tiny_model, tiny_preprocess, config={}, device="cpu")
    world = WorldConfig(size=tiny_preprocess.img_size, num_frames=tiny_preprocess.num_frames)
    first_seed = 5 * 10_000_019 + 4 * 3
    for i in range(3):
        frames = render_clip(first_seed + i, world).frames
        assert torch.equal(batch[i], app._input(frames, tiny_preprocess.num_frames)[0])


def test_frame_sampling_keeps_one_step_and_repeats_when_short():
    assert sample_frame_indices(32, 16).tolist() == list(range(0, 32, 2))  # one step of 2, not 0, 2, ..., 14, 17, ...
    assert sample_frame_indices(100, 5).tolist() == [1, 25, 49, 73, 97]  # centred steps of 24, not 0, 25, 50, 74, 99
    assert sample_frame_indices(20, 16).tolist() == list(range(2, 18))
    assert sample_frame_indices(16, 1).tolist() == [7]
    assert sample_frame_indices(2, 4).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError):
        sample_frame_indices(0, 4)
    for frames in (0, -3):  # BUG: an empty clip, as if an answer, from the one preprocessing path
        with pytest.raises(ValueError, match=f"num_frames must be at least 1, got {frames}"):
            sample_frame_indices(16, frames)
    with pytest.raises(ValueError, match="num_frames must be an integer, got 2.5"):  # was an IndexError
        sample_frame_indices(16, 2.5)


def test_short_side_resize_then_centre_crop():
    frame = torch.zeros(1, 3, 40, 80)
    frame[:, 0, :, 20:60] = 255  # a red band in the middle 40 columns
    out = resize_and_crop(frame, 32)
    assert out.shape == (1, 3, 32, 32)
    assert out[0, 0].min() > 200  # the centre crop is the red band: no black from the sides
    assert out[0, 0, :, 1:-1].min() > 254  # only the outermost columns are blended by antialiasing


def test_a_strip_too_long_once_resized_is_refused_as_read_video_refuses_its_file():
    """BUG: an array of 2 x 4096 pixels, its short side scaled to V-JEPA 2's 292, was resized whole (the crop comes
    after): 16.8 GB a chunk, and the allocator's error. read_video refuses such a file before decoding it."""
    cfg = PreprocessConfig(img_size=256, num_frames=2, resize=292)
    with pytest.raises(ValueError, match=r"^frames of 4096x2 pixels, their short side scaled to 292, would be over "
                                         r"the limit of 40 million pixels a frame$"):
        preprocess_video(np.zeros((2, 2, 4096, 3), np.uint8), cfg)
    with pytest.raises(ValueError, match="frames of 2x4096 pixels"):  # as high as that is wide
        preprocess_video(np.zeros((2, 4096, 2, 3), np.uint8), cfg)
    # a strip within the limit is the model's square, as read_video reads such a file
    assert preprocess_video(np.zeros((2, 16, 1024, 3), np.uint8), cfg).shape == (3, 2, 256, 256)


def test_a_larger_short_side_crops_the_centre_like_v_jepa_2():
    frame = torch.zeros(1, 3, 64, 64)
    frame[..., 32:] = 255  # right half bright
    out = resize_and_crop(frame, 32, short_side=64)  # no rescale: the central 32 x 32 of the 64 x 64 frame
    assert out.shape == (1, 3, 32, 32)
    assert out[..., :16].max() == 0 and out[..., 16:].min() == 255
    cfg = PreprocessConfig(img_size=32, num_frames=1, resize=64)
    assert cfg.resize_to == 64 and PreprocessConfig(img_size=32, num_frames=1).resize_to == 32
    with pytest.raises(ValueError, match="resize must be between 32"):
        PreprocessConfig(img_size=32, num_frames=1, resize=16)


def test_the_long_side_is_floored_as_transformers_sizes_it():
    """BUG: rounded, an 854 x 480 clip's long side came to 520 at V-JEPA 2's short side of 292 (519.5), where
    transformers' video processor floors it to 519: the crop was taken a pixel right of theirs."""
    frames = torch.rand(1, 3, 480, 854) * 255
    resized = torch.nn.functional.interpolate(frames, size=(292, 519), mode="bilinear", antialias=True,
                                              align_corners=False)
    theirs = resized[..., 18:18 + 256, 131:131 + 256]  # (292 - 256) // 2, (519 - 256) // 2
    assert torch.equal(resize_and_crop(frames, 256, short_side=292), theirs.clamp(0, 255))
    from jepa_demo.video import _resize_short_side

    assert _resize_short_side(np.zeros((480, 854, 3), np.uint8), 292).shape == (292, 519, 3)  # read_clip's size=


def test_a_long_read_only_clip_is_not_copied_whole_for_the_frames_it_samples():
    """BUG: a read-only array (memory-mapped, np.broadcast_to) or a reversed view was copied whole before its frames
    were sampled: 20000 frames of 64 px, 245 MB here, 3.5 GB at 256 px, to embed 16 of them."""
    import tracemalloc

    cfg = PreprocessConfig(img_size=32, num_frames=4)
    clip = render_clip(0, WorldConfig(size=64, num_frames=8)).frames
    long = np.broadcast_to(clip[:1], (20000, *clip.shape[1:]))  # read-only, one frame's memory
    tracemalloc.start()
    try:
        x = preprocess_video(long, cfg, num_frames=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20 and torch.equal(x, preprocess_video(np.repeat(clip[:1], 4, axis=0), cfg))
    for view in (clip[::-1], np.flip(clip, axis=2)):  # negative strides: sampled, or copied when all are used
        assert torch.equal(preprocess_video(view, cfg, num_frames=4), preprocess_video(view.copy(), cfg, num_frames=4))
        assert torch.equal(preprocess_video(view, cfg), preprocess_video(view.copy(), cfg))


def test_output_layout_and_normalisation():
    cfg = PreprocessConfig(img_size=16, num_frames=4)
    video = np.full((10, 24, 30, 3), 128, dtype=np.uint8)
    x = preprocess_video(video, cfg, num_frames=4)
    assert x.shape == (3, 4, 16, 16) and x.dtype == torch.float32
    expected = (128 / 255 - np.array(cfg.mean)) / np.array(cfg.std)
    assert np.allclose(x.mean(dim=(1, 2, 3)).numpy(), expected, atol=1e-5)
    assert np.abs(denormalize(x, cfg).astype(int) - 128).max() <= 1


@pytest.mark.parametrize("bad", [np.zeros((4, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                                 np.zeros((4, 8, 8, 4), np.uint8), np.zeros((0, 8, 8, 3), np.uint8), [1, 2, 3]])
def test_wrong_arrays_are_refused_with_a_message(bad):
    with pytest.raises(ValueError, match="expected"):
        preprocess_video(bad, PreprocessConfig(img_size=16, num_frames=4))
