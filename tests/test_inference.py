import numpy as np
import pytest
import torch

from jepa_demo.inference import surprise_score
from jepa_demo.masks import sample_mask
from jepa_demo.model import latent_error
from jepa_demo.world import WorldConfig, render_clip


@pytest.fixture
def model(tiny_inference):
    return tiny_inference


def _clip(frames=16, size=48, seed=0):
    return render_clip(seed, WorldConfig(size=size, num_frames=frames)).frames


def test_embed_is_one_float_vector_per_clip(model):
    a, b = model.embed(_clip(seed=1)), model.embed(_clip(seed=2))
    assert a.shape == (model.embed_dim,) and a.dtype == np.float32
    assert np.array_equal(a, model.embed(_clip(seed=1))) and not np.allclose(a, b)


@pytest.mark.parametrize("mask", ["multiblock", "tube", "future", "random"])
def test_predict_masked_by_name(model, mask):
    result = model.predict_masked(_clip(), mask=mask, seed=3)
    hidden = int(result.mask.sum())
    assert result.mask.shape == model.cfg.grid
    assert result.predicted.shape == result.target.shape == (hidden, model.embed_dim)
    assert (result.error_map[~result.mask] == 0).all() and (result.error_map[result.mask] > 0).all()
    np.testing.assert_allclose(result.error_map[result.mask], np.abs(result.predicted - result.target).mean(-1),
                               rtol=1e-5)
    assert result.error == pytest.approx(result.error_map[result.mask].mean(), rel=1e-5)
    drawn = sample_mask(mask, model.cfg.grid, torch.Generator().manual_seed(3), num_future=model.default_future_steps)
    assert np.array_equal(result.mask, drawn.numpy())
    assert result.frames.shape == (model.cfg.num_frames, 32, 32, 3) and result.frames.dtype == np.uint8
    again = model.predict_masked(_clip(), mask=mask, seed=3)
    assert np.array_equal(again.mask, result.mask) and np.array_equal(again.error_map, result.error_map)


@pytest.mark.parametrize("mask", ["multiblock", "tube", "random"])
def test_predict_masked_draws_another_mask_for_another_seed(model, mask):
    assert not np.array_equal(model.predict_masked(_clip(), mask=mask, seed=3).mask,
                              model.predict_masked(_clip(), mask=mask, seed=4).mask)


def test_latent_error_is_the_mean_absolute_difference_per_token():
    """Per token, L1 mean 0.75 here, where the MSE would be 1.25, the L2 norm 2.24 and the plain mean 0.25."""
    predicted = torch.tensor([[[2.0, -1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])  # (1, 2, 4)
    target = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])
    assert torch.equal(latent_error(predicted, target), torch.tensor([[0.75, 0.0]]))


def test_predict_masked_with_explicit_masks(model):
    grid = model.cfg.grid
    bool_mask = np.zeros(grid, bool)
    bool_mask[-1, :2] = True
    by_array = model.predict_masked(_clip(), mask=bool_mask)
    flat = np.flatnonzero(bool_mask)
    by_index = model.predict_masked(_clip(), mask=flat)
    assert np.array_equal(by_array.mask, bool_mask) and np.array_equal(by_index.error_map, by_array.error_map)
    with pytest.raises(ValueError, match="mask indices"):
        model.predict_masked(_clip(), mask=np.array([0, 10_000]))
    with pytest.raises(ValueError, match="unknown mask"):
        model.predict_masked(_clip(), mask="spiral")
    backwards = model.predict_masked(_clip(), mask=flat[::-1])  # rows come in grid order whatever the order given
    assert np.array_equal(backwards.predicted, by_index.predicted)
    with pytest.raises(ValueError, match="mask indices must not repeat"):
        model.predict_masked(_clip(), mask=np.array([flat[0], flat[0]]))
    with pytest.raises(ValueError, match="the mask hides no token"):
        model.predict_masked(_clip(), mask=[])
    # BUG: a (t, h, w) 0/1 integer mask was told to be 'an integer index array', which it is
    with pytest.raises(ValueError, match=r"a 1-D integer array of flat token indices, got int64 of shape \("):
        model.predict_masked(_clip(), mask=bool_mask.astype(np.int64))
    assert np.array_equal(model.predict_masked(_clip(), mask=torch.from_numpy(flat)).error_map, by_index.error_map)


