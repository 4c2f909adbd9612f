"""Which tokens the context encoder sees and which ones the predictor must fill in.

A mask is a boolean array over the token grid (T, H, W): True = hidden (a prediction target), False = visible
context. Every sampler takes an explicit `torch.Generator`, so the same seed always gives the same mask. Kinds:

- `multiblock`: V-JEPA's spatial blocks repeated through time ("tubes"); short-range (8 small blocks) or long-range
  (2 large blocks), chosen by the generator.
- `tube`: random single patches hidden through all time steps (VideoMAE-style tube masking).
- `future`: the last k time steps hidden: predict what comes next from what came before.
- `random`: independent random tokens at a given ratio.

`mask_to_indices` turns a mask into the (context, target) index tensors the model gathers with.
This module knows nothing about models or pixels.
"""

import math
import numbers

import torch

MASK_KINDS = ("multiblock", "tube", "future", "random")

# (number of blocks, fraction of the frame each block covers), as in V-JEPA's short- and long-range masks.
_SHORT_RANGE = (8, 0.15)
_LONG_RANGE = (2, 0.7)
_ASPECT_RANGE = (0.75, 1.5)


def multiblock_mask(grid, gen: torch.Generator, long_range: bool | None = None) -> torch.Tensor:
    """Union of rectangular blocks, each hidden through all time steps. `long_range=None`: coin flip."""
    t, h, w = grid
    if long_range is None:
        long_range = bool(torch.rand((), generator=gen, dtype=torch.float32) < 0.5)
    num_blocks, scale = _LONG_RANGE if long_range else _SHORT_RANGE
    spatial = torch.zeros(h, w, dtype=torch.bool)
    for _ in range(num_blocks):
        bh, bw = _block_size(h, w, scale, gen)
        top = int(torch.randint(0, h - bh + 1, (), generator=gen))
        left = int(torch.randint(0, w - bw + 1, (), generator=gen))
        spatial[top:top + bh, left:left + bw] = True
    return _ensure_context(spatial.expand(t, h, w).clone(), gen)


def tube_mask(grid, gen: torch.Generator, ratio: float = 0.75) -> torch.Tensor:
    """Hide a random `ratio` of spatial positions through all time steps."""
    t, h, w = grid
    spatial = _random_subset(h * w, ratio, gen).view(h, w)
    return spatial.expand(t, h, w).clone()


def future_mask(grid, num_future: int = 2) -> torch.Tensor:
    """Hide the last `num_future` time steps (no randomness: the future is always the end)."""
    t, h, w = grid
    if not 1 <= num_future < t:
        raise ValueError(f"num_future must be between 1 and {t - 1} for {t} time steps, got {num_future}")
    mask = torch.zeros(t, h, w, dtype=torch.bool)
    mask[t - num_future:] = True
    return mask


def random_mask(grid, gen: torch.Generator, ratio: float = 0.75) -> torch.Tensor:
    """Hide a random `ratio` of all tokens, independently of time."""
    t, h, w = grid
    return _random_subset(t * h * w, ratio, gen).view(t, h, w)


def sample_mask(kind: str, grid, gen: torch.Generator, ratio: float = 0.75, num_future: int = 2) -> torch.Tensor:
    """Dispatch by name; `ratio` applies to tube/random, `num_future` to future. A `ratio` given out of range is
    refused whatever the kind (multiblock hiding ~90 % of a clip asked for "at 5" would be a silent surprise); None is
    no ratio, for the kinds that use none (tube and random refuse it, in `_random_subset`)."""
    if ratio is not None:
        check_ratio(ratio)
    if kind == "multiblock":
        return multiblock_mask(grid, gen)
    if kind == "tube":
        return tube_mask(grid, gen, ratio)
    if kind == "future":
        return future_mask(grid, num_future)
    if kind == "random":
        return random_mask(grid, gen, ratio)
    raise ValueError(f"unknown mask {kind!r}; choose one of {MASK_KINDS} or pass a boolean array")


def mask_to_indices(mask: torch.Tensor, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, H, W) bool -> context indices (B, K) and target indices (B, M) into the flattened grid.

    One mask serves the whole batch: per-clip masks would need equal counts to stack, and truncating them to the
    batch minimum starves the context on small grids.
    """
    flat = torch.as_tensor(mask, dtype=torch.bool).flatten()  # (N,)
    if flat.all() or not flat.any():
        raise ValueError("a mask needs at least one visible and one hidden token")
    context = (~flat).nonzero().squeeze(1)
    target = flat.nonzero().squeeze(1)
    return context.expand(batch_size, -1), target.expand(batch_size, -1)


def _block_size(h: int, w: int, scale: float, gen: torch.Generator) -> tuple[int, int]:
    low, high = (math.log(a) for a in _ASPECT_RANGE)
    # float32 whatever torch's default dtype: a float64 default draws other numbers, so another mask for a seed
    aspect = math.exp(low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float32)))
    area = scale * h * w
    bh = max(1, min(h, round(math.sqrt(area * aspect))))
    bw = max(1, min(w, round(math.sqrt(area / aspect))))
    return bh, bw


def check_ratio(ratio) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio < 1:
        raise ValueError(f"mask ratio must be a number strictly between 0 and 1, got {ratio!r}")


def _random_subset(n: int, ratio: float, gen: torch.Generator) -> torch.Tensor:
    check_ratio(ratio)
    num_hidden = min(n - 1, max(1, round(ratio * n)))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=gen)[:num_hidden]] = True
    return mask


def _ensure_context(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blocks can cover the whole frame on tiny grids: then reveal one random tube so context is never empty."""
    if mask.all():
        t, h, w = mask.shape
        pos = int(torch.randint(0, h * w, (), generator=gen))
        mask[:, pos // w, pos % w] = False
    return mask
