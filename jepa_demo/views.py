"""Pictures of what a JEPA sees and predicts: numpy images and plotly figures built from inference results.

Masks, error maps and surprise heatmaps live on the token grid (t, h, w); a token covers `tubelet` frames and a
`patch` x `patch` square of pixels, so frame f shows token step f // tubelet. Everything here maps between that grid
and frames as the model sees them (`JEPAModel.shown_frames`: uint8 (T, S, S, 3), T = t * tubelet, S = h * patch).

Latents cannot be looked at directly, so two views stand in for a pixel decoder the model does not have:
`latent_pca_images` colours predicted and target latents through one shared PCA, and `decode_nearest` shows, for
each predicted latent, the gallery patch whose target latent is nearest (a `PatchBank`).

What this module does not know: gradio, files or training. Apart from `build_patch_bank`, which asks a loaded
`JEPAModel` for frames and latents, every function is pure: arrays in, uint8 images or plotly figures
out; the app only wires them to components.
"""

from dataclasses import dataclass

import matplotlib
import numpy as np
import plotly.colors
import plotly.graph_objects as go
import torch
from sklearn.decomposition import PCA

VISIBLE_GREY = 128  # colour of visible tokens in the latent PCA images: they have no prediction to show
_WASH_KEEP, _WASH_ADD = 0.3, 160  # hidden pixels -> 0.3 * pixel + 160: pale, the content still faintly there


def upsample_tokens(images: np.ndarray, patch: int, tubelet: int) -> np.ndarray:
    """Token-grid values (t, h, w, ...) -> per-pixel frames (t * tubelet, h * patch, w * patch, ...)."""
    return np.asarray(images).repeat(tubelet, axis=0).repeat(patch, axis=1).repeat(patch, axis=2)


def _check_frames(frames: np.ndarray, grid: tuple, patch: int, tubelet: int) -> None:
    t, h, w = grid[:3]
    expected = (t * tubelet, h * patch, w * patch, 3)
    if frames.shape != expected:
        raise ValueError(f"frames of shape {frames.shape} do not match a token grid {(t, h, w)} with patch {patch} "
                         f"and tubelet {tubelet}: expected {expected} (JEPAModel.shown_frames gives the model's view)")


def shade_hidden(frames: np.ndarray, mask: np.ndarray, patch: int, tubelet: int) -> np.ndarray:
    """Wash the hidden tokens (mask (t, h, w), True = hidden) of uint8 frames (T, S, S, 3) out to pale grey; visible
    pixels are returned unchanged."""
    frames = np.asarray(frames)
    _check_frames(frames, mask.shape, patch, tubelet)
    cover = upsample_tokens(mask, patch, tubelet)[..., None]  # (T, S, S, 1)
    return np.where(cover, frames * _WASH_KEEP + _WASH_ADD, frames).astype(np.uint8)


def heat_overlay(frames: np.ndarray, values: np.ndarray, patch: int, tubelet: int, vmax: float | None = None,
                 alpha: float = 0.6, where: np.ndarray | None = None) -> np.ndarray:
    """Per-token values (t, h, w) as an "inferno" colour map blended (opacity `alpha`) over frames (T, S, S, 3).

    Colours run from 0 (black) to `vmax` (pale yellow); larger values saturate. Pass the same `vmax` for two clips to
    compare them on one scale; by default it is the largest value. `where` (t, h, w), True = coloured: the other
    tokens keep their pixels (visible tokens have no error, and black would read as a perfect prediction). Returns
    uint8 (T, S, S, 3)."""
    frames, values = np.asarray(frames), np.asarray(values, dtype=np.float64)
    _check_frames(frames, values.shape, patch, tubelet)
    top = values.max(initial=0.0) if vmax is None else vmax
    scaled = np.clip(values / top, 0, 1) if top > 0 else (values > 0).astype(float)  # a scale of 0: any error tops it
    colours = matplotlib.colormaps["inferno"](scaled)[..., :3] * 255  # (t, h, w, 3)
    blended = (1 - alpha) * frames + alpha * upsample_tokens(colours, patch, tubelet)
    if where is not None:
        if np.shape(where) != values.shape:
            raise ValueError(f"where must have the values' shape {values.shape}, got {np.shape(where)}")
        blended = np.where(upsample_tokens(where, patch, tubelet)[..., None], blended, frames)
    return blended.round().astype(np.uint8)


