"""The one preprocessing path: uint8 RGB frames -> the float tensor a model reads.

Training, the CLI and the app all call `preprocess_video`, with the `PreprocessConfig` stored in the checkpoint, so
they can never drift apart. (Reading a file, they decode it at the model's size already, with Pillow's antialiased
bilinear resize, within one grey level of this one; the resize here then changes nothing.) Steps: sample frames at
one step in time, resize the short side to `resize` (default `img_size`), centre-crop an `img_size` square, scale to
[0, 1], normalise with the config's mean/std, lay out as (C, T, H, W). It knows nothing about files (see
`jepa_demo.video`) or models.
"""

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from .config import PreprocessConfig

# A frame larger than this is refused before anything is decoded: one RGB frame of it would take 120 MB and a file
# of a few kilobytes can claim it. 8K video (7680 x 4320) has 33 million pixels. Resizing refuses the same: a strip
# of 2 x 4096 pixels, its short side scaled to V-JEPA 2's 292, would be 16.8 GB a chunk of 8 frames.
MAX_PIXELS = 40_000_000


def sample_frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """`num_frames` indices one frame in k apart, k as large as fits (the middle of the clip when they do not span
    it): 32 frames to 16 gives 0, 2, ..., 30. Rounded evenly spread indices would mix steps of k and k + 1 (0, 2, ...,
    14, 17, ...), and an object seeming to speed up is a motion the model reads. A clip shorter than `num_frames`
    has frames repeated: each step shows the frame nearest its time, so the first and last frames are shown about
    half as often as the others (3 frames to 16: 4, 8 and 4 times)."""
    num_frames = positive_int("num_frames", num_frames)  # 0 gave an empty clip, as if an answer
    if num_available < 1:
        raise ValueError("the clip has no frames")
    if num_available < num_frames:
        return np.linspace(0, num_available - 1, num_frames).round().astype(np.int64)
    step = (num_available - 1) // (num_frames - 1) if num_frames > 1 else 1
    first = (num_available - 1 - step * (num_frames - 1)) // 2
    return first + step * np.arange(num_frames, dtype=np.int64)


def whole_number(name: str, value) -> int:
    """`value` as an int; ValueError unless it is an integer, NumPy's included (a float or a bool is a caller's slip:
    8.0 frames gave float frame numbers, True passed as 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def positive_int(name: str, value, unit: str = "") -> int:
    """`value` as an int, refused unless it is a whole number (`whole_number`) of at least 1."""
    value = whole_number(name, value)
    if value < 1:
        raise ValueError(f"{name} must be at least 1{unit}, got {value}")
    return value


def check_video_array(video) -> None:
    """Reject anything that is not uint8 (T, H, W, 3) with a message saying what was received."""
    if not isinstance(video, (np.ndarray, torch.Tensor)):
        raise ValueError(f"expected a uint8 array of shape (T, H, W, 3), got {type(video).__name__}")
    if video.dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"expected uint8 frames, got dtype {video.dtype}")
    if video.ndim != 4 or video.shape[-1] != 3 or min(video.shape) < 1:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {tuple(video.shape)}")


def preprocess_video(video, cfg: PreprocessConfig, num_frames: int | None = None) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (3, T', S, S); T' = `num_frames` (`sample_frame_indices`) or T when None."""
    check_video_array(video)
    picked = None if num_frames is None else sample_frame_indices(video.shape[0], num_frames)
    if isinstance(video, np.ndarray):
        # the frames used, picked first: a copy of those only (a memory-mapped or np.broadcast_to clip of hours was
        # copied whole); torch cannot share a view with negative strides (video[::-1], np.flip) and warns on a
        # read-only one (np.broadcast_to, a cached upload)
        if picked is not None:
            video = video[picked]
        elif not video.flags.writeable or min(video.strides) < 0:
            video = video.copy()
        frames = torch.as_tensor(video)
    else:
        frames = video if picked is None else video[torch.from_numpy(picked).to(video.device)]
    x = frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    x = resize_and_crop(x, cfg.img_size, cfg.resize_to) / 255.0
    # the frames' device: a CUDA tensor may come in; float32 whatever torch's default dtype (float64 in some notebooks)
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.permute(1, 0, 2, 3).contiguous()  # (3, T, S, S)


def preprocess_batch(videos, cfg: PreprocessConfig) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> (B, 3, T, S, S): the same function applied clip by clip."""
    return torch.stack([preprocess_video(v, cfg) for v in videos])


def resize_and_crop(x: torch.Tensor, size: int, short_side: int | None = None) -> torch.Tensor:
    """(T, 3, H, W) float -> (T, 3, size, size): short side to `short_side` (default `size`; antialiased bilinear),
    then a centre crop."""
    h, w = x.shape[-2:]
    short_side = short_side or size
    if short_side * short_side * max(h, w) / min(h, w) > MAX_PIXELS:  # as read_video refuses such a file
        raise ValueError(f"frames of {w}x{h} pixels, their short side scaled to {short_side}, would be over the limit "
                         f"of {MAX_PIXELS / 1e6:.0f} million pixels a frame")
    if (h, w) != (size, size) or short_side != size:
        scale = short_side / min(h, w)
        # floored, as transformers' video processors size the long side (V-JEPA 2's): rounded, an 854 x 480 clip
        # was 520 wide, not 519, and its crop a pixel off theirs
        new_h, new_w = max(short_side, int(h * scale)), max(short_side, int(w * scale))
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        x = x[..., top:top + size, left:left + size]
    return x.clamp(0, 255)


def denormalize(x: torch.Tensor, cfg: PreprocessConfig) -> np.ndarray:
    """Inverse of `preprocess_video` for display: (3, T, S, S) -> uint8 (T, S, S, 3)."""
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1, 1)
    pixels = ((x.detach().cpu().float() * std + mean) * 255).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 3, 0).numpy()