def test_predict_masked_refuses_a_seed_or_ratio_that_is_not_a_number(model):
    """BUG: torch's 'manual_seed expected a long' (a TypeError) for a seed of 1.0 or True, Python's for a ratio of
    '0.5': neither a ValueError nor naming the argument."""
    for seed in (1.0, True, "1"):
        with pytest.raises(ValueError, match=f"seed must be an integer, got {seed!r}"):
            model.predict_masked(_clip(), mask="random", seed=seed)
    for seed in (-1, 2**64):  # torch: a RuntimeError naming no argument, or -1 read as 2**64 - 2
        with pytest.raises(ValueError, match=rf"seed must be from 0 to 2\*\*64 - 1, got {seed}"):
            model.predict_masked(_clip(), mask="random", seed=seed)
    assert model.predict_masked(_clip(), mask="random", seed=2**64 - 1).mask.any()
    for ratio in ("0.5", None, float("nan"), 1):
        with pytest.raises(ValueError, match=f"mask ratio must be a number strictly between 0 and 1, got {ratio!r}"):
            model.predict_masked(_clip(), mask="random", ratio=ratio)
    hidden = np.zeros(model.cfg.grid, bool)
    hidden[-1] = True
    for mask in ("multiblock", "future", hidden):  # BUG: ratio=5 or -1 accepted without a word (multiblock hid ~90 %)
        with pytest.raises(ValueError, match="mask ratio must be a number strictly between 0 and 1, got 5"):
            model.predict_masked(_clip(), mask=mask, ratio=5)


def test_torch_default_dtype_float64_changes_no_answer(tiny_checkpoint):
    """BUG: with torch.set_default_dtype(torch.float64) (common in notebooks) preprocessing made float64 input, which
    a model loaded before refused (a Conv3d dtype error), one loaded after was built in float64 and surprise and
    predict_masked failed on float32 errors; a multiblock mask of a seed came out another mask."""
    from jepa_demo.inference import load_model
    from jepa_demo.preprocess import preprocess_video

    clip = _clip(frames=24)
    before = load_model(tiny_checkpoint, device="cpu")
    answers = (before.embed(clip), before.surprise(clip).heatmap, before.predict_masked(clip, seed=3).error_map)
    torch.set_default_dtype(torch.float64)
    try:
        assert preprocess_video(clip, before.preprocess).dtype == torch.float32
        for model in (before, load_model(tiny_checkpoint, device="cpu")):
            again = (model.embed(clip), model.surprise(clip).heatmap, model.predict_masked(clip, seed=3).error_map)
            for answer, same in zip(answers, again):
                assert same.dtype == np.float32 and np.array_equal(answer, same)
    finally:
        torch.set_default_dtype(torch.float32)


def test_reversed_and_mirrored_views_read_as_their_copies(model):
    """np.flip and clip[::-1] are views with negative strides, which torch cannot share."""
    clip = _clip()
    for view in (clip[::-1], np.flip(clip, axis=2)):
        assert np.array_equal(model.embed(view), model.embed(view.copy()))
        assert np.array_equal(model.predict_masked(view).error_map, model.predict_masked(view.copy()).error_map)


def test_a_model_built_in_memory_must_fit_its_preprocessing(tiny_model):
    from jepa_demo.config import PreprocessConfig
    from jepa_demo.inference import JEPAModel

    with pytest.raises(ValueError, match="makes clips of 4 frames of 64 px, but the model takes 4 frames of 32 px"):
        JEPAModel(tiny_model, PreprocessConfig(img_size=64, num_frames=4), {}, "cpu")