def surprise_overlay(frames: np.ndarray, heatmap: np.ndarray, step_frames: np.ndarray, patch: int,
                     vmax: float | None = None) -> np.ndarray:
    """One picture per predicted step of `JEPAModel.surprise`: the frame where step i starts, frames[step_frames[i]],
    under that step's error map heatmap[i] (heatmap (S, h, w)). `frames` is the whole input clip at the model's
    resolution (`model.shown_frames(video)`), since step_frames index the input clip. Returns uint8 (S, S', S', 3)."""
    return heat_overlay(np.asarray(frames)[step_frames], heatmap, patch, tubelet=1, vmax=vmax)


def latent_pca_images(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and target latents (M, D) at the hidden tokens of `mask` (t, h, w) as colours: (t, h, w, 3) uint8
    each. One PCA (3 components) is fitted on both sets together and both are scaled alike, so the same colour means
    the same representation in the two images. Visible tokens are VISIBLE_GREY."""
    both = np.concatenate([predicted, target]).astype(np.float64)  # (2M, D)
    colours = _to_colour(_project3(both))  # (2M, 3)
    images = []
    for part in (colours[:len(predicted)], colours[len(predicted):]):
        image = np.full((*mask.shape, 3), VISIBLE_GREY, np.uint8)
        image[mask] = part  # boolean indexing walks the grid in flattened order, like the latents
        images.append(image)
    return images[0], images[1]


def _project3(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 3) PCA coordinates; with fewer than 3 meaningful directions the missing columns are 0."""
    out = np.zeros((len(x), 3))
    if len(x) > 1 and np.ptp(x, axis=0).max() > 0:  # PCA of identical rows divides by zero variance
        k = min(3, len(x), x.shape[1])
        out[:, :k] = PCA(n_components=k, random_state=0).fit_transform(x)
    return out


def _to_colour(coords: np.ndarray) -> np.ndarray:
    """(N, 3) -> uint8 (N, 3): each component from its 2nd..98th percentile to 0..255 (outliers clipped)."""
    if not len(coords):
        return np.zeros((0, 3), np.uint8)
    low, high = np.percentile(coords, [2, 98], axis=0)
    # A component with (numerically) no spread must not be stretched into noise: floor its range by the largest one.
    spread = np.maximum(high - low, max(1e-3 * (high - low).max(), 1e-12))
    return (np.clip((coords - low) / spread, 0, 1) * 255).round().astype(np.uint8)


@dataclass
class PatchBank:
    """Gallery tokens for nearest-patch decoding: what each token looked like and its target latent."""
    latents: np.ndarray  # (N, D) float32 normalised target latents (`JEPAModel.target_latents`)
    patches: np.ndarray  # (N, patch, patch, 3) uint8 pixels of each token (first frame of its tubelet)


def token_patches(frames: np.ndarray, patch: int, tubelet: int) -> np.ndarray:
    """Frames (T, S, S, 3) -> the pixels of every token (t, h, w, patch, patch, 3), first frame of each tubelet."""
    first = np.asarray(frames)[::tubelet]  # (t, S, S, 3)
    t, height, width = first.shape[:3]
    blocks = first.reshape(t, height // patch, patch, width // patch, patch, 3)  # (t, h, p, w, p, 3)
    return blocks.transpose(0, 1, 3, 2, 4, 5)  # (t, h, w, p, p, 3)


def build_patch_bank(model, videos, max_tokens: int = 20000, seed: int = 0) -> PatchBank:
    """Every token of every gallery clip: its target latent and its pixels. When there are more than `max_tokens`,
    keep a uniform random sample of them (reproducible with `seed`)."""
    if not len(videos):
        raise ValueError("build_patch_bank needs at least one gallery video")
    latents, patches = [], []
    for video in videos:
        targets = model.target_latents(video)
        latents.append(targets.reshape(-1, targets.shape[-1]))  # (N, D)
        frames = model.shown_frames(video, model.cfg.num_frames)
        patches.append(token_patches(frames, model.cfg.patch_size, model.cfg.tubelet).reshape(
            -1, model.cfg.patch_size, model.cfg.patch_size, 3))  # (N, p, p, 3)
    latents, patches = np.concatenate(latents), np.concatenate(patches)
    if len(latents) > max_tokens:
        keep = np.sort(np.random.default_rng(seed).choice(len(latents), max_tokens, replace=False))
        latents, patches = latents[keep], patches[keep]
    return PatchBank(latents=latents.astype(np.float32), patches=patches)


def decode_nearest(bank: PatchBank, latents: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each latent (M, D), the bank patch whose latent is nearest in L1 (mean absolute difference over D, the
    distance `jepa_demo.model.latent_error` scores predictions with): uint8 (M, patch, patch, 3). torch.cdist's L1
    kernel is ~10x faster than numpy here; queries go in chunks to bound the (chunk, N) distance matrix."""
    queries = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32)).reshape(-1, bank.latents.shape[1])
    columns = torch.from_numpy(bank.latents)  # (N, D)
    nearest = [torch.cdist(part, columns, p=1).argmin(dim=1) for part in queries.split(chunk)]  # sum ranks like mean
    index = torch.cat(nearest).numpy() if nearest else np.zeros(0, np.int64)
    return bank.patches[index]


def paste_patches(frames: np.ndarray, mask: np.ndarray, patches: np.ndarray, patch: int, tubelet: int) -> np.ndarray:
    """Frames (T, S, S, 3) with the hidden tokens of `mask` (t, h, w) replaced by `patches` (M, patch, patch, 3), given
    in flattened grid order (the order of `MaskedPrediction.predicted`); every frame of a token's tubelet gets its
    patch. Visible pixels are unchanged."""
    frames = np.asarray(frames)
    _check_frames(frames, mask.shape, patch, tubelet)
    t, h, w = mask.shape
    grid = np.zeros((t, h, w, patch, patch, 3), np.uint8)
    grid[mask] = patches
    tiles = grid.transpose(0, 1, 3, 2, 4, 5).reshape(t, h * patch, w * patch, 3)  # (t, S, S, 3)
    cover = upsample_tokens(mask, patch, tubelet)[..., None]  # (T, S, S, 1)
    return np.where(cover, tiles.repeat(tubelet, axis=0), frames)


def surprise_figure(curves: dict, threshold: float | None = None, threshold_label: str = "",
                    y_title: str = "surprise (latent error)", colours: dict | None = None) -> go.Figure:
    """Surprise over time, one line per curve: {name: (step_frames, per_step)}, the model's first (e.g. "JEPA", then
    "pixel baseline"); `colours`: {name: colour} for curves that keep one colour from plot to plot (the pixel
    baseline's was red beside a JEPA and blue on its own). The legend lies under the plot: beside it, its long
    threshold entry took most of a phone's width.

    threshold: a dashed horizontal line, named `threshold_label` in the legend and on hover, and a marker on each
        moment of the first curve above it. It belongs to the first curve: other curves may be on their own scale.
    """
    if not curves:
        raise ValueError("surprise_figure needs at least one curve")
    fig = go.Figure()
    for name, (frames, values) in curves.items():
        fig.add_trace(go.Scatter(x=np.asarray(frames), y=np.asarray(values), mode="lines", name=name,
                                 line=dict(color=(colours or {}).get(name))))
    if threshold is not None:
        _add_threshold(fig, curves, threshold, threshold_label or f"threshold {threshold:.3g}")
        _mark_above(fig, curves, threshold)
    fig.update_layout(xaxis_title="frame", yaxis_title=y_title, hovermode="x unified",
                      margin=dict(l=50, r=20, t=30, b=40), legend=_LEGEND_BELOW)
    return fig


# under the plot, left-aligned, entries side by side as the width allows
_LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0)


def _add_threshold(fig: go.Figure, curves: dict, threshold: float, label: str) -> None:
    """A trace rather than a layout line, so that it has a legend entry and hover text."""
    xs = np.concatenate([np.asarray(frames) for frames, _ in curves.values()])
    fig.add_trace(go.Scatter(x=[xs.min(), xs.max()], y=[threshold, threshold], mode="lines", name=label,
                             hovertext=label, hoverinfo="text", line=dict(dash="dash", color="grey")))


def _mark_above(fig: go.Figure, curves: dict, threshold: float) -> None:
    name, (frames, values) = next(iter(curves.items()))
    frames, values = np.asarray(frames), np.asarray(values)
    above = values > threshold
    if above.any():
        fig.add_trace(go.Scatter(x=frames[above], y=values[above], mode="markers", name=f"{name} above threshold",
                                 marker=dict(size=10, symbol="circle-open", line=dict(width=2))))


_COLOURS = plotly.colors.qualitative.Safe
_SYMBOLS = ("circle", "square", "diamond", "cross", "triangle-down", "x", "pentagon", "star-square")
_SHAPE_SYMBOLS = {"circle": "circle", "square": "square", "triangle": "triangle-up"}  # the world's shapes as themselves


def map_figure(coords: np.ndarray, labels: list[dict], color_by: str, highlight=None,
               highlight_name: str = "your clip") -> go.Figure:
    """Gallery clips as points at `coords` (N, 2), one colour, marker shape and legend entry per value of
    labels[i][color_by] (shapes too, so that no one needs to tell red from green; the colours are Plotly's
    colour-blind-safe set); hovering shows the clip's index and labels. `highlight` (2,) adds a large star on top (e.g.
    an uploaded clip)."""
    coords = np.asarray(coords)
    values = np.array([str(label.get(color_by)) for label in labels])
    fig = go.Figure()
    for group, value in enumerate(sorted(set(values))):
        index = np.flatnonzero(values == value)
        marker = dict(size=8, opacity=0.8, color=_COLOURS[group % len(_COLOURS)],
                      symbol=_SHAPE_SYMBOLS.get(value, _SYMBOLS[group % len(_SYMBOLS)]))
        fig.add_trace(go.Scatter(x=coords[index, 0], y=coords[index, 1], mode="markers", name=value,
                                 legendgroup=value, hovertext=[_hover(i, labels[i]) for i in index],
                                 hoverinfo="text", marker=marker))
    if highlight is not None:
        fig.add_trace(go.Scatter(x=[highlight[0]], y=[highlight[1]], mode="markers", name=highlight_name,
                                 hovertext=highlight_name, hoverinfo="text",
                                 marker=dict(symbol="star", size=20, color="gold", line=dict(width=1.5,
                                                                                            color="black"))))
    fig.update_layout(legend_title_text=color_by, margin=dict(l=20, r=20, t=30, b=20), legend=_LEGEND_BELOW)
    return fig


def _hover(index: int, label: dict) -> str:
    return "<br>".join([f"clip {index}"] + [f"{key}: {value}" for key, value in label.items()])


def filmstrip_indices(num_frames: int, num: int = 8) -> np.ndarray:
    """Which of `num_frames` frames a filmstrip shows: `num` spread evenly over the clip (all if fewer), its ends
    included (the model's own sampling may leave them out)."""
    return np.linspace(0, num_frames - 1, min(num, num_frames)).round().astype(int)


def filmstrip(frames: np.ndarray, num: int = 8, gap: int = 2) -> np.ndarray:
    """`num` frames spread evenly over the clip (all of them if fewer), side by side with a white `gap` of pixels:
    uint8 (H, n * W + (n - 1) * gap, 3)."""
    frames = np.asarray(frames)
    picked = frames[filmstrip_indices(len(frames), num)]  # (n, H, W, 3)
    n, height, width = picked.shape[:3]
    strip = np.full((height, n * width + (n - 1) * gap, 3), 255, np.uint8)
    for i, frame in enumerate(picked):
        strip[:, i * (width + gap):i * (width + gap) + width] = frame
    return strip
