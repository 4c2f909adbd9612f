import numpy as np
import pytest

from jepa_demo.preprocess import denormalize
from jepa_demo.views import (
    VISIBLE_GREY,
    PatchBank,
    build_patch_bank,
    decode_nearest,
    filmstrip,
    heat_overlay,
    latent_pca_images,
    map_figure,
    paste_patches,
    shade_hidden,
    surprise_figure,
    surprise_overlay,
    token_patches,
    upsample_tokens,
)
from jepa_demo.world import WorldConfig, render_clip

PATCH, TUBELET, GRID = 8, 2, (2, 4, 4)  # the tiny model's: 4 frames of 32 px


@pytest.fixture
def model(tiny_inference):
    return tiny_inference


def _clip(seed=0, frames=4, size=32):
    return render_clip(seed, WorldConfig(size=size, num_frames=frames)).frames


def _noise_frames(seed=0, grid=GRID):
    t, h, w = grid
    return np.random.default_rng(seed).integers(0, 256, (t * TUBELET, h * PATCH, w * PATCH, 3), dtype=np.uint8)


def _mask():
    mask = np.zeros(GRID, bool)
    mask[0, 1, 2] = mask[1, 3, 0] = mask[1, 3, 1] = True
    return mask


def _token_pixels(t, h, w):
    """(frames, rows, cols) slice of token (t, h, w)."""
    return slice(t * TUBELET, (t + 1) * TUBELET), slice(h * PATCH, (h + 1) * PATCH), slice(w * PATCH, (w + 1) * PATCH)