def test_a_model_built_in_memory_describes_itself_and_refuses_bad_frame_counts(tiny_model):
    """BUG: info() read config.json's entries, a KeyError for a model built in memory; shown_frames took 0, 8.0 or
    -1 frames and a chunk of 0 to torch's and NumPy's errors."""
    from jepa_demo.config import PreprocessConfig
    from jepa_demo.inference import JEPAModel

    model = JEPAModel(tiny_model, PreprocessConfig(img_size=32, num_frames=4), {}, "cpu")
    info = model.info()
    assert info["model"]["dim"] == tiny_model.cfg.dim and info["preprocess"]["img_size"] == 32
    video = np.zeros((6, 32, 32, 3), np.uint8)
    assert model.shown_frames(video, num_frames=4, chunk=3).shape == (4, 32, 32, 3)
    for kwargs, message in (({"num_frames": 0}, "num_frames must be"), ({"num_frames": 8.0}, "num_frames must be"),
                            ({"num_frames": -1}, "num_frames must be"), ({"chunk": 0}, "chunk must be")):
        with pytest.raises(ValueError, match=message):
            model.shown_frames(video, **kwargs)


def test_a_device_that_is_not_there_is_named(tiny_checkpoint):
    from jepa_demo.inference import load_model

    missing = ("cuda", "torch sees no CUDA GPU here") if not torch.cuda.is_available() else (
        f"cuda:{torch.cuda.device_count()}", f"torch sees {torch.cuda.device_count()} CUDA GPU")
    for device, message in (missing, ("gpu", "Expected one of cpu, cuda")):
        with pytest.raises(ValueError, match=f"device '{device}': {message}"):
            load_model(tiny_checkpoint, device=device)


def test_visible_latents_never_see_the_hidden_frames(model):
    """A baseline's guess may use only what is visible: the whole clip's targets of visible tokens have attended to
    the hidden ones, the visible latents must not have."""
    clip = _clip()
    hidden = model.predict_masked(clip, mask="future").mask
    changed = clip.copy()
    changed[8:] = 255 - changed[8:]  # the tiny model's 4 frames form 2 steps: the second half is the hidden one
    a, b = model.visible_latents(clip, hidden), model.visible_latents(changed, hidden)
    assert a.shape == (*model.cfg.grid, model.embed_dim)
    assert np.isnan(a[hidden]).all() and np.isfinite(a[~hidden]).all()
    assert np.array_equal(a[~hidden], b[~hidden])
    whole_clip = model.target_latents(clip), model.target_latents(changed)
    assert not np.allclose(whole_clip[0][~hidden], whole_clip[1][~hidden])
    flipped = hidden[::-1]  # a view with negative strides, which torch.from_numpy refuses
    assert np.array_equal(np.isnan(model.visible_latents(clip, flipped)[..., 0]), flipped)
    for wrong in (hidden.transpose(), hidden.astype(np.int64), hidden.reshape(-1)):  # same size, another layout
        with pytest.raises(ValueError, match="bool array of the token grid's shape"):
            model.visible_latents(clip, wrong)


def test_surprise_shapes_and_frame_positions(model):
    result = model.surprise(_clip(frames=12))
    steps, window = 12 // model.cfg.tubelet, model.cfg.grid[0]
    first_predicted = window - 1  # tiny grid has 2 steps per window; one is predicted
    assert result.per_step.shape == (steps - first_predicted,)
    assert result.heatmap.shape == (steps - first_predicted, *model.cfg.grid[1:])
    assert result.step_frames.tolist() == list(range(first_predicted * 2, 12, 2))
    assert result.score == pytest.approx(result.per_step.max() - result.per_step.min())
    assert np.allclose(result.heatmap.mean(axis=(1, 2)), result.per_step, atol=1e-6)


