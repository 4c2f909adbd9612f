"""The views' computations on a tiny random model and real files (no Gradio): limits, shapes, consistency."""

import dataclasses
import os
import time

import numpy as np
import pytest
import torch

from jepa_demo import read_video, write_video
from jepa_demo.checkpoint import save_checkpoint
from jepa_demo.explore import CURVE_COLOURS, MAX_MEGABYTES, ClipError, Explorer, _strip, load_clip, steps_to_show
from jepa_demo.gallery import gallery_clip, nearest
from jepa_demo.inference import JEPAModel, load_model
from jepa_demo.masks import sample_mask
from jepa_demo.video import read_clip
from jepa_demo.views import (
    decode_nearest,
    filmstrip_indices,
    latent_pca_images,
    paste_patches,
    shade_hidden,
    surprise_overlay,
    upsample_tokens,
)
from jepa_demo.world import WorldConfig, make_pair


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    from jepa_demo.config import PreprocessConfig, model_config_from_preset
    from jepa_demo.model import VideoJEPA

    torch.manual_seed(0)
    cfg = model_config_from_preset("tiny")
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(VideoJEPA(cfg), folder, PreprocessConfig(img_size=cfg.img_size, num_frames=cfg.num_frames), 1)
    return Explorer(load_model(folder, device="cpu"), cache_dir=tmp_path_factory.mktemp("cache"), num_clips=40)


def _appear_clip(num_frames: int = 24) -> np.ndarray:
    return make_pair(3, "appear", WorldConfig(size=64, num_frames=num_frames))[1].frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "appear.mp4"
    write_video(path, _appear_clip())
    return load_clip(path).frames


def test_load_clip_refuses_what_it_cannot_or_should_not_decode(tmp_path):
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as f:
        f.truncate((MAX_MEGABYTES + 1) * 2**20)  # sparse: no real disk use
    with pytest.raises(ClipError, match=f"limit is {MAX_MEGABYTES} MB"):
        load_clip(huge)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ClipError, match=r"^notes\.mp4: not a readable video"):
        load_clip(text)


def test_a_clip_just_over_the_limit_is_not_told_it_lasts_the_limit(tmp_path):
    """BUG: a 60.3-second clip was refused with 'the clip lasts 60 s; the limit is 60 s'."""
    write_video(tmp_path / "phone.mp4", np.zeros((181, 16, 16, 3), np.uint8), fps=3)  # 60.33 s
    with pytest.raises(ClipError, match=r"the clip lasts 60\.3 s; the limit is 60 s"):
        load_clip(tmp_path / "phone.mp4")
    # BUG: one frame over at 30 fps, 60.03 s, read 'the clip lasts 60.0 s; the limit is 60 s'
    write_video(tmp_path / "trim.mp4", np.zeros((1801, 16, 16, 3), np.uint8), fps=30)
    with pytest.raises(ClipError, match=r"the clip lasts 60\.03 s; the limit is 60 s"):
        load_clip(tmp_path / "trim.mp4")


