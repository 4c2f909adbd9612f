"""One inference object per checkpoint: model + preprocessing + device, answering in numpy arrays.

    model = load_model("checkpoints/default")      # or a Hub repo id
    model.embed(video)                              # (D,) float32
    model.predict_masked(video, mask="multiblock")  # hidden-token predictions vs targets, error map
    model.surprise(video)                           # per-step surprise, heatmap, score

`video` is always a uint8 array (T, H, W, 3) as returned by `jepa_demo.read_video`; resampling and resizing happen
here through `jepa_demo.preprocess`. Targets come from `VideoJEPA.encode_targets` (the training loss's own) and
errors from `latent_error`, both in `jepa_demo.model`; the same code serves every objective, the pixel baseline too.
This module knows nothing about files, UIs or training.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import build_model, device_for, input_mismatch, resolve_checkpoint
from .config import PreprocessConfig, to_dict
from .masks import check_ratio, mask_to_indices, sample_mask
from .model import VideoJEPA, latent_error
from .preprocess import (
    check_video_array,
    denormalize,
    positive_int,
    preprocess_video,
    sample_frame_indices,
    whole_number,
)
from .video import strided_frame_indices


@dataclass
class MaskedPrediction:
    mask: np.ndarray  # (t, h, w) bool, True = hidden
    predicted: np.ndarray  # (M, D') predictions at the hidden tokens (flattened grid order)
    target: np.ndarray  # (M, D') their targets (`JEPAModel.target_latents`: normalised latents, or pixels)
    error_map: np.ndarray  # (t, h, w) per-token L1 error; 0 at visible tokens
    error: float  # mean error over hidden tokens
    frames: np.ndarray  # (T, S, S, 3) uint8: the frames the model saw


@dataclass
class Surprise:
    per_step: np.ndarray  # (S,) mean prediction error of each predicted time step
    heatmap: np.ndarray  # (S, h, w) per-token error of each predicted step
    step_frames: np.ndarray  # (S,) index in the input clip of each step's first frame
    score: float  # peak minus calmest step (see `surprise_score`)

    @property
    def peak_step(self) -> int:
        """Index into `per_step` / `step_frames` of the most surprising step."""
        return int(np.argmax(self.per_step))


def _mask_seed(seed) -> int:
    """`seed` checked against what a torch generator takes: outside it torch raises a RuntimeError that names no
    argument, and it maps a negative seed onto a positive one (-1 drew 2**64 - 2's mask)."""
    seed = whole_number("seed", seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be from 0 to 2**64 - 1, got {seed}")
    return seed


class JEPAModel:
    """A trained VideoJEPA with its preprocessing, ready for inference. `folder`: the checkpoint folder it was loaded
    from (for a Hub repo id, its snapshot in the local Hub cache; None for a model built in memory), where files
    prebuilt for it may lie."""

    def __init__(self, model: VideoJEPA, preprocess: PreprocessConfig, config: dict, device=None,
                 folder: Path | None = None):
        if problem := input_mismatch(preprocess, model.cfg):  # load_model checks config.json; this, models built here
            raise ValueError(problem)
        self.device = device_for(device)
        self.net = model.to(self.device).eval()
        self.preprocess = preprocess
        self.config = config
        self.cfg = model.cfg
        self.folder = folder

    @property
    def embed_dim(self) -> int:
        return self.cfg.dim

    @property
    def default_future_steps(self) -> int:
        """How many time steps ahead the checkpoint's future masks hid (`train.future_steps`, at most all but one of
        a window), recorded even by a run that drew none (`future_prob` 0); 2 for one that records none, as V-JEPA 2,
        trained on multi-block masks, not on predicting ahead."""
        return min(self.config.get("train", {}).get("future_steps", 2), self.cfg.grid[0] - 1)

    def surprise_frames(self, future_steps: int | None = None) -> int:
        """The fewest frames `surprise` takes: the window and one more time step per step it predicts
        (`future_steps`, default the checkpoint's), so that two steps at least are each predicted from every distance
        ahead. With fewer, no two steps are predicted alike, and the score (peak minus calmest step) could only
        compare steps predicted from different distances, for every clip alike. (The first and last steps of any clip
        are each predicted from one distance: docs/experiments.md measured scoring without them, and they carry
        signal as well as that bias.)"""
        steps = self.default_future_steps if future_steps is None else future_steps
        return self.cfg.num_frames + steps * self.cfg.tubelet

    @property
    def frames_wanted(self) -> int:
        """The most frames any call uses unless told otherwise (surprise slides over up to 4 clips' worth, or its
        `max_frames`); longer clips are thinned out."""
        return 4 * self.cfg.num_frames

    def info(self) -> dict:
        # a model built in memory has no config.json's entries: its own settings stand for them
        return {"model": self.config["model"] if "model" in self.config else to_dict(self.cfg),
                "preprocess": self.config["preprocess"] if "preprocess" in self.config else to_dict(self.preprocess),
                "step": self.config.get("step"), "device": str(self.device),
                "params": sum(p.numel() for p in self.net.parameters())}

    def _input(self, video, num_frames: int) -> torch.Tensor:
        """`num_frames` frames of `video` sampled and preprocessed, in chunks as surprise's are (a 4K clip's 64 frames
        for V-JEPA 2 took 6 GB at once): (1, 3, T, S, S)."""
        check_video_array(video)
        frames = self._preprocessed(video, sample_frame_indices(len(video), num_frames))
        return frames.unsqueeze(0).to(self.device)

    @property
    def compute_dtype(self) -> torch.dtype:
        """What the forward passes compute in: bfloat16 autocast on CUDA, float32 elsewhere."""
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.compute_dtype == torch.bfloat16)

    @torch.inference_mode()
    def embed(self, video) -> np.ndarray:
        """Mean-pooled tokens of the embedding encoder (the EMA teacher when there is one) over `num_frames` frames
        sampled over the clip: (D,) float32."""
        with self._autocast():
            tokens = self.net.embedding_encoder(self._input(video, self.cfg.num_frames))  # (1, N, D)
        return tokens.float().mean(dim=1)[0].cpu().numpy()

    @property
    def objective(self) -> str:
        """"jepa", "jepa-sigreg" or "pixel": what `predict_masked` and `surprise` predict (see jepa_demo.model)."""
        return self.cfg.objective

    @torch.inference_mode()
    def target_latents(self, video) -> np.ndarray:
        """The target of every token, (t, h, w, D'): what predictions are compared to (normalised latents; for the
        pixel baseline, the token's normalised pixels)."""
        with self._autocast():
            targets = self.net.encode_targets(self._input(video, self.cfg.num_frames))[0]  # (N, D)
        return targets.float().cpu().numpy().reshape(*self.cfg.grid, -1)

    @torch.inference_mode()
    def visible_latents(self, video, hidden: np.ndarray) -> np.ndarray:
        """The targets of the visible tokens as the model gives them seeing only those (`hidden`: (t, h, w) bool, True
        = hidden), (t, h, w, D'), NaN at hidden tokens: what a baseline that guesses the hidden targets may look at."""
        hidden = _numpy(hidden)
        if hidden.dtype != bool or hidden.shape != self.cfg.grid:  # another layout would gather the wrong tokens
            raise ValueError(f"hidden must be a bool array of the token grid's shape {self.cfg.grid}, got "
                             f"{hidden.dtype} {hidden.shape}")
        # a copy: torch.from_numpy refuses a flipped view (negative strides) and warns of a read-only one
        context_idx, _ = (i.to(self.device) for i in mask_to_indices(torch.from_numpy(hidden.copy())))
        with self._autocast():
            visible = self.net.encode_visible(self._input(video, self.cfg.num_frames), context_idx)[0]  # (K, D)
        latents = np.full((hidden.size, visible.shape[-1]), np.nan, dtype=np.float32)
        latents[context_idx[0].cpu().numpy()] = visible.float().cpu().numpy()
        return latents.reshape(*hidden.shape, -1)

    @torch.inference_mode()
    def predict_masked(self, video, mask="multiblock", seed: int = 0, ratio: float = 0.75) -> MaskedPrediction:
        """Hide tokens (a mask name, a (t, h, w) bool array, or flat hidden indices, each once), predict them,
        compare. `predicted`, `target` and the errors come in flattened grid order, whatever order indices came in.
        `ratio`: the share hidden by "tube" and "random" masks (the others have their own sizes: None is no ratio, one
        given is checked anyway)."""
        if ratio is not None:
            check_ratio(ratio)
        x = self._input(video, self.cfg.num_frames)
        hidden = self._resolve_mask(mask, seed, ratio)
        context_idx, target_idx = (i.to(self.device) for i in mask_to_indices(hidden))
        with self._autocast():
            predicted = self.net.predict(x, context_idx, target_idx)[0]  # (M, D)
            target = self.net.encode_targets(x, target_idx)[0]  # (M, D)
        errors = latent_error(predicted, target).cpu()  # (M,)
        error_map = torch.zeros(hidden.numel(), dtype=torch.float32)  # not torch's default dtype, which may be float64
        error_map[target_idx[0].cpu()] = errors
        return MaskedPrediction(mask=hidden.numpy(), predicted=predicted.float().cpu().numpy(),
                                target=target.float().cpu().numpy(), error_map=error_map.view(hidden.shape).numpy(),
                                error=float(errors.mean()), frames=self.shown_frames(video, self.cfg.num_frames))

    def _resolve_mask(self, mask, seed: int, ratio: float) -> torch.Tensor:
        grid = self.cfg.grid
        if isinstance(mask, str):
            return sample_mask(mask, grid, torch.Generator().manual_seed(_mask_seed(seed)), ratio=ratio,
                               num_future=self.default_future_steps)
        array = _numpy(mask)
        if array.dtype == bool and array.shape == grid:
            return torch.from_numpy(array.copy())
        if array.ndim == 1 and array.size == 0:  # np.asarray([]) is float: it would read as a wrong kind of mask
            raise ValueError("the mask hides no token: give at least one index to hide")
        if array.ndim == 1 and np.issubdtype(array.dtype, np.integer):
            if array.min() < 0 or array.max() >= self.cfg.num_tokens:
                raise ValueError(f"mask indices must lie in [0, {self.cfg.num_tokens}) for grid {grid}")
            if len(np.unique(array)) < array.size:  # the results hold one row per hidden token, in grid order
                raise ValueError("mask indices must not repeat: each hidden token is listed once")
            hidden = torch.zeros(self.cfg.num_tokens, dtype=torch.bool)
            hidden[torch.from_numpy(array.astype(np.int64))] = True
            return hidden.view(grid)
        raise ValueError(f"mask must be a name, a bool array of shape {grid} or a 1-D integer array of flat token "
                         f"indices, got {array.dtype} of shape {array.shape}")

    def shown_frames(self, video, num_frames: int | None = None, chunk: int = 8) -> np.ndarray:
        """The clip as the model sees it, uint8 (T, S, S, 3): `num_frames` frames sampled like the model's input, or
        every frame when None (`Surprise.step_frames` index those). Resized `chunk` frames at a time to bound memory."""
        check_video_array(video)
        video = _numpy(video)
        chunk = positive_int("chunk", chunk)
        index = np.arange(len(video)) if num_frames is None else sample_frame_indices(
            len(video), positive_int("num_frames", num_frames))
        return denormalize(self._preprocessed(video, index, chunk), self.preprocess)

    def _preprocessed(self, video: np.ndarray, frame_index: np.ndarray, chunk: int = 8) -> torch.Tensor:
        """The frames `frame_index` of `video` through the one preprocessing function, `chunk` at a time: frames
        become float32 at the file's size before they are resized, and a whole 1080p clip would take gigabytes.
        (3, T, S, S)."""
        return torch.cat([preprocess_video(video[frame_index[i:i + chunk]], self.preprocess)
                          for i in range(0, len(frame_index), chunk)], dim=1)

    @torch.inference_mode()
    def surprise(self, video, future_steps: int | None = None, max_frames: int | None = None,
                 batch_size: int = 16, progress: bool = False) -> Surprise:
        """V-JEPA-style surprise: slide a window over the clip; from its first steps, predict the last
        `future_steps` steps' target latents; error = distance to the actual ones, averaged per predicted step.
        `future_steps` defaults to the checkpoint's future masks' (`default_future_steps`). The targets
        are the teacher's over the whole window, as in training, so with `future_steps` > 1 a step's target has also
        seen the hidden steps after it: a change can lift the `future_steps` - 1 steps before it too (never earlier
        ones). `progress`: a bar over the batches of windows, when stderr is a terminal."""
        future_steps = None if future_steps is None else whole_number("future_steps", future_steps)
        batch_size = positive_int("batch_size", batch_size)
        window = self.cfg.grid[0]
        future_steps = self.default_future_steps if future_steps is None else future_steps
        if not 1 <= future_steps < window:
            raise ValueError(f"future_steps must be between 1 and {window - 1}: a window holds {window} time steps")
        x, frame_index = self._surprise_input(video, max_frames, future_steps)
        steps_in_clip = x.shape[2] // self.cfg.tubelet
        hidden = torch.zeros(self.cfg.grid, dtype=torch.bool)
        hidden[window - future_steps:] = True
        context_idx, target_idx = (i.to(self.device) for i in mask_to_indices(hidden))
        starts = list(range(steps_in_clip - window + 1))
        batches = tqdm(range(0, len(starts), batch_size), desc="surprise", unit="batch", leave=False,
                       disable=None if progress else True)  # None: only on a terminal
        errors = torch.cat([self._window_errors(x, starts[i:i + batch_size], context_idx, target_idx)
                            for i in batches])  # (W, F, h, w)
        heatmap = _average_by_step(errors, steps_in_clip, window - future_steps)
        per_step = heatmap.mean(axis=(1, 2))
        first = window - future_steps
        step_frames = frame_index[np.arange(first, steps_in_clip) * self.cfg.tubelet]
        return Surprise(per_step=per_step, heatmap=heatmap, step_frames=step_frames, score=surprise_score(per_step))

    def _surprise_input(self, video, max_frames: int | None,
                        future_steps: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Preprocess the whole clip (thinned to at most `max_frames`, one frame in k) and cut it to whole tubelets:
        `surprise_frames` frames at least."""
        check_video_array(video)
        needed = self.surprise_frames(future_steps)
        why = (f"the model's {self.cfg.num_frames}-frame window and {needed - self.cfg.num_frames} more, so that two "
               "steps are predicted from every distance ahead")
        if max_frames is not None and whole_number("max_frames", max_frames) < needed:
            raise ValueError(f"max_frames must be at least {needed} ({why}), got {max_frames}")
        frame_index = strided_frame_indices(len(video), max_frames or self.frames_wanted)
        usable = len(frame_index) // self.cfg.tubelet * self.cfg.tubelet
        if usable < needed:
            thinned = (f" (one in {frame_index[1]} kept to stay within max_frames={max_frames}: {len(frame_index)} "
                       f"left; max_frames={len(video)} keeps every frame)") if len(frame_index) < len(video) else ""
            raise ValueError(f"surprise needs a clip of at least {needed} frames ({why}), got {len(video)}{thinned}")
        frame_index = frame_index[:usable]
        x = self._preprocessed(_numpy(video), frame_index)
        return x.unsqueeze(0).to(self.device), frame_index  # (1, 3, T, S, S)

    def _window_errors(self, x, starts, context_idx, target_idx) -> torch.Tensor:
        """Errors (len(starts), F, h, w) of the hidden steps for windows starting at the given token steps."""
        k, n = self.cfg.tubelet, self.cfg.num_frames
        clips = torch.cat([x[:, :, s * k:s * k + n] for s in starts])  # (W, 3, n, S, S)
        context_idx, target_idx = context_idx.expand(len(starts), -1), target_idx.expand(len(starts), -1)
        with self._autocast():
            predicted = self.net.predict(clips, context_idx, target_idx)
            target = self.net.encode_targets(clips, target_idx)
        _, h, w = self.cfg.grid
        return latent_error(predicted, target).float().cpu().view(len(starts), -1, h, w)


def _numpy(array) -> np.ndarray:
    """A clip or a mask as a NumPy array; a torch tensor (on any device) is copied to the CPU first."""
    return array.cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def surprise_score(per_step: np.ndarray) -> float:
    """How far the clip's most surprising step stands above its most predictable one. Not the plain peak: a clip's
    level of error grows with how much moves in it (more objects, more texture), which says nothing about physics;
    with the plain peak an object appearing always scored higher and one vanishing always lower, whatever the
    model had learned. Chosen among peak-based scores on validation seeds, not on the evaluation's
    (docs/experiments.md)."""
    return float(per_step.max() - per_step.min())


def _average_by_step(errors: torch.Tensor, steps_in_clip: int, first_predicted: int) -> np.ndarray:
    """Window errors (W, F, h, w) -> one map per clip step (S, h, w), averaging windows that predict that step."""
    num_windows, future, h, w = errors.shape
    total = torch.zeros(steps_in_clip, h, w, dtype=errors.dtype)  # float32: torch's default may be float64
    count = torch.zeros(steps_in_clip, 1, 1, dtype=errors.dtype)
    for f in range(future):
        steps = torch.arange(num_windows) + first_predicted + f
        total.index_add_(0, steps, errors[:, f])
        count.index_add_(0, steps, torch.ones(num_windows, 1, 1, dtype=errors.dtype))
    return (total[first_predicted:] / count[first_predicted:]).numpy()


def load_model(path_or_repo_id, device: str | None = None) -> JEPAModel:
    """Load a checkpoint folder or Hub repo id for inference (raises `CheckpointError` with the file named)."""
    folder = resolve_checkpoint(path_or_repo_id)  # a Hub repo id: its snapshot folder in the local Hub cache
    model, preprocess, config = build_model(folder, source=str(path_or_repo_id))
    return JEPAModel(model, preprocess, config, device, folder=folder)