def test_surprise_averages_each_step_over_the_windows_that_predict_it():
    """A 4-step window predicting its last 2: each inner step is predicted by two windows (one and two steps ahead),
    the first and last reported steps by one. Checked against the windows' errors, averaged by hand."""
    import dataclasses

    import torch

    from jepa_demo.config import PreprocessConfig, model_config_from_preset
    from jepa_demo.inference import JEPAModel
    from jepa_demo.masks import mask_to_indices
    from jepa_demo.model import VideoJEPA

    torch.manual_seed(0)
    cfg = dataclasses.replace(model_config_from_preset("tiny"), num_frames=8)  # grid (4, 4, 4)
    model = JEPAModel(VideoJEPA(cfg), PreprocessConfig(img_size=32, num_frames=8), {"train": {"future_steps": 2}},
                      device="cpu")
    result = model.surprise(_clip(frames=16))  # 8 steps: windows start at 0..4, steps 2..7 reported
    hidden = torch.zeros(cfg.grid, dtype=torch.bool)
    hidden[2:] = True
    context_idx, target_idx = mask_to_indices(hidden)
    x, _ = model._surprise_input(_clip(frames=16), None)
    with torch.no_grad():
        errors = model._window_errors(x, list(range(5)), context_idx, target_idx)  # (window, ahead, h, w)
    for step in range(2, 8):
        by_hand = [errors[w, f] for w in range(5) for f in range(2) if w + 2 + f == step]
        assert len(by_hand) == (1 if step in (2, 7) else 2)
        assert np.allclose(result.heatmap[step - 2], torch.stack(by_hand).mean(0).numpy(), atol=1e-6), step


def test_surprise_thins_a_long_clip_to_one_frame_in_k(model):
    """20 frames for a model that reads at most 16: every second frame (0, 2, ..., 18), never a mix of steps."""
    result = model.surprise(_clip(frames=20))
    assert model.frames_wanted == 16 and set(np.diff(result.step_frames)) == {2 * model.cfg.tubelet}
    # every frame the model reads, not only the first of each tubelet (steps mixed inside one would pass the above)
    _, frames_read = model._surprise_input(_clip(frames=20), None)
    assert frames_read.tolist() == list(range(0, 20, 2))


def test_surprise_score_is_the_peak_above_the_calmest_step():
    calm = np.array([0.2, 0.2, 0.2, 0.2])
    spike = np.array([0.2, 0.2, 0.9, 0.2])
    assert surprise_score(calm) == 0.0
    assert surprise_score(spike) == pytest.approx(0.7)
    # a busier clip (every step's error higher by the same amount) is not more surprising
    assert surprise_score(calm + 0.5) == pytest.approx(0.0) and surprise_score(spike + 0.5) == pytest.approx(0.7)


def test_surprise_only_looks_backwards(model):
    """Changing the end of a clip must not change the surprise of earlier steps (no peeking at the future). One step
    ahead: with more, a step's target is encoded with the hidden steps after it (see `surprise`)."""
    clip = _clip(frames=12)
    changed = clip.copy()
    changed[8:] = 255 - changed[8:]
    a, b = model.surprise(clip, future_steps=1), model.surprise(changed, future_steps=1)
    before = a.step_frames < 8
    assert np.array_equal(a.per_step[before], b.per_step[before])
    assert not np.allclose(a.per_step[~before], b.per_step[~before])