def test_load_clip_keeps_every_kth_frame_of_a_long_clip(tmp_path):
    """At most 64 frames, evenly timed: 100 frames give every second one (spreading 64 over them would mix steps of
    one and two frames, and surprise would see objects speed up and slow down)."""
    frames = np.zeros((100, 32, 48, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(100)[:, None, None] * 2  # frame i is red 2i
    write_video(tmp_path / "ramp.mp4", frames, fps=25)
    video, source_frames = load_clip(tmp_path / "ramp.mp4")
    assert source_frames.tolist() == list(range(0, 100, 2))
    assert video.shape[0] == 50 and min(video.shape[1:3]) == 128
    red = video[:, 64, 96, 0].astype(int)
    assert red[0] < 10 and red[-1] > 185 and (np.diff(red) >= -3).all()  # first to last, in order


def test_load_clip_decodes_a_file_again_only_once_it_has_changed(tmp_path, monkeypatch):
    import jepa_demo.explore as explore_module

    decoded = []

    def counted_read_clip(path, *args, **kwargs):
        decoded.append(path)
        return read_clip(path, *args, **kwargs)

    monkeypatch.setattr(explore_module, "read_clip", counted_read_clip)
    path = tmp_path / "upload.mp4"
    write_video(path, _appear_clip())
    first = load_clip(path)
    assert load_clip(path) is first and len(decoded) == 1  # unchanged: not decoded twice
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes, newer
    assert len(load_clip(path).frames) == 24 and len(decoded) == 2
    write_video(path, _appear_clip(num_frames=12))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # another size alone must tell it apart
    assert len(load_clip(path).frames) == 12 and len(decoded) == 3


def test_a_refused_upload_is_remembered_not_decoded_again_by_every_view(tmp_path, monkeypatch):
    """A file that runs out of the decoding time spent it again at each of the four views (and, its packet scan kept,
    might get further and answer the next time)."""
    import jepa_demo.explore as explore_module
    from jepa_demo.video import DecodingTimedOut

    tries = []

    def out_of_time(path, *args, **kwargs):
        tries.append(path)
        assert kwargs["timeout"] == explore_module.DECODE_TIMEOUT  # the app's decoding has a deadline
        raise DecodingTimedOut(f"{path.name}: gave up after 30 s of reading; try a shorter or smaller clip")

    monkeypatch.setattr(explore_module, "read_clip", out_of_time)
    path = tmp_path / "slow.mp4"
    write_video(path, _appear_clip())
    for _ in range(4):
        with pytest.raises(ClipError, match="^slow.mp4: gave up after 30 s of reading"):
            load_clip(path)
    # nor by the views that read one model input (BUG: each kind of decoding spent the time once)
    with pytest.raises(ClipError, match="^slow.mp4: gave up after 30 s of reading"):
        load_clip(path, max_frames=16, exactly=True)
    assert tries == [path]


def test_a_clip_damaged_where_one_decoding_reads_is_refused_to_that_decoding_only(tmp_path, monkeypatch):
    """BUG: surprise's decoding, which reads to the end, met damage near it; from then on the other views, whose
    decoding reads fewer frames and had just answered, were refused the upload too."""
    import jepa_demo.explore as explore_module
    from jepa_demo.video import VideoError

    tries, real = [], explore_module.read_clip

    def damaged_near_the_end(path, max_frames, size, **kwargs):
        tries.append(max_frames)
        if max_frames == explore_module.MAX_FRAMES:
            raise VideoError(f"{path.name}: damaged video (reading failed after 56 frames: Invalid data)")
        return real(path, max_frames, size, **kwargs)

    monkeypatch.setattr(explore_module, "read_clip", damaged_near_the_end)
    path = tmp_path / "damaged.mp4"
    write_video(path, _appear_clip())
    assert len(load_clip(path, max_frames=16, exactly=True).frames) == 16
    for _ in range(2):  # remembered for that decoding: not tried again
        with pytest.raises(ClipError, match="^damaged.mp4: damaged video"):
            load_clip(path)
    assert len(load_clip(path, max_frames=16, exactly=True).frames) == 16
    assert tries == [16, explore_module.MAX_FRAMES]  # the second 16-frame decoding came from the memory of decodings


def test_masked_view(explorer, clip):
    view = explorer.masked(clip, "random", ratio=0.5, seed=1)
    images = [view.hidden, view.error, view.predicted_pca, view.target_pca, view.decoded]
    assert all(image.dtype == np.uint8 and image.shape == view.hidden.shape for image in images)
    assert view.numbers["hidden_tokens"] == view.numbers["total_tokens"] // 2
    assert (view.numbers["seed"], view.numbers["ratio"]) == (1, 0.5)  # what drew the hidden tokens
    assert "ratio" not in explorer.masked(clip, "multiblock").numbers
    assert "seed" not in explorer.masked(clip, "future").numbers  # nothing random in it
    result = explorer.model.predict_masked(clip, mask="random", ratio=0.5, seed=1)
    guess = explorer.model.target_latents(clip)[~result.mask].mean(axis=0)  # the whole clip's visible targets
    assert view.numbers["error"] == pytest.approx(result.error)
    assert view.numbers["mean_latent_baseline_error"] == pytest.approx(float(np.abs(result.target - guess).mean()))
    again = explorer.masked(clip, "random", ratio=0.5, seed=1)
    assert np.array_equal(again.error, view.error)  # same clip and seed, same picture
    # the error is drawn at the hidden tokens only: visible ones show the frames as they are
    cfg = explorer.model.cfg
    hidden = _strip(upsample_tokens(np.repeat(result.mask[..., None], 3, -1), cfg.patch_size, cfg.tubelet))
    frames = _strip(result.frames)
    assert np.array_equal(view.error[hidden == 0], frames[hidden == 0])
    assert not np.array_equal(view.error[hidden == 1], frames[hidden == 1])


def test_masked_view_checks_seed_and_ratio_as_predict_masked_does(explorer, clip):
    """BUG: the view turned them into numbers first: seed 1.7 drew seed 1's mask, '3' and True were taken, and a
    ratio of None (which multiblock does not use) was a TypeError."""
    for seed in (1.7, "3", True):
        with pytest.raises(ValueError, match=f"seed must be an integer, got {seed!r}"):
            explorer.masked(clip, mask="random", seed=seed)
    assert explorer.masked(clip, mask="multiblock", ratio=None, seed=2).numbers["seed"] == 2


def test_masked_view_pictures_are_those_of_the_models_prediction(explorer, clip):
    view = explorer.masked(clip, "random", ratio=0.5, seed=1)
    result = explorer.model.predict_masked(clip, mask="random", ratio=0.5, seed=1)
    cfg = explorer.model.cfg
    drawn = torch.Generator().manual_seed(1)
    assert np.array_equal(result.mask, sample_mask("random", cfg.grid, drawn, ratio=0.5).numpy())
    pred_rgb, target_rgb = latent_pca_images(result.predicted, result.target, result.mask)

    def pasted(latents):
        decoded = decode_nearest(explorer.bank, latents)
        return _strip(paste_patches(result.frames, result.mask, decoded, cfg.patch_size, cfg.tubelet))

    assert np.array_equal(view.hidden, _strip(shade_hidden(result.frames, result.mask, cfg.patch_size, cfg.tubelet)))
    assert np.array_equal(view.predicted_pca, _strip(upsample_tokens(pred_rgb, cfg.patch_size, cfg.tubelet)))
    assert np.array_equal(view.target_pca, _strip(upsample_tokens(target_rgb, cfg.patch_size, cfg.tubelet)))
    assert np.array_equal(view.decoded, pasted(result.predicted))
    assert not np.array_equal(view.decoded, pasted(result.target))  # the prediction is decoded, not the answer
    assert not np.array_equal(explorer.masked(clip, "random", ratio=0.5, seed=2).hidden, view.hidden)


@pytest.mark.parametrize("length", [24, 3])  # 3: shorter than the tiny model's 4 frames, one of which repeats
def test_masked_view_says_which_frames_of_the_file_the_model_read_and_the_strips_show(explorer, clip, length):
    clip = clip[:length]
    assert (length < explorer.model.cfg.num_frames) == (length == 3)  # else the short case tests nothing
    in_file = 3 * np.arange(len(clip)) + 1  # a long upload, thinned: frame i of the clip is the file's frame 3i + 1
    numbers = explorer.masked(clip, "random", ratio=0.5, seed=1, source_frames=in_file).numbers
    read = (np.array(numbers["model_frames"]) - 1) // 3  # back to the clip's own frames
    assert len(set(read.tolist())) == min(length, len(read))  # each frame read once, or repeated in a short clip
    # those are the frames the model's prediction was made from
    model = explorer.model
    frames = model.predict_masked(clip, mask="random", ratio=0.5, seed=1).frames
    assert len(read) == model.cfg.num_frames and np.array_equal(model.shown_frames(clip[read]), frames)
    assert numbers["frames_shown"] == [numbers["model_frames"][i] for i in filmstrip_indices(len(read))]
    assert explorer.masked(clip, "random", ratio=0.5, seed=1).numbers["model_frames"] == read.tolist()
    # BUG: a short clip's repeated frames were seen only as repeats in model_frames
    assert numbers.get("note") == (None if length == 24 else "the model reads 3 different frames of the clip, fewer "
                                   "than its 4: frames repeat to fill its input, so it sees a slowed-down clip")


def test_the_short_clip_note_reaches_the_app_whose_upload_comes_filled_to_the_models_length(explorer, clip, tmp_path):
    """BUG: the app loads an upload as one model input (exactly=True), its frames already repeated to the model's
    length: the note, decided on the length of that input, never appeared."""
    write_video(tmp_path / "short.mp4", clip[:3])
    loaded = explorer.load(tmp_path / "short.mp4", "masked")
    assert len(loaded.frames) == explorer.model.cfg.num_frames
    numbers = explorer.masked(loaded.frames, "future", source_frames=loaded.source_frames).numbers
    assert numbers["note"].startswith("the model reads 3 different frames of the clip, fewer than its 4")


def test_views_that_read_one_model_input_read_the_frames_the_cli_and_read_video_read(explorer, tmp_path):
    """BUG: the app thinned an upload to at most 64 frames first and the model sampled its input from what was left,
    so the neighbours and the map embedded other frames than `python -m jepa_demo embed` and
    `model.embed(read_video(path))` (of 130, file frames 18 to 108 instead of 4 to 124 for 16 frames)."""
    from jepa_demo.cli import read_for

    frames = np.zeros((130, 128, 128, 3), np.uint8)  # larger than the model's input: read as the CLI reads it
    frames[..., 0] = np.arange(130)[:, None, None]  # frame i is red i: which frames were read shows in the embedding
    frames[:, :64, :, 1] = (np.arange(130) * 7 % 256)[:, None, None]
    path = tmp_path / "long.mp4"
    write_video(path, frames, fps=25)
    model = explorer.model
    loaded = explorer.load(path, "neighbors")
    picked = read_for(model, path, "embed")
    assert np.array_equal(loaded.source_frames, picked.source_frames)
    # BUG: decoded at 128 pixels and resized again by the model, so the app's input was not the CLI's (blurred twice)
    assert np.array_equal(loaded.frames, picked.frames)
    assert explorer.load(path, "map") is loaded and explorer.load(path, "masked") is loaded
    assert len(explorer.load(path, "surprise").frames) == 44  # surprise slides over the thinned clip, one in 3
    with pytest.raises(ValueError, match="unknown view 'surprize': one of masked, neighbors, map, surprise"):
        explorer.load(path, "surprize")  # it read one model input, as for any name but "surprise"
    expected = nearest(explorer.gallery, model.embed(read_video(path, size=model.preprocess.resize_to)), k=3)
    hits = explorer.neighbors(loaded.frames, k=3)
    assert [h["index"] for h in hits] == [i for i, _ in expected]
    assert [h["similarity"] for h in hits] == pytest.approx([sim for _, sim in expected], abs=1e-5)
    shown = explorer.masked(loaded.frames, "random", seed=1, source_frames=loaded.source_frames).numbers
    assert shown["model_frames"] == loaded.source_frames.tolist()


def test_neighbors_have_playable_thumbnails(explorer, clip):
    hits = explorer.neighbors(clip, k=3)
    assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)
    first = hits[0]["thumbnail"]
    assert first.suffix == ".gif" and read_video(first).shape[0] == explorer.model.cfg.num_frames
    written = first.stat().st_mtime_ns
    assert explorer.neighbors(clip, k=3)[0]["thumbnail"].stat().st_mtime_ns == written  # rendered once
    assert not list(first.parent.glob(".*"))  # no temporaries left


def test_neighbors_are_the_gallerys_nearest_to_the_clips_embedding(explorer, clip):
    hits = explorer.neighbors(clip, k=3)
    found = nearest(explorer.gallery, explorer.model.embed(clip), k=3)
    assert [(h["index"], h["similarity"]) for h in hits] == found
    assert [h["labels"] for h in hits] == [explorer.gallery.labels[i] for i, _ in found]
    # a gallery clip given back is its own nearest, at similarity 1 (measured from the gallery's mean)
    itself = explorer.neighbors(gallery_clip(explorer.gallery, 7, explorer.model), k=3)[0]
    assert itself["index"] == 7 and itself["similarity"] == pytest.approx(1.0, abs=1e-4)


def test_embedding_map(explorer, clip):
    figure, point = explorer.embedding_map(clip, "num_objects")
    star = figure.data[-1]
    assert np.isfinite(point).all() and star.name == "your clip" and (star.x[0], star.y[0]) == tuple(point)
    assert sum(len(trace.x) for trace in figure.data[:-1]) == len(explorer.gallery.coords)  # every gallery clip
    with pytest.raises(ValueError, match="choose one of"):
        explorer.embedding_map(clip, "no_such_label")


def test_surprise_view_marks_exactly_the_steps_above_the_threshold(explorer, clip, monkeypatch):
    # The tiny random model's calibrated threshold is above every step of this clip: a threshold at its median puts
    # steps on both sides, so the marking is really tested.
    median = float(np.median(explorer.model.surprise(clip, max_frames=len(clip)).per_step))  # all, as the view reads
    monkeypatch.setattr(type(explorer), "threshold", property(lambda self: median))
    view = explorer.surprise(clip)
    numbers = view.numbers
    above = [f for f, v in zip(numbers["step_frames"], numbers["per_step"]) if v > numbers["threshold"]]
    assert above and len(above) < len(numbers["per_step"])
    assert numbers["frames_above_threshold"] == above
    marked = [list(trace.x) for trace in view.figure.data if trace.name.endswith("above threshold")]
    assert marked == [above]  # the plot marks the same moments
    assert numbers["peak_frame"] == numbers["step_frames"][int(np.argmax(numbers["per_step"]))]
    assert view.overlay.ndim == 3 and view.overlay.dtype == np.uint8
    assert numbers["peak_frame"] in numbers["heatmap_frames"]


def test_the_heatmap_strip_shows_the_listed_steps_coloured_on_the_whole_clips_scale(explorer, clip, monkeypatch):
    """The strip's pictures are the heatmaps of `heatmap_frames`' steps (the peak's among them, though spreading alone
    would leave it out), coloured so that yellow is the largest error of the whole clip, shown or not."""
    model = explorer.model
    real = model.surprise(clip, max_frames=len(clip))
    steps = len(real.per_step)
    assert steps > 10
    peak = next(step for step in range(1, steps) if step not in steps_to_show(steps, peak=0))  # spread leaves it out
    hottest = next(step for step in range(steps) if step not in steps_to_show(steps, peak))
    heatmap = np.full_like(real.heatmap, 0.1)
    heatmap[peak] = 0.5  # the highest mean: the curve's peak
    heatmap[hottest, 0, 0] = 4.0  # the clip's hottest token, in a step the strip leaves out
    crafted = dataclasses.replace(real, heatmap=heatmap, per_step=heatmap.mean(axis=(1, 2)))
    assert crafted.peak_step == peak
    monkeypatch.setattr(model, "surprise", lambda *a, **k: crafted)
    view = explorer.surprise(clip)
    shown = [real.step_frames.tolist().index(frame) for frame in view.numbers["heatmap_frames"]]
    assert peak in shown and hottest not in shown
    expected = surprise_overlay(model.shown_frames(clip), heatmap[shown], real.step_frames[shown],
                                model.cfg.patch_size, vmax=4.0)
    assert np.array_equal(view.overlay, _strip(expected, 10))


@pytest.mark.parametrize("count", [1, 5, 10, 11, 12, 24])
def test_the_heatmap_strip_spreads_its_steps_over_the_clip_and_always_shows_the_peak(count):
    for peak in range(count):
        shown = steps_to_show(count, peak)
        assert peak in shown and len(shown) == min(10, count) and (np.diff(shown) > 0).all()
        assert shown[0] in (0, peak) and shown[-1] in (count - 1, peak)  # both ends, but for the peak
    assert steps_to_show(12, 3).tolist() == [0, 1, 3, 4, 5, 6, 7, 9, 10, 11]  # spread alone: 0, 1, 2, 4, ... left out 3
    # BUG: 8 of the 10 steps of a 32-frame example (frames 12 to 30) left out frames 16 and 26: the violation's frame
    assert steps_to_show(10, 7).tolist() == list(range(10))


def test_surprise_view_of_a_sampled_upload_names_the_files_frames(explorer, tmp_path):
    long_clip = make_pair(4, "teleport", WorldConfig(size=64, num_frames=200))[1].frames
    write_video(tmp_path / "long.mp4", long_clip, fps=25)
    frames, source_frames = load_clip(tmp_path / "long.mp4")
    assert len(frames) == 50 and set(np.diff(source_frames)) == {4} and source_frames[-1] == 196
    sampled, in_file = explorer.surprise(frames).numbers, explorer.surprise(frames, source_frames).numbers
    assert in_file["per_step"] == sampled["per_step"]  # the same computation, only the frame numbers differ
    assert in_file["step_frames"] == [int(source_frames[i]) for i in sampled["step_frames"]]
    assert in_file["peak_frame"] == int(source_frames[sampled["peak_frame"]]) and in_file["step_frames"][-1] > 150


def _with_pixel_baseline(explorer, num_frames: int, resize: int = 0) -> Explorer:
    """The explorer's model beside a tiny random pixel baseline whose window is `num_frames` frames (and which reads
    clips at short side `resize`, when given)."""
    from jepa_demo.config import model_config_from_preset
    from jepa_demo.inference import JEPAModel
    from jepa_demo.model import VideoJEPA

    torch.manual_seed(1)
    pixel = JEPAModel(VideoJEPA(model_config_from_preset("tiny", objective="pixel", num_frames=num_frames)),
                      dataclasses.replace(explorer.model.preprocess, num_frames=num_frames, resize=resize),
                      {"model": {}, "preprocess": {}}, "cpu")
    return Explorer(explorer.model, cache_dir=explorer.cache_dir, num_clips=40, baseline=pixel)


def test_surprise_view_draws_the_pixel_baseline_beside_the_model_on_a_common_scale(explorer, clip):
    compared = _with_pixel_baseline(explorer, explorer.model.cfg.num_frames)
    view = compared.surprise(clip)
    baseline = view.numbers["baseline"]
    assert baseline["objective"] == "pixel" and baseline["threshold"] == compared.baseline_threshold > 0
    assert baseline["step_frames"] == view.numbers["step_frames"]  # both curves on the clip's frame axis
    curves = {trace.name: np.asarray(trace.y) for trace in view.figure.data if trace.mode == "lines"}
    assert set(curves) >= {"JEPA (latent error)", "pixel baseline (pixel error)"}
    np.testing.assert_allclose(curves["pixel baseline (pixel error)"],
                               np.array(baseline["per_step"]) / baseline["threshold"], rtol=1e-6)
    np.testing.assert_allclose(curves["JEPA (latent error)"],
                               np.array(view.numbers["per_step"]) / view.numbers["threshold"], rtol=1e-6)
    colours = {trace.name: trace.line.color for trace in view.figure.data if trace.mode == "lines"}
    assert colours["pixel baseline (pixel error)"] == CURVE_COLOURS["pixel baseline (pixel error)"] != \
        colours["JEPA (latent error)"]  # as when the pixel baseline's own curve is drawn alone
    assert "baseline" not in explorer.surprise(clip).numbers
    # BUG: a baseline of the model's own objective (the Explorer takes any second model) replaced the model's curve
    twin = Explorer(explorer.model, cache_dir=explorer.cache_dir, num_clips=40, baseline=explorer.model).surprise(clip)
    lines = [trace.name for trace in twin.figure.data if trace.mode == "lines"]
    assert lines[:2] == ["JEPA (latent error)", "baseline: JEPA (latent error)"] and lines[2].startswith("threshold")
    # A baseline whose window is longer than the clip: the model's curve still comes, with a note for the baseline's
    short = _with_pixel_baseline(explorer, 32).surprise(clip)
    assert short.numbers["baseline"] == ("no pixel baseline curve: surprise needs a clip of at least 36 frames (the "
                                         "model's 32-frame window and 4 more, so that two steps are predicted from "
                                         "every distance ahead), got 24")
    names = {trace.name for trace in short.figure.data}
    assert "JEPA (latent error)" in names and "pixel baseline (pixel error)" not in names
    # Both read every frame of the clip (the app thinned an upload already): steps of 2 frames, 2 apart, to its end.
    # BUG: each model's own limit (4 of its clips: 16 frames here) thinned the clip again, to one frame in two, and a
    # baseline needing more than that limit (20 frames for a 16-frame window) was refused a 24-frame clip
    for window in (8, 16):
        both = _with_pixel_baseline(explorer, window).surprise(clip).numbers
        assert isinstance(both["baseline"], dict), both["baseline"]
        for steps in (both["step_frames"], both["baseline"]["step_frames"]):
            assert set(np.diff(steps)) == {2} and steps[-1] == len(clip) - 2


def test_the_pixel_baseline_reads_an_upload_at_its_own_size(explorer, tmp_path):
    """BUG: the baseline resized the model's decoding of an upload (blurred twice), not the file at its own size as
    the CLI and its calibration read clips: its score moved 15 % for a 480p clip under a 128-pixel checkpoint."""
    path = tmp_path / "appear.mp4"
    write_video(path, np.repeat(np.repeat(_appear_clip(), 3, axis=1), 3, axis=2))  # 192 pixels
    compared = _with_pixel_baseline(explorer, explorer.model.cfg.num_frames, resize=48)  # the model reads 32
    upload = compared.load(path, "surprise")
    baseline = compared.surprise(upload.frames, upload.source_frames, path).numbers["baseline"]
    own = load_clip(path, 48, compared.max_frames)
    assert own.frames.shape[1] == 48 and upload.frames.shape[1] == compared.clip_size == 32
    assert baseline["score"] == compared.baseline.surprise(own.frames, max_frames=len(own.frames)).score
    resized = compared.baseline.surprise(upload.frames, max_frames=len(upload.frames)).score  # what it was
    assert abs(resized / baseline["score"] - 1) > 0.01, (resized, baseline["score"])
    changed = compared.surprise(upload.frames, upload.source_frames + 1, path).numbers["baseline"]
    assert changed == "no pixel baseline curve: appear.mp4 changed while it was read; upload it again"


def test_views_refuse_a_model_output_that_is_not_finite(explorer, clip, monkeypatch):
    """BUG: weights that overflow on one clip (not on the gallery's, which is checked) gave NaN, shown as an answer:
    a surprise peak at the first NaN step over a black heatmap, flat grey latent strips, an arbitrary decoding."""
    model = explorer.model
    surprise, predict_masked, embed = model.surprise, model.predict_masked, model.embed

    def overflowing(result, field):
        return dataclasses.replace(result, **{field: np.full_like(getattr(result, field), np.nan)})

    monkeypatch.setattr(model, "embed", lambda *a, **k: np.full_like(embed(*a, **k), np.inf))
    for view in (explorer.neighbors, explorer.embedding_map):  # they said "embedding must be finite and not all zeros"
        with pytest.raises(ValueError, match=r"the model's output is not a finite number \(do its weights overflow"):
            view(clip)

    monkeypatch.setattr(model, "surprise", lambda *a, **k: overflowing(surprise(*a, **k), "heatmap"))
    monkeypatch.setattr(model, "predict_masked", lambda *a, **k: overflowing(predict_masked(*a, **k), "predicted"))
    with pytest.raises(ValueError, match="the model's output is not a finite number"):
        explorer.surprise(clip)
    with pytest.raises(ValueError, match="the model's output is not a finite number"):
        explorer.masked(clip)
    compared = _with_pixel_baseline(explorer, explorer.model.cfg.num_frames)
    baseline_surprise = compared.baseline.surprise
    monkeypatch.setattr(compared.baseline, "surprise",
                        lambda *a, **k: overflowing(baseline_surprise(*a, **k), "heatmap"))
    monkeypatch.setattr(model, "surprise", surprise)  # the model's own curve is fine; the baseline's is noted missing
    assert compared.surprise(clip).numbers["baseline"] == ("no pixel baseline curve: the model's output is not a "
                                                         "finite number (do its weights overflow?)")


def test_a_baseline_without_a_threshold_costs_its_curve_not_the_view_or_the_start(explorer, clip, monkeypatch):
    """BUG: a pixel baseline whose calibration fails (a collapsed one: threshold 0 or NaN) failed the warm-up, which
    stopped the app at start as if the default did not load, and every checkpoint's surprise view, blaming its model."""
    import jepa_demo.explore as explore_module
    from jepa_demo.gallery import _checked_threshold

    compared = _with_pixel_baseline(explorer, explorer.model.cfg.num_frames)
    calibrations = []

    def collapsed(model, cache_dir):
        calibrations.append(model)
        return _checked_threshold(0.0)

    monkeypatch.setattr(explore_module, "cached_surprise_threshold", collapsed)
    compared.warm_up()
    for _ in range(2):
        view = compared.surprise(clip)
        assert view.numbers["baseline"] == ("no pixel baseline curve: the model's surprise threshold on plausible "
                                            "clips is 0.0, not a positive number: its predictions are exact or not "
                                            "numbers (a collapsed model, or weights that overflow)")
        assert view.numbers["score"] == explorer.surprise(clip).numbers["score"]  # the model's own curve stands
    assert calibrations == [compared.baseline]  # once, not at every request


def test_explorer_cache_builds_each_checkpoint_once_with_progress_and_keeps_the_recently_used():
    from jepa_demo.explore import ExplorerCache

    builds, reports = [], []

    def build(checkpoint, progress):
        builds.append(checkpoint)
        if checkpoint.startswith("bad"):
            raise ValueError(f"no checkpoint {checkpoint}")
        return object()

    cache = ExplorerCache(build, max_size=2)
    first = cache.get("a", lambda f, message: reports.append((f, message)))
    assert cache.get("a") is first and builds == ["a"] and reports == [(0.0, "loading a")]
    cache.get("b")
    assert cache.get("a") is first  # used again: now "b" is the least recently used
    cache.get("c")
    assert cache.get("a") is first and builds == ["a", "b", "c"]
    cache.get("b")
    assert builds == ["a", "b", "c", "b"]  # "b" had been evicted, not "a"
    for name in ("bad1", "bad2"):
        with pytest.raises(ValueError, match=name):
            cache.get(name)
    # BUG: a Hub id's download, or offline its retries (some 25 s), showed a bare "loading ..." at 0 %
    cache.get("someone/model", lambda f, message: reports.append((f, message)))
    assert reports[-1] == (0.0, "loading someone/model from the Hugging Face Hub (a download on first use; offline, "
                                "some 25 s of retries to find the Hub unreachable)")
    assert cache._building == {}  # names that failed to load leave nothing behind, however many a caller sends
    # kept under a key naming the weights: two names of one folder share an Explorer, changed weights get a new one
    again = cache.get("./a/", key="a@1")
    assert cache.get("a", key="a@1") is again and builds[-1] == "./a/"
    assert cache.get("a", key="a@2") is not again and builds[-1] == "a"


def test_explorer_cache_builds_a_checkpoint_once_while_the_others_go_on():
    """A new gallery takes minutes for a large model: the requests for other checkpoints must not wait for it."""
    import threading

    from jepa_demo.explore import ExplorerCache

    release, builds = threading.Event(), []

    def build(checkpoint, progress):
        builds.append(checkpoint)
        if checkpoint == "slow":
            assert release.wait(timeout=30)
        return f"explorer of {checkpoint}"

    cache = ExplorerCache(build)
    assert cache.get("fast") == "explorer of fast"
    slow = [threading.Thread(target=cache.get, args=("slow",)) for _ in range(2)]
    for thread in slow:
        thread.start()
    deadline = time.monotonic() + 10
    while "slow" not in builds:  # a deadline: a build never started must fail the test, not hang the suite
        assert time.monotonic() < deadline, "the slow build never started"
        time.sleep(0.01)
    other = threading.Thread(target=cache.get, args=("other",))
    other.start()
    other.join(timeout=10)
    assert not other.is_alive() and cache.get("fast") == "explorer of fast"  # neither waited for "slow"
    release.set()
    for thread in slow:
        thread.join(timeout=10)
    assert cache.get("slow") == "explorer of slow" and builds == ["fast", "slow", "other"]  # "slow" built once


def test_one_explorers_slow_patch_bank_does_not_hold_up_anothers(explorer, monkeypatch):
    """Each Explorer builds its patch bank on first use; functools.cached_property (Python 3.11) would make every
    Explorer wait for any other's build, minutes for V-JEPA 2 on CPU."""
    import threading

    import jepa_demo.explore as explore_module

    release, started = threading.Event(), threading.Event()

    def build_bank(model, clips):
        if not started.is_set():
            started.set()
            assert release.wait(timeout=30)
        return f"bank of {len(clips)} clips"

    monkeypatch.setattr(explore_module, "build_patch_bank", build_bank)
    slow, fast = (Explorer(explorer.model, cache_dir=explorer.cache_dir, num_clips=40, baseline=explorer.model)
                  for _ in range(2))
    assert not slow.is_built("bank") and not fast.is_built("bank")  # what the app says it is building first
    first = threading.Thread(target=lambda: slow.bank)
    first.start()
    assert started.wait(timeout=10)
    got = {}  # what each thread read: a thread that raised would end at once and look as if it had not waited
    others = [threading.Thread(target=lambda: got.update(bank=fast.bank)),
              threading.Thread(target=lambda: got.update(threshold=slow.baseline_threshold))]
    for thread in others:  # another Explorer's bank, and this one's other value
        thread.start()
    for thread in others:
        thread.join(timeout=30)
    waited = [thread.is_alive() for thread in others]
    release.set()
    first.join(timeout=10)
    assert waited == [False, False] and fast.bank == slow.bank == got["bank"] == "bank of 12 clips"
    assert isinstance(got["threshold"], float) and got["threshold"] > 0
    assert slow.is_built("bank") and fast.is_built("bank") and slow.is_built("baseline_threshold")


def test_an_explorer_decodes_enough_frames_for_surprise_of_any_upload():
    """One frame in k keeps at least half the limit of a longer clip: twice what surprise needs (68 for V-JEPA 2's
    64-frame window) leaves enough whole tubelets of any upload that has them."""
    from types import SimpleNamespace

    from jepa_demo.explore import MAX_FRAMES
    from jepa_demo.video import strided_frame_indices

    def limit(window):
        model = SimpleNamespace(cfg=SimpleNamespace(num_frames=window, tubelet=2), default_future_steps=2)
        needs = JEPAModel.surprise_frames(model)
        return Explorer.max_frames.fget(SimpleNamespace(model=SimpleNamespace(surprise_frames=lambda: needs))), needs

    assert limit(16) == (MAX_FRAMES, 20) and limit(64) == (136, 68)
    for window in (16, 64):
        most, needs = limit(window)
        assert all(len(strided_frame_indices(n, most)) // 2 * 2 >= needs for n in range(needs, 3000))
