"""What each of the app's four views computes, as plain data: images (uint8 arrays), plotly figures and numbers.

    explorer = Explorer(load_model("checkpoints/default"))   # the gallery (map, threshold): shipped, cached or built
    one = explorer.load("clip.mp4", "neighbors")             # limits; ClipError with a plain message; one model input
    explorer.masked(one.frames, "multiblock", ratio=0.75, seed=0, source_frames=one.source_frames)
    explorer.neighbors(one.frames, k=8); explorer.embedding_map(one.frames, "num_objects")
    long = explorer.load("clip.mp4", "surprise")             # uint8 (T, H, W, 3), at most max_frames spread over it
    explorer.surprise(long.frames, long.source_frames, "clip.mp4")  # file's frame numbers; baseline at its size

An `Explorer` is built once per checkpoint and then only read (its patch bank is filled on first use), so every user
of a server can share it. This module composes `inference`, `gallery` and `views`; it knows nothing about Gradio
(`app.py` turns its results into components) and holds no per-user state.
"""

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .checkpoint import fetched_from_hub
from .cli import check_finite
from .gallery import (
    DEFAULT_CLIPS,
    THRESHOLD_PERCENTILE,
    cache_folder,
    cached_surprise_threshold,
    gallery_clip,
    label_names,
    load_or_build_gallery,
    nearest,
    place_on_map,
    remove_old_formats,
    thumbnail_folder,
)
from .inference import JEPAModel
from .preprocess import sample_frame_indices
from .video import Clip, DecodingTimedOut, VideoError, read_clip, write_video
from .views import (
    build_patch_bank,
    decode_nearest,
    filmstrip,
    filmstrip_indices,
    heat_overlay,
    latent_pca_images,
    map_figure,
    paste_patches,
    shade_hidden,
    surprise_figure,
    surprise_overlay,
    upsample_tokens,
)

MAX_SECONDS = 60.0  # longer uploads are refused: decoding them would hold a worker for too long
MAX_MEGABYTES = 100
MAX_FRAMES = 64  # frames decoded from an upload at most (one in k): 4 of our models' clips; see Explorer.max_frames
DECODE_TIMEOUT = 30.0  # seconds; an upload that takes longer to decode is refused instead of holding a worker
CLIP_PIXELS = 128  # load_clip's default short side; an Explorer decodes at its model's input size, as the CLI does
_BANK_CLIPS = 12  # gallery clips whose patches the nearest-patch decoding picks from (~2 s to build on 2 cores)
_SHOWN_FRAMES = 8
# predicted steps the surprise heatmap strip shows: every one of a 32-frame example (10, frames 12 to 30); with 8 the
# spread left out frames 16 and 26, and so the very frame of each example's violation
_SHOWN_STEPS = 10
VIEWS = ("masked", "neighbors", "map", "surprise")  # Explorer.load's names for what an upload is decoded for
_SHOWN_PIXELS = 160
CURVE_NAMES = {"jepa": "JEPA (latent error)", "jepa-sigreg": "JEPA-SIGReg (latent error)",
               "pixel": "pixel baseline (pixel error)"}
CURVE_COLOURS = {CURVE_NAMES["jepa"]: "#1f77b4", CURVE_NAMES["jepa-sigreg"]: "#2ca02c",
                 CURVE_NAMES["pixel"]: "#d62728"}  # each kind of model's curve one colour, whichever is selected


class ClipError(ValueError):
    """An upload the app will not process, with a message meant for the person who uploaded it."""