def test_surprise_thins_long_clips_and_refuses_short_ones(model):
    result = model.surprise(_clip(frames=200), max_frames=20)
    # one frame in 10 kept (frames 0, 10, ..., 190: 10 steps of 2), every step after the first scored; the first
    # 20 frames alone would give steps at frames 2, 4, ..., 18
    assert result.step_frames.tolist() == list(range(20, 200, 20)) and len(result.per_step) == 9
    # BUG: a clip of exactly one window was scored: its steps differ only in how far ahead they are predicted (with
    # one step predicted, as here, a single step and a score of 0 for every clip)
    why = r"the model's 4-frame window and 2 more, so that two steps are predicted from every distance ahead"
    for frames in (3, 4, 5):
        with pytest.raises(ValueError, match=rf"at least 6 frames \({why}\), got {frames}"):
            model.surprise(_clip(frames=frames))
    assert len(model.surprise(_clip(frames=6)).per_step) == 2
    with pytest.raises(ValueError, match=rf"max_frames must be at least 6 \({why}\), got 5"):
        model.surprise(_clip(frames=200), max_frames=5)
    thinned = (r"at least 6 frames .*, got 9 \(one in 2 kept to stay within max_frames=6: 5 left; max_frames=9 "
               r"keeps every frame\)")
    with pytest.raises(ValueError, match=thinned):
        model.surprise(_clip(frames=9), max_frames=6)
    for future_steps in (0, model.cfg.grid[0]):  # a window must keep one step to predict from
        with pytest.raises(ValueError, match=f"future_steps must be between 1 and {model.cfg.grid[0] - 1}"):
            model.surprise(_clip(), future_steps=future_steps)
    for name, wrong in (("future_steps", 1.0), ("future_steps", True), ("batch_size", 2.5),
                        ("max_frames", 20.0), ("max_frames", "64")):  # BUG: the last two, accepted and a TypeError
        with pytest.raises(ValueError, match=f"{name} must be an integer"):
            model.surprise(_clip(), **{name: wrong})
    for batch_size in (0, -1):
        with pytest.raises(ValueError, match="batch_size must be at least 1"):
            model.surprise(_clip(), batch_size=batch_size)
    assert len(model.surprise(_clip(), future_steps=np.int64(1)).per_step)  # NumPy's integers are integers


def test_surprise_needs_two_steps_predicted_from_every_distance(tiny_preprocess):
    """With two steps predicted per window, two positions of it were not enough: the reported steps were one step
    ahead, a mix, and two steps ahead, so the score was still mostly their difference. A window of 4 steps (8 frames)
    predicting 2 needs 2 more steps: steps 2 to 5 reported, 3 and 4 each from both distances."""
    import dataclasses

    from jepa_demo.config import model_config_from_preset
    from jepa_demo.inference import JEPAModel
    from jepa_demo.model import VideoJEPA

    torch.manual_seed(0)
    model = JEPAModel(VideoJEPA(model_config_from_preset("tiny", num_frames=8)),
                      dataclasses.replace(tiny_preprocess, num_frames=8), {"model": {}, "preprocess": {}}, "cpu")
    assert model.default_future_steps == 2 and model.surprise_frames() == 12 and model.surprise_frames(1) == 10
    for frames in (8, 10):  # one window; two windows
        with pytest.raises(ValueError, match=rf"at least 12 frames .*, got {frames}"):
            model.surprise(_clip(frames=frames))
    assert model.surprise(_clip(frames=12)).step_frames.tolist() == [4, 6, 8, 10]
    assert len(model.surprise(_clip(frames=10), future_steps=1).per_step) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_clip_on_the_gpu_works_like_the_same_clip_on_the_cpu(model):
    clip = _clip(frames=12)
    on_gpu = torch.from_numpy(clip).cuda()
    assert np.array_equal(model.shown_frames(on_gpu), model.shown_frames(clip))
    assert np.array_equal(model.surprise(on_gpu).per_step, model.surprise(clip).per_step)


def test_one_model_input_is_preprocessed_a_few_frames_at_a_time(model, monkeypatch):
    """BUG: embed, predict_masked and the latents turned every picked frame to float32 at the file's size at once (a
    4K clip's 64 frames for V-JEPA 2: 6 GB), where surprise works 8 frames at a time; the input is the same either
    way."""
    import jepa_demo.inference as inference
    from jepa_demo.preprocess import preprocess_video

    video = np.random.default_rng(0).integers(0, 256, (40, 48, 40, 3), dtype=np.uint8)
    chunks = []
    monkeypatch.setattr(inference, "preprocess_video", lambda frames, cfg: chunks.append(len(frames)) or
                        preprocess_video(frames, cfg))
    x = model._input(video, 20)
    assert chunks == [8, 8, 4]
    assert torch.equal(x[0], preprocess_video(video, model.preprocess, 20))