def test_upsample_tokens_maps_each_pixel_to_its_token():
    images = np.random.default_rng(0).integers(0, 256, (*GRID, 3), dtype=np.uint8)
    frames = upsample_tokens(images, PATCH, TUBELET)
    assert frames.shape == (4, 32, 32, 3)
    f, y, x = 3, 17, 30
    assert np.array_equal(frames[f, y, x], images[f // TUBELET, y // PATCH, x // PATCH])
    assert upsample_tokens(np.zeros(GRID, bool), PATCH, TUBELET).shape == (4, 32, 32)


def test_shade_hidden_changes_only_hidden_pixels_of_their_own_frames():
    frames, mask = _noise_frames(), _mask()
    shaded = shade_hidden(frames, mask, PATCH, TUBELET)
    cover = upsample_tokens(mask, PATCH, TUBELET)
    assert shaded.dtype == np.uint8 and shaded.shape == frames.shape
    assert np.array_equal(shaded[~cover], frames[~cover])
    assert np.array_equal(shaded[cover], (frames[cover] * 0.3 + 160).astype(np.uint8))
    assert (shaded[cover] >= 160).all() and (shaded[cover] != frames[cover]).mean() > 0.9
    assert not np.array_equal(shaded[0:2, 8:16, 16:24], frames[0:2, 8:16, 16:24])  # token (0, 1, 2) is hidden
    assert np.array_equal(shaded[2:4, 8:16, 16:24], frames[2:4, 8:16, 16:24])  # token (0, 1, 2) is not hidden at t=1
    with pytest.raises(ValueError, match="shown_frames"):
        shade_hidden(frames[:3], mask, PATCH, TUBELET)


def test_heat_overlay_differs_only_at_the_hot_token():
    frames = _noise_frames()
    cold = np.zeros(GRID)
    hot = cold.copy()
    hot[1, 2, 3] = 0.7
    a, b = heat_overlay(frames, cold, PATCH, TUBELET), heat_overlay(frames, hot, PATCH, TUBELET)
    assert a.dtype == np.uint8 and a.shape == frames.shape
    changed = np.zeros(frames.shape[:3], bool)
    changed[_token_pixels(1, 2, 3)] = True
    assert np.array_equal(a[~changed], b[~changed])
    assert (np.abs(a[changed].astype(int) - b[changed]).sum(axis=-1) > 0).all()


def test_heat_overlay_runs_from_black_at_zero_to_bright_at_vmax():
    values = np.zeros(GRID)
    values[1, 2, 3] = 2.0
    shown = heat_overlay(np.zeros_like(_noise_frames()), values, PATCH, TUBELET, vmax=2.0, alpha=1.0)
    assert shown[_token_pixels(0, 0, 0)].max() < 10  # inferno's black
    assert shown[_token_pixels(1, 2, 3)][..., :2].min() > 240  # its pale yellow
    # BUG: a scale of 0 (another clip's, all of whose errors are 0) drew every error black, as if predicted exactly
    shown = heat_overlay(np.zeros_like(_noise_frames()), values, PATCH, TUBELET, vmax=0.0, alpha=1.0)
    assert shown[_token_pixels(0, 0, 0)].max() < 10 and shown[_token_pixels(1, 2, 3)][..., :2].min() > 240


def test_heat_overlay_where_leaves_the_other_tokens_as_they_were():
    frames = _noise_frames()
    values = np.random.default_rng(2).random(GRID)
    where = np.zeros(GRID, bool)
    where[1, 2, 3] = where[0, 0, 0] = True
    coloured = np.zeros(frames.shape[:3], bool)
    coloured[_token_pixels(1, 2, 3)] = coloured[_token_pixels(0, 0, 0)] = True
    shown = heat_overlay(frames, values, PATCH, TUBELET, where=where)
    everywhere = heat_overlay(frames, values, PATCH, TUBELET)
    assert np.array_equal(shown[~coloured], frames[~coloured])
    assert np.array_equal(shown[coloured], everywhere[coloured])  # on the scale of all the values, not only these
    with pytest.raises(ValueError, match="where must have the values' shape"):  # not broadcast over every step
        heat_overlay(frames, values, PATCH, TUBELET, where=where[:1])


def test_heat_overlay_vmax_sets_a_shared_scale():
    frames = _noise_frames()
    values = np.random.default_rng(1).random(GRID)
    assert np.array_equal(heat_overlay(frames, values, PATCH, TUBELET, vmax=2.0),
                          heat_overlay(frames, values * 2, PATCH, TUBELET, vmax=4.0))
    assert np.array_equal(heat_overlay(frames, values, PATCH, TUBELET),
                          heat_overlay(frames, values, PATCH, TUBELET, vmax=values.max()))
    assert not np.array_equal(heat_overlay(frames, values, PATCH, TUBELET),
                              heat_overlay(frames, values, PATCH, TUBELET, vmax=10 * values.max()))


def test_surprise_overlay_puts_each_step_on_its_first_frame(model):
    clip = _clip(frames=12)
    result = model.surprise(clip)
    frames = model.shown_frames(clip)
    overlay = surprise_overlay(frames, result.heatmap, result.step_frames, PATCH)
    assert overlay.shape == (len(result.step_frames), 32, 32, 3) and overlay.dtype == np.uint8
    vmax = result.heatmap.max()
    for i, f in enumerate(result.step_frames):
        assert np.array_equal(overlay[i], heat_overlay(frames[f:f + 1], result.heatmap[i:i + 1], PATCH, 1, vmax)[0])
    # which frame each picture is: frame f flat red 20 f, under a heatmap of zeros (black at opacity 0.6)
    assert (result.step_frames % TUBELET == 0).all() and (np.diff(result.step_frames) == TUBELET).all()
    flat = np.zeros_like(frames)
    flat[..., 0] = (20 * np.arange(len(flat)))[:, None, None]
    dark = surprise_overlay(flat, np.zeros_like(result.heatmap), result.step_frames, PATCH)
    assert dark[..., 0].reshape(len(dark), -1).tolist() == [[round(0.4 * 20 * f)] * 32 * 32 for f in result.step_frames]


def test_shown_frames_are_what_the_model_saw(model):
    clip = _clip(frames=12, size=48)  # 4 of 12 frames: 1, 4, 7, 10, neither the first 4 nor spread to both ends
    model_input = denormalize(model._input(clip, model.cfg.num_frames)[0], model.preprocess)
    assert np.array_equal(model.shown_frames(clip, model.cfg.num_frames), model_input)
    assert np.array_equal(model.predict_masked(clip).frames, model_input)
    assert model.shown_frames(clip, chunk=5).shape == (12, 32, 32, 3)
    assert np.array_equal(model.shown_frames(clip, chunk=5), model.shown_frames(clip))
    with pytest.raises(ValueError, match="uint8"):
        model.shown_frames(clip.astype(np.float32))


def test_latent_pca_images_share_one_colour_space(model):
    result = model.predict_masked(_clip(), mask="random", seed=2, ratio=0.5)
    predicted = result.predicted.copy()
    predicted[1] = result.target[1]
    pred_rgb, target_rgb = latent_pca_images(predicted, result.target, result.mask)
    assert pred_rgb.shape == target_rgb.shape == (*GRID, 3) and pred_rgb.dtype == np.uint8
    assert (pred_rgb[~result.mask] == VISIBLE_GREY).all() and (target_rgb[~result.mask] == VISIBLE_GREY).all()
    token = tuple(np.argwhere(result.mask)[1])  # hidden token number 1 in flattened grid order
    assert np.array_equal(pred_rgb[token], target_rgb[token])
    hidden = target_rgb[result.mask]
    assert len(np.unique(hidden, axis=0)) > len(hidden) // 2  # distinct latents get distinct colours
    assert not np.array_equal(pred_rgb[result.mask], hidden)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("hidden", [0, 1, 2])
def test_latent_pca_images_with_few_hidden_tokens(hidden):
    mask = np.zeros(GRID, bool)
    mask.flat[[5, 20][:hidden]] = True
    rng = np.random.default_rng(hidden)
    predicted, target = rng.standard_normal((hidden, 16)), rng.standard_normal((hidden, 16))
    pred_rgb, target_rgb = latent_pca_images(predicted, target, mask)
    assert pred_rgb.shape == (*GRID, 3) and (pred_rgb[~mask] == VISIBLE_GREY).all()
    assert (pred_rgb[mask] != target_rgb[mask]).any() or hidden == 0


@pytest.mark.filterwarnings("error")
def test_latent_pca_images_with_identical_latents():
    mask = _mask()
    same = np.ones((int(mask.sum()), 8))
    pred_rgb, target_rgb = latent_pca_images(same, same, mask)
    assert np.array_equal(pred_rgb, target_rgb)
    assert len(np.unique(pred_rgb[mask], axis=0)) == 1


def test_token_patches_and_paste_patches_are_inverse():
    frames = _noise_frames(grid=(4, 4, 4))[:4]  # 4 frames: one per token step when tubelet is 1
    patches = token_patches(frames, PATCH, 1)
    assert patches.shape == (4, 4, 4, PATCH, PATCH, 3)
    assert np.array_equal(patches[2, 1, 3], frames[2, 8:16, 24:32])
    everything = np.ones((4, 4, 4), bool)
    pasted = paste_patches(np.zeros_like(frames), everything, patches.reshape(-1, PATCH, PATCH, 3), PATCH, 1)
    assert np.array_equal(pasted, frames)


def test_paste_patches_changes_only_hidden_pixels():
    frames, mask = _noise_frames(), _mask()
    patches = np.arange(mask.sum())[:, None, None, None] * np.ones((PATCH, PATCH, 3), np.uint8) + 1
    pasted = paste_patches(frames, mask, patches.astype(np.uint8), PATCH, TUBELET)
    cover = upsample_tokens(mask, PATCH, TUBELET)
    assert pasted.dtype == np.uint8 and np.array_equal(pasted[~cover], frames[~cover])
    for i, token in enumerate(np.argwhere(mask)):  # flattened grid order, like MaskedPrediction.predicted
        assert (pasted[_token_pixels(*token)] == i + 1).all()  # both frames of the tubelet


def test_build_patch_bank_keeps_latents_and_pixels_together(model):
    clips = [_clip(seed=1), _clip(seed=2, frames=8, size=40)]
    bank = build_patch_bank(model, clips)
    tokens = int(np.prod(GRID))
    assert bank.latents.shape == (2 * tokens, model.cfg.dim) and bank.latents.dtype == np.float32
    assert bank.patches.shape == (2 * tokens, PATCH, PATCH, 3) and bank.patches.dtype == np.uint8
    assert np.allclose(bank.latents[tokens:], model.target_latents(clips[1]).reshape(tokens, -1))
    seen = model.shown_frames(clips[1], model.cfg.num_frames)
    assert np.array_equal(bank.patches[tokens + 16 + 5], seen[TUBELET, 8:16, 8:16])  # token (1, 1, 1)
    small = build_patch_bank(model, clips, max_tokens=40, seed=3)
    assert len(small.latents) == len(small.patches) == 40
    rows = [int(np.flatnonzero((bank.latents == row).all(axis=1))[0]) for row in small.latents]
    assert len(set(rows)) == 40 and np.array_equal(bank.patches[rows], small.patches)
    again = build_patch_bank(model, clips, max_tokens=40, seed=3)
    assert np.array_equal(again.latents, small.latents)
    with pytest.raises(ValueError, match="at least one"):
        build_patch_bank(model, [])


def test_decode_nearest_finds_bank_members_and_uses_l1():
    rng = np.random.default_rng(0)
    bank = PatchBank(latents=rng.standard_normal((50, 16), dtype=np.float32),
                     patches=rng.integers(0, 256, (50, PATCH, PATCH, 3), dtype=np.uint8))
    picks = [7, 0, 49, 7]
    assert np.array_equal(decode_nearest(bank, bank.latents[picks]), bank.patches[picks])
    assert np.array_equal(decode_nearest(bank, bank.latents[picks] + 1e-4, chunk=1), bank.patches[picks])
    assert decode_nearest(bank, np.zeros((0, 16))).shape == (0, PATCH, PATCH, 3)
    # From the origin, [3, 0, 0, 0] is nearer in L1 (mean 0.75 vs 1) but farther in L2 (9 vs 4) than [1, 1, 1, 1].
    two = PatchBank(latents=np.array([[1, 1, 1, 1], [3, 0, 0, 0]], np.float32),
                    patches=np.stack([np.zeros((PATCH, PATCH, 3), np.uint8), np.ones((PATCH, PATCH, 3), np.uint8)]))
    assert (decode_nearest(two, np.zeros((1, 4))) == 1).all()


def test_nearest_patch_decoding_of_a_gallery_clip_restores_its_pixels(model):
    clip = _clip(seed=4)
    bank = build_patch_bank(model, [clip, _clip(seed=5)])
    result = model.predict_masked(clip, mask="multiblock", seed=1)
    # onto black frames, so that only what the decoding pastes can match the clip's pixels
    decoded = paste_patches(np.zeros_like(result.frames), result.mask, decode_nearest(bank, result.target), PATCH,
                            TUBELET)
    first = slice(None, None, TUBELET)  # the bank keeps the first frame of each tubelet
    hidden = upsample_tokens(result.mask, PATCH, TUBELET)[first]
    assert hidden.any() and np.array_equal(decoded[first][hidden], result.frames[first][hidden])


def _curves():
    frames = np.arange(6, 30, 2)
    jepa = np.array([0.1, 0.2, 0.5, 0.6, 0.9, 0.2, 0.1, 0.1, 0.7, 0.2, 0.1, 0.1])
    pixel = np.full(len(frames), 0.3)
    pixel[2] = 0.8
    return {"JEPA": (frames, jepa), "pixel baseline": (frames, pixel)}  # JEPA touches 0.5 at frame 10


def test_surprise_figure_marks_exactly_the_moments_above_the_threshold():
    curves = _curves()
    fig = surprise_figure(curves, threshold=0.5, threshold_label="99th percentile of plausible clips")
    names = [trace.name for trace in fig.data]
    assert names == ["JEPA", "pixel baseline", "99th percentile of plausible clips", "JEPA above threshold"]
    threshold = fig.data[2]
    assert list(threshold.y) == [0.5, 0.5] and threshold.line.dash == "dash"
    assert (threshold.x[0], threshold.x[1]) == (6, 28) and threshold.hovertext == names[2]
    assert list(fig.data[3].x) == [12, 14, 22] and list(fig.data[3].y) == [0.6, 0.9, 0.7]
    assert fig.layout.xaxis.title.text == "frame" and fig.layout.yaxis.title.text == "surprise (latent error)"


def test_surprise_figure_options():
    curves = _curves()
    assert [trace.name for trace in surprise_figure(curves).data] == ["JEPA", "pixel baseline"]  # no threshold
    assert [trace.name for trace in surprise_figure(curves, threshold=0.5).data][2:] == ["threshold 0.5",
                                                                                       "JEPA above threshold"]
    assert len(surprise_figure(curves, threshold=5.0).data) == 3  # nothing above: no empty marker trace
    with pytest.raises(ValueError, match="at least one curve"):
        surprise_figure({})
    # BUG: the pixel baseline's curve took the colour of its place, red beside a JEPA and blue on its own
    coloured = surprise_figure(curves, colours={"pixel baseline": "#d62728"})
    assert [trace.line.color for trace in coloured.data] == [None, "#d62728"]
    # BUG: the legend beside the plot (its threshold entry is long) left a phone's plot about 95 px wide
    assert coloured.layout.legend.orientation == "h" and coloured.layout.legend.y < 0


def test_map_figure_one_trace_per_label_value_and_a_star():
    coords = np.random.default_rng(0).standard_normal((7, 2))
    shapes = ["circle", "square", "circle", "triangle", "square", "circle", "circle"]
    labels = [{"main_shape": s, "gravity": i % 2 == 0} for i, s in enumerate(shapes)]
    fig = map_figure(coords, labels, "main_shape", highlight=(0.5, -0.5), highlight_name="upload.mp4")
    assert [trace.name for trace in fig.data] == ["circle", "square", "triangle", "upload.mp4"]
    assert [trace.legendgroup for trace in fig.data[:3]] == ["circle", "square", "triangle"]
    circles = fig.data[0]
    assert list(circles.x) == list(coords[[0, 2, 5, 6], 0])
    assert circles.hovertext[1] == "clip 2<br>main_shape: circle<br>gravity: True"
    star = fig.data[-1]
    assert star.marker.symbol == "star" and star.marker.size > circles.marker.size and list(star.x) == [0.5]
    by_gravity = map_figure(coords, labels, "gravity")
    assert [trace.name for trace in by_gravity.data] == ["False", "True"]
    assert by_gravity.layout.legend.title.text == "gravity"
    assert by_gravity.layout.legend.orientation == "h"  # under the map: beside it, it squeezed a phone's map
    # groups differ in shape as well as colour: not by colour alone
    groups = fig.data[:3]
    assert len({t.marker.symbol for t in groups}) == len({t.marker.color for t in groups}) == 3
    assert [t.marker.symbol for t in groups] == ["circle", "square", "triangle-up"]  # each shape drawn as itself
    no_circles = map_figure(coords[[1, 3]], [labels[1], labels[3]], "main_shape")
    assert [t.marker.symbol for t in no_circles.data] == ["square", "triangle-up"]  # not by place in the list


def test_filmstrip_samples_frames_evenly_with_gaps():
    frames = np.stack([np.full((6, 5, 3), i, np.uint8) for i in range(16)])
    strip = filmstrip(frames, num=4, gap=2)
    assert strip.shape == (6, 4 * 5 + 3 * 2, 3) and strip.dtype == np.uint8
    assert [int(strip[0, i * 7, 0]) for i in range(4)] == [0, 5, 10, 15]
    assert (strip[:, 5:7] == 255).all()
    assert filmstrip(frames[:3], num=8).shape == (6, 3 * 5 + 2 * 2, 3)