def load_clip(path, size: int = CLIP_PIXELS, max_frames: int = MAX_FRAMES, exactly: bool = False) -> Clip:
    """Decode an upload for the views within the app's limits (`jepa_demo.video.read_clip`): at most `max_frames`
    frames, one in k over the clip (`exactly`: `max_frames` frames picked as the model picks its input), short side
    `size`, uint8 (T, H, W, 3), with each one's frame number in the file; ClipError with a plain message otherwise.

    The four views of one upload all start here (Explorer.load: two decodings, one for surprise and one for the
    others; a third for the pixel baseline's curve where its size is not the model's), and decoding a 10-second
    480p clip costs ~0.9 s (every frame must be decoded to reach the ones we keep), so the last few decodings are
    remembered, keyed by path, size and modification time (and the frame limit and `exactly`): a changed or
    different file is decoded afresh. Views must not modify the array they get."""
    path = Path(path)
    try:
        stat = path.stat() if path.is_file() else None
    except OSError:  # removed since is_file (a sweep): read_clip says so in plain words
        stat = None
    file = (path, stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1)
    decoding = (*file, size, max_frames, exactly)
    with _REFUSALS_LOCK:
        refusal = _REFUSALS.get(file) or _REFUSALS.get(decoding)
    if refusal is not None:
        raise ClipError(refusal)
    try:
        return _decode(path, size, max_frames, exactly, *file[1:])
    except VideoError as err:
        with _REFUSALS_LOCK:
            _REFUSALS[file if isinstance(err, DecodingTimedOut) else decoding] = str(err)
            while len(_REFUSALS) > _DECODINGS_KEPT:
                _REFUSALS.popitem(last=False)
        raise ClipError(str(err)) from None


# A refusal is remembered: a file that ran out of DECODE_TIMEOUT for one view does not spend the time again, for any
# kind of decoding (nor get further, its packet scan being kept, and answer); any other refusal only for the decoding
# that met it: damage near a clip's end stops the decoding that reads the last frames, not one that reads fewer
_DECODINGS_KEPT = 8
_REFUSALS: OrderedDict = OrderedDict()  # (path, bytes, mtime), and for a decoding (size, max_frames, exactly) -> why
_REFUSALS_LOCK = threading.Lock()


@lru_cache(maxsize=_DECODINGS_KEPT)
def _decode(path: Path, size: int, max_frames: int, exactly: bool, file_bytes: int, mtime_ns: int) -> Clip:
    return read_clip(path, max_frames, size, max_seconds=MAX_SECONDS, max_megabytes=MAX_MEGABYTES,
                     timeout=DECODE_TIMEOUT, exactly=exactly)


def forget_decoded_clips() -> None:
    """Empty the memory of decoded uploads and refusals (benchmarks use it to time a fresh upload)."""
    _decode.cache_clear()
    with _REFUSALS_LOCK:
        _REFUSALS.clear()


@dataclass
class MaskedView:
    hidden: np.ndarray  # filmstrip: the frames with the hidden tokens washed out
    error: np.ndarray  # filmstrip: per-token error drawn over the frames
    predicted_pca: np.ndarray  # filmstrip: predicted latents in false colour (one PCA shared with the targets)
    target_pca: np.ndarray  # filmstrip: target latents, same colours
    decoded: np.ndarray  # filmstrip: hidden tokens filled with the gallery patches nearest to the predictions
    numbers: dict


@dataclass
class SurpriseView:
    figure: object  # plotly Figure: surprise over time, the threshold, the moments above it
    overlay: np.ndarray  # filmstrip: where, as a heatmap over the frames of up to 10 predicted steps across the clip
    numbers: dict


class Explorer:
    """One checkpoint with everything its views need; `baseline`, a second model (the pixel baseline), gets its
    surprise curve drawn beside this one's."""

    def __init__(self, model: JEPAModel, cache_dir=None, progress=None, num_clips: int = DEFAULT_CLIPS,
                 baseline: JEPAModel | None = None, no_baseline_because: str | None = None):
        self.model = model
        self.baseline = baseline
        self.no_baseline_because = no_baseline_because  # a baseline meant to be there that could not be loaded
        self.gallery = load_or_build_gallery(model, cache_dir, num_clips=num_clips, progress=progress)
        self.cache_dir = cache_folder(cache_dir)
        self.thumbnail_dir = thumbnail_folder(self.cache_dir, self.gallery.fingerprint)
        remove_old_formats(self.cache_dir)
        self._built: dict = {}
        self._build_locks = {name: threading.Lock() for name in ("bank", "baseline_threshold")}

    @property
    def clip_size(self) -> int:
        """Short side to decode uploads at: the model's own resize, as the CLI and training read files, so that an
        upload gives the app the model input the CLI gives (decoding larger and letting the model resize again blurs
        twice). Every picture the views show is of the model's input, so nothing larger is needed."""
        return self.model.preprocess.resize_to

    @property
    def max_frames(self) -> int:
        """Frames to decode from an upload at most: MAX_FRAMES, or twice what surprise needs where that is more (68
        for V-JEPA 2's 64-frame window). Keeping one frame in k leaves at least half the limit of any clip longer
        than it."""
        return max(MAX_FRAMES, 2 * self.model.surprise_frames())

    def load(self, path, view: str) -> Clip:
        """The upload decoded for `view` (load_clip). Surprise slides its window over up to `max_frames` frames, one
        in k; the other views read one model input, picked as the CLI's `embed` and `read_video(path, num_frames)`
        pick it: thinning the clip first and sampling the model's frames from what is left would step through it
        differently (file frames 18 to 108, one in 6, of 130; not 4 to 124, one in 8)."""
        if view not in VIEWS:  # a misspelt name would read the model input for a view that wanted the whole clip
            raise ValueError(f"unknown view {view!r}: one of {', '.join(VIEWS)}")
        if view == "surprise":
            return load_clip(path, self.clip_size, self.max_frames)
        return load_clip(path, self.clip_size, self.model.cfg.num_frames, exactly=True)

    @property
    def bank(self):
        """Patches of gallery clips with their target latents: built on the first masked prediction, then shared."""
        def build():
            count = min(_BANK_CLIPS, len(self.gallery.seeds))
            return build_patch_bank(self.model, [gallery_clip(self.gallery, i, self.model) for i in range(count)])
        return self._once("bank", build)

    @property
    def baseline_threshold(self) -> float:
        """The baseline's threshold, calibrated like the gallery's (once per model and cache folder); a ValueError,
        from that one calibration, for a baseline that has none (a collapsed one)."""
        def calibrate() -> float | str:
            try:
                return cached_surprise_threshold(self.baseline, self.cache_dir)
            except ValueError as err:  # kept: calibrating again at every request would say the same, seconds later
                return str(err)
        threshold = self._once("baseline_threshold", calibrate)
        if isinstance(threshold, str):
            raise ValueError(threshold)
        return threshold

    def _once(self, name: str, build):
        """`build()` on the first call for `name`, then its result; concurrent first calls wait for one build. Each
        value has its own lock on this Explorer: functools.cached_property holds one lock for all instances in Python
        3.11, so one checkpoint's bank (minutes for V-JEPA 2 on CPU) would hold up every other checkpoint's first
        prediction, and this Explorer's surprise view must not wait for its own bank either."""
        if name not in self._built:  # once built, read without a lock
            with self._build_locks[name]:
                if name not in self._built:
                    self._built[name] = build()
        return self._built[name]

    def is_built(self, name: str) -> bool:
        """Whether "bank" or "baseline_threshold" is ready, or its first use will build it (seconds, minutes for a
        large model on a CPU)."""
        return name in self._built

    def warm_up(self) -> "Explorer":
        """Build now what the first masked prediction and surprise comparison would otherwise wait for."""
        _ = self.bank
        if self.baseline is not None:
            with contextlib.suppress(ValueError):  # a baseline without a threshold costs its curve; the view says why
                _ = self.baseline_threshold
        return self

    @property
    def threshold(self) -> float:
        return self.gallery.surprise_threshold

    def label_names(self) -> list[str]:
        return label_names(self.gallery)

    def masked(self, video, mask: str = "multiblock", ratio: float = 0.75, seed: int = 0,
               source_frames: np.ndarray | None = None) -> MaskedView:
        """The hidden tokens, the error, both latents and the decoding, as strips of frames. `source_frames`: each
        frame's number in the uploaded file, so the numbers say which of its frames the model read and the strips
        show (None: the frames of `video`)."""
        patch, tubelet = self.model.cfg.patch_size, self.model.cfg.tubelet
        result = self.model.predict_masked(video, mask=mask, seed=seed, ratio=ratio)  # it checks both, by name
        for latents in (result.predicted, result.target):  # NaN: flat grey strips and an arbitrary decoding
            check_finite(latents)
        hidden, frames = result.mask, result.frames
        pred_rgb, target_rgb = latent_pca_images(result.predicted, result.target, hidden)
        decoded = paste_patches(frames, hidden, decode_nearest(self.bank, result.predicted), patch, tubelet)
        drawn = {} if mask == "future" else {"seed": int(seed)}  # what picked the hidden tokens, so runs tell apart
        if mask in ("tube", "random"):
            drawn["ratio"] = float(ratio)
        read = sample_frame_indices(len(video), self.model.cfg.num_frames)
        if source_frames is not None:
            read = np.asarray(source_frames)[read]
        numbers = {"mask": mask, **drawn, "hidden_tokens": int(hidden.sum()), "total_tokens": int(hidden.size),
                   "error": result.error, "mean_latent_baseline_error": self._mean_latent_error(video, result),
                   "model_frames": read.tolist(), "frames_shown": read[filmstrip_indices(len(read))].tolist()}
        # said, not only seen as repeats in model_frames; counted in the file's frames, as the app's upload comes
        # already filled to the model's length (load's exactly=True)
        if (distinct := len(np.unique(read))) < self.model.cfg.num_frames:
            numbers["note"] = (f"the model reads {distinct} different frames of the clip, fewer than its "
                               f"{self.model.cfg.num_frames}: frames repeat to fill its input, so it sees a "
                               "slowed-down clip")
        return MaskedView(hidden=_strip(shade_hidden(frames, hidden, patch, tubelet)),
                          error=_strip(heat_overlay(frames, result.error_map, patch, tubelet, where=hidden)),
                          predicted_pca=_strip(upsample_tokens(pred_rgb, patch, tubelet)),
                          target_pca=_strip(upsample_tokens(target_rgb, patch, tubelet)),
                          decoded=_strip(decoded), numbers=numbers)

    def _mean_latent_error(self, video, result) -> float:
        """The baseline that gives the error a meaning: every hidden token guessed as the mean target of the visible
        ones. Those targets come from the teacher run over the whole clip, so they have attended to the hidden tokens:
        a guess favoured over the model, which never sees them (on long-range multi-block masks, 0.14 against the
        model's 0.23 on world clips). Encoding the visible tokens alone instead puts the teacher far outside its
        training when few are visible (0.25 there, and worse than a constant on some clips), and a constant guess
        (the gallery's average token) is good or poor with how close the clip's background is to the gallery's."""
        guess = self.model.target_latents(video)[~result.mask].mean(axis=0)  # (D,)
        return float(np.abs(result.target - guess).mean())  # the per-token error of `latent_error`, averaged

    def neighbors(self, video, k: int = 8) -> list[dict]:
        """The k most similar gallery clips: index, cosine similarity, labels and a looping GIF of the clip."""
        found = nearest(self.gallery, self._embedding(video), k=k)
        return [{"index": i, "similarity": similarity, "labels": self.gallery.labels[i],
                 "thumbnail": self.thumbnail(i)} for i, similarity in found]

    def _embedding(self, video) -> np.ndarray:
        """The clip's embedding, refused in the views' words when not finite (the gallery's own check would say only
        that an embedding must be finite, naming neither the model nor the cause)."""
        return check_finite(self.model.embed(video))

    def thumbnail(self, index: int) -> Path:
        """A GIF of gallery clip `index`, rendered on first request and kept beside the gallery cache."""
        path = self.thumbnail_dir / f"{index}.gif"
        if not path.is_file():
            self.thumbnail_dir.mkdir(parents=True, exist_ok=True)
            frames = gallery_clip(self.gallery, index, self.model)
            write_video(path, frames)  # whole or not at all: a request never serves half a GIF
        return path

    def embedding_map(self, video, color_by: str = "num_objects"):
        """(plotly figure, the clip's (x, y)): the gallery's UMAP coloured by a label, with the clip placed on it."""
        if color_by not in self.label_names():
            raise ValueError(f"cannot colour the map by {color_by!r}; choose one of {', '.join(self.label_names())}")
        point = place_on_map(self.gallery, self._embedding(video))
        return map_figure(self.gallery.coords, self.gallery.labels, color_by, highlight=point), point

    def surprise(self, video, source_frames: np.ndarray | None = None, path=None) -> SurpriseView:
        """Surprise over time, and beside it the baseline's when there is one. Each curve is divided by its model's
        own threshold (errors in latents and in pixels have no common unit): 1 is where the top 5 % of moments in
        plausible clips begin, for either model. `source_frames`: each frame's number in the uploaded file (a long
        upload is sampled), so the plot and the numbers name the file's frames; None: the frames of `video`.
        `path`: the file `video` was decoded from (`load(path, "surprise")`), which the baseline then reads at its
        own size, as the CLI does; None: it resizes `video`."""
        def in_file(indices: np.ndarray) -> np.ndarray:
            return indices if source_frames is None else np.asarray(source_frames)[indices]

        result = self.model.surprise(video, max_frames=self._frames_for(self.model, video))
        check_finite(result.heatmap)  # NaN: a peak at the first NaN step and a black heatmap, as if an answer
        steps = in_file(result.step_frames)
        curves = {CURVE_NAMES[self.model.objective]: (steps, result.per_step / self.threshold)}
        shown_steps = steps_to_show(len(steps), result.peak_step)
        numbers = {"score": result.score, "threshold": self.threshold, "per_step": result.per_step.tolist(),
                   "step_frames": steps.tolist(), "peak_frame": int(steps[result.peak_step]),
                   "frames_above_threshold": steps[result.per_step > self.threshold].tolist(),
                   "heatmap_frames": steps[shown_steps].tolist()}
        if self.baseline is not None:
            numbers["baseline"] = self._baseline_surprise(video, source_frames, path, in_file, curves)
        elif self.no_baseline_because:
            numbers["baseline"] = f"no baseline curve: {self.no_baseline_because}"
        figure = surprise_figure(curves, threshold=1.0, y_title="surprise ÷ its own model's threshold",
                                 colours=CURVE_COLOURS,
                                 threshold_label=f"threshold: each model's {THRESHOLD_PERCENTILE}th percentile "
                                                 "per step, plausible clips")
        overlay = surprise_overlay(self.model.shown_frames(video), result.heatmap[shown_steps],
                                   result.step_frames[shown_steps], self.model.cfg.patch_size,
                                   vmax=float(result.heatmap.max()))  # the clip's largest, shown or not
        return SurpriseView(figure=figure, overlay=_strip(overlay, _SHOWN_STEPS), numbers=numbers)

    def _baseline_input(self, path, source_frames) -> np.ndarray:
        """The frames of the model's decoding, decoded at the baseline's own size: resizing the model's input again
        blurs twice, and pixel errors follow blur (a 480p clip decoded at 128 pixels, then resized to the baseline's
        64, moved its score by 15 % from the CLI's, over a threshold calibrated on clips drawn at 64). The same
        decoding, remembered, where the sizes agree."""
        clip = load_clip(path, self.baseline.preprocess.resize_to, self.max_frames)
        if source_frames is not None and not np.array_equal(clip.source_frames, source_frames):
            raise ValueError(f"{Path(path).name} changed while it was read; upload it again")
        return clip.frames

    def _frames_for(self, model: JEPAModel, video) -> int:
        """What a model's surprise may read of `video`: all of it up to `max_frames` (`load` thinned an upload to
        that already). A model's own limit (4 of its clips) would thin it again, to one frame in 4 of an upload for
        a 4-frame window, and a baseline that needs more frames than that limit would be refused a clip long enough
        for it."""
        return max(min(len(video), self.max_frames), model.surprise_frames())

    def _baseline_surprise(self, video, source_frames, path, in_file, curves: dict) -> dict | str:
        """The baseline's curve, added to `curves`, and its numbers; a note instead when the clip is too short for
        the baseline's surprise (a checkpoint with a shorter window can still answer). It reads the frames the model
        reads: to its own limit, a 128-frame upload for V-JEPA 2 would be thinned to one frame in two, faster motion
        than the model's curve sees and than the baseline's threshold was calibrated on."""
        try:  # the clip passed the model's own surprise: what is left to refuse is its length, an overflow, a
            threshold = self.baseline_threshold  # baseline without a threshold, or a decoding at its size
            if path is not None:
                video = self._baseline_input(path, source_frames)
            other = self.baseline.surprise(video, max_frames=self._frames_for(self.baseline, video))
            check_finite(other.heatmap)
        except ValueError as err:
            return f"no {self.baseline.objective} baseline curve: {err}"
        other_steps = in_file(other.step_frames)
        name = CURVE_NAMES[self.baseline.objective]
        if name in curves:  # a baseline of the model's own objective: its curve must not replace the model's
            name = f"baseline: {name}"
        curves[name] = (other_steps, other.per_step / threshold)
        return {"objective": self.baseline.objective, "score": other.score, "threshold": threshold,
                "per_step": other.per_step.tolist(), "step_frames": other_steps.tolist()}


def _loading_message(checkpoint: str) -> str:
    """What the progress bar says while `checkpoint` loads: a Hub id's download, or, offline, the Hub's retries
    before it is found unreachable (some 25 s), is otherwise a silent 'loading' at 0 %."""
    if fetched_from_hub(checkpoint):
        return (f"loading {checkpoint} from the Hugging Face Hub (a download on first use; offline, some 25 s of "
                "retries to find the Hub unreachable)")
    return f"loading {checkpoint}"


def steps_to_show(count: int, peak: int, num: int = _SHOWN_STEPS) -> np.ndarray:
    """Which of `count` predicted steps the heatmap strip shows: all when they fit, else `num` spread over the clip
    with the peak among them (spread alone can leave out the very step the curve points at)."""
    picks = np.linspace(0, count - 1, min(num, count)).round().astype(int)
    picks[np.abs(picks - peak).argmin()] = peak
    return picks


def _strip(frames: np.ndarray, num: int = _SHOWN_FRAMES) -> np.ndarray:
    """Up to `num` frames side by side, enlarged by the largest whole factor that keeps them at most _SHOWN_PIXELS tall
    (nearest neighbour, so tokens stay crisp): 64-pixel frames twice, to 128; frames taller than that as they are
    (V-JEPA 2's 256), never shrunk."""
    scale = max(1, _SHOWN_PIXELS // frames.shape[1])
    strip = filmstrip(frames, num=min(num, len(frames)))
    return np.repeat(np.repeat(strip, scale, axis=0), scale, axis=1)


class ExplorerCache:
    """Explorers by checkpoint, built on first request (with progress: a new gallery takes ~30 s) and then shared
    read-only by every session. The few most recently used are kept. One lock per checkpoint stops two requests
    building the same one, while requests for the others go on. (In the app a build still holds one of the model
    slots the views share, for minutes with V-JEPA 2 on CPU: hosted, it builds the checkpoints it offers at start.)"""

    def __init__(self, build, max_size: int = 4):
        self._build = build  # (checkpoint, progress) -> Explorer
        self.max_size = max_size
        self._explorers: OrderedDict[str, Explorer] = OrderedDict()  # least recently used first
        self._building: dict[str, list] = {}  # checkpoint -> [its build lock, requests holding or awaiting it]
        self._lock = threading.Lock()  # guards the two dicts, never held during a build

    def get(self, checkpoint: str, progress=None, key: str | None = None) -> Explorer:
        """The Explorer of `checkpoint`, kept under `key` (default: the name itself): a key that names the weights
        rather than the name serves one Explorer to every name of the same weights, and a new one once they change."""
        key = checkpoint if key is None else key
        with self._lock:
            if key in self._explorers:
                self._explorers.move_to_end(key)
                return self._explorers[key]
            entry = self._building.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                with self._lock:
                    if key in self._explorers:  # built while this request waited
                        return self._explorers[key]
                if progress:
                    progress(0.0, _loading_message(checkpoint))
                explorer = self._build(checkpoint, progress)
                with self._lock:
                    self._explorers[key] = explorer
                    while len(self._explorers) > self.max_size:
                        self._explorers.popitem(last=False)  # the least recently used
                return explorer
        finally:
            with self._lock:  # the last request out removes the entry, built or failed: no lock is left behind
                entry[1] -= 1
                if entry[1] == 0:
                    del self._building[key]

    def clear(self) -> None:
        with self._lock:
            self._explorers.clear()
