"""The video JEPA: context encoder, EMA target encoder ("ghost teacher") and narrow predictor.

    clip (B, 3, T, H, W) --tubelets--> tokens (B, N, D) + 3-D sin-cos positions
    context encoder(visible tokens)                       -> (B, K, D)
    predictor(context tokens + mask tokens at hidden positions) -> predicted targets (B, M, D')
    targets at hidden positions                            -> (B, M, D')
    loss = smooth-L1(prediction, target)

What the target is depends on `ModelConfig.objective`:
- "jepa" (default): layer-normed latents of the target encoder, an EMA of the context encoder (no gradients);
- "jepa-sigreg": layer-normed latents of the context encoder itself (no EMA, no gradient through the target); a
  SIGReg term (LeJEPA) pushes the context embeddings towards an isotropic Gaussian, which is what prevents collapse;
- "pixel": the hidden tubelets' normalised pixels (VideoMAE-style, not per-patch normalised, so a flat noisy patch
  keeps its small error): the baseline that must spend capacity on every pixel.

`normalize_targets` is the only definition of a latent target: the training loss and every score call it.
`latent_error` (mean absolute error per token) is the error every score shows, for every objective. This module knows
nothing about files, masks' sampling or training loops.
"""

import copy
import hashlib
import math
from functools import lru_cache

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


def normalize_targets(latents: torch.Tensor) -> torch.Tensor:
    """Per-token layer norm without affine parameters, as in I-JEPA/V-JEPA: the target the predictor must match."""
    return F.layer_norm(latents.float(), latents.shape[-1:])


def latent_error(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per token over the feature dimension: (..., D) x (..., D) -> (...)."""
    return (predicted.float() - target.float()).abs().mean(dim=-1)


def prediction_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (Huber, beta 1): quadratic for the small per-channel errors of unit-variance targets, so a prediction
    that is partly sure where a moving object will be gets credit (plain L1's optimum is the per-patch median, i.e.
    background wherever an object is less than half likely). On the synthetic world plain L1 did no better
    (docs/experiments.md), and neither makes the predictor track objects: after the default recipe, its error on
    object tokens is not clearly below that of copying the last visible latent (docs/results.md)."""
    return F.smooth_l1_loss(predicted.float(), target.float())


def embedding_std(targets: torch.Tensor) -> float:
    """Collapse monitor: mean over features of the std across all tokens (..., D); ~0 when all map to one point."""
    return float(targets.detach().float().flatten(0, -2).std(dim=0).mean())


def clip_spread(targets: torch.Tensor) -> float:
    """Collapse monitor across clips, (clips, tokens, D) of one mask: the std over the clips of each feature at each
    token, averaged. ~0 when every clip gets the same tokens, however much they differ from token to token (an encoder
    that shows where a token is, not what is there, passes the two monitors taken over all tokens). NaN for one clip."""
    if targets.shape[0] < 2:
        return math.nan
    return float(targets.detach().float().std(dim=0).mean())


def effective_rank(targets: torch.Tensor, max_rows: int = 4096) -> float:
    """Collapse monitor, RankMe (Garrido et al. 2023): exp(entropy) of the normalised singular values, from 1 to the
    rank the rows allow (at most their count, and D - 1 for layer-normed targets, whose rows each sum to 0); 1 for
    all-zero targets (tokens each constant across features, which layer norm maps to zeros), not NaN. At most
    `max_rows` rows, spread evenly over all of them: the first ones would be the first clips' (under DDP, rank 0's)."""
    rows = targets.detach().float().flatten(0, -2)
    if len(rows) > max_rows:
        rows = rows[torch.arange(max_rows, device=rows.device) * (len(rows) - 1) // (max_rows - 1)]
    singular = torch.linalg.svdvals(rows)
    if singular.sum() == 0:
        return 1.0
    p = singular / singular.sum() + 1e-7
    return float(torch.exp(-(p * p.log()).sum()))


def sigreg_directions(dim: int, num_slices: int, seed: int) -> torch.Tensor:
    """(dim, num_slices) Gaussian directions from a stream of their own derived from `seed`. Training seeds a step's
    mask with the same number: a generator seeded with it directly would hand both the same uniforms, and which mask
    a step drew (the first uniform) would fix the size of the first direction's first entries."""
    own_seed = int.from_bytes(hashlib.sha256(f"sigreg {seed}".encode()).digest()[:8], "little") >> 1
    return torch.randn(dim, num_slices, generator=torch.Generator().manual_seed(own_seed))


def sigreg(embeddings: torch.Tensor, num_slices: int = 64, seed: int = 0) -> torch.Tensor:
    """SIGReg (Balestriero & LeCun 2025, LeJEPA): how far (N, D) embeddings are from an isotropic standard Gaussian.
    Project them on `num_slices` random unit directions (`sigreg_directions`, so a step's regulariser is reproducible)
    and, per direction, compare the empirical characteristic function with the Gaussian one, exp(-t^2/2), by the
    Epps-Pulley statistic: N * integral of |ecf(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt, over t in [-5, 5]."""
    directions = sigreg_directions(embeddings.shape[-1], num_slices, seed).to(embeddings.device)
    # In float32 even under bf16 autocast: the gaps it measures (about 1/sqrt(N)) are bf16's rounding step.
    with torch.autocast(embeddings.device.type, enabled=False):
        projected = embeddings.float() @ (directions / directions.norm(dim=0))  # (N, S)
        t = torch.linspace(-5, 5, 17, device=embeddings.device)
        angles = projected.unsqueeze(-1) * t  # (N, S, T)
        ecf, count = _mean_over_processes(torch.stack([angles.cos().mean(0), angles.sin().mean(0)]),
                                          embeddings.shape[0])
        gaussian = torch.exp(-0.5 * t**2)
        gap = (ecf[0] - gaussian) ** 2 + ecf[1] ** 2  # (S, T): |ecf - cf|^2
        return (torch.trapezoid(gap * gaussian, t, dim=-1) * count).mean()


def _mean_over_processes(means: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
    """Per-process means over `count` rows each -> the means over every process's rows, and their number. Under DDP
    each process sees a slice of the batch; SIGReg measured per slice would weigh 1/world_size of what one process
    gives with the same batch. The gradient passes straight through to this process's rows, as if its means were the
    global ones: DDP's averaging of the processes' gradients then gives one process's over the whole batch."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return means, count
    world = dist.get_world_size()
    total = means.detach().clone()
    dist.all_reduce(total)
    return means + (total / world - means.detach()), count * world


def check_finite_weights(tensors: dict[str, torch.Tensor]) -> None:
    """ValueError naming the first floating-point tensor that holds NaN or inf. Training stops before an update that
    is not finite, so such weights mean a damaged or foreign file: refused by name when loading (ours and V-JEPA 2's),
    rather than loaded to give NaN for every clip."""
    name = next((name for name, tensor in tensors.items()
                 if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)
    if name is not None:
        raise ValueError(f"{name} holds NaN or infinite values (is the file damaged?)")


def patchify(x: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, N, tubelet * patch^2 * 3): each token's pixels, in the encoder's token order."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, tubelet * patch * patch * c)


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, N, D) gathered at (B, K) -> (B, K, D)."""
    if index.shape[0] != tokens.shape[0]:  # torch.gather would quietly keep only the first index.shape[0] clips
        raise ValueError(f"token indices for {index.shape[0]} clip(s), but the batch holds {tokens.shape[0]}: "
                         "give mask_to_indices the batch size")
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


@lru_cache(maxsize=32)
def _sincos_3d(grid: tuple[int, int, int], dim: int, device: torch.device) -> torch.Tensor:
    """Fixed 3-D sin-cos position embedding, (T*H*W, dim), on `device`; time gets the remainder of the split. Cached
    per device: copying it from the CPU in every forward would wait for the GPU each time, three times a step."""
    dim_space = (dim // 3) // 2 * 2
    dim_time = dim - 2 * dim_space
    t, h, w = grid
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    parts = [_sincos_1d(tt.flatten(), dim_time), _sincos_1d(hh.flatten(), dim_space),
             _sincos_1d(ww.flatten(), dim_space)]
    return torch.cat(parts, dim=1).to(device)


def _sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / max(dim // 2, 1))
    angles = positions.double()[:, None] * freqs[None, :]  # (N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def position_embedding(grid, dim: int, device) -> torch.Tensor:
    return _sincos_3d(tuple(grid), dim, torch.device(device))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, heads, N, hd)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # flash/memory-efficient kernels on GPU
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VideoEncoder(nn.Module):
    """ViT over tubelets (`tubelet` frames x `patch_size`^2 pixels). Any clip whose size fits the tubelet works."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        kernel = (cfg.tubelet, cfg.patch_size, cfg.patch_size)
        self.patch_embed = nn.Conv3d(3, cfg.dim, kernel_size=kernel, stride=kernel)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def token_grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        _, _, t, h, w = x.shape
        p, k = self.cfg.patch_size, self.cfg.tubelet
        if t % k or h % p or w % p:
            raise ValueError(f"clip of {t} frames x {h}x{w} px does not fit tubelets of {k} x {p}x{p}")
        return (t // k, h // p, w // p)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, N, D), or (B, K, D) for the tokens at indices `keep` (B, K)."""
        grid = self.token_grid(x)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        tokens = tokens + position_embedding(grid, tokens.shape[-1], x.device)
        if keep is not None:
            tokens = gather_tokens(tokens, keep)  # (B, K, D): hidden tokens are never seen
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


class Predictor(nn.Module):
    """Narrow ViT: context tokens + learned mask tokens at the hidden positions -> predicted target latents."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Linear(cfg.dim, cfg.pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.pred_dim))
        self.blocks = nn.ModuleList(Block(cfg.pred_dim, cfg.pred_heads, cfg.mlp_ratio) for _ in range(cfg.pred_depth))
        self.norm = nn.LayerNorm(cfg.pred_dim)
        self.head = nn.Linear(cfg.pred_dim, cfg.pixels_per_token if cfg.objective == "pixel" else cfg.dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor,
                grid) -> torch.Tensor:
        """context (B, K, D) at context_idx (B, K); returns predictions (B, M, D) at target_idx (B, M)."""
        pos = position_embedding(grid, self.mask_token.shape[-1], context.device).expand(context.shape[0], -1, -1)
        ctx = self.embed(context) + gather_tokens(pos, context_idx)  # (B, K, Dp)
        queries = self.mask_token + gather_tokens(pos, target_idx)  # (B, M, Dp)
        x = torch.cat([ctx, queries], dim=1)  # (B, K + M, Dp)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, ctx.shape[1]:]))  # (B, M, D)


class VideoJEPA(nn.Module):
    """Context encoder + predictor (trained) and, for the "jepa" objective, their EMA target encoder (never receives
    gradients). The other objectives have no target encoder; see the module docstring."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.context_encoder = VideoEncoder(cfg)
        self.predictor = Predictor(cfg)
        self.apply(_init_weights)
        if cfg.objective == "jepa":
            self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False)

    @property
    def embedding_encoder(self) -> VideoEncoder:
        """The encoder whose tokens represent a clip: the slow EMA teacher when there is one."""
        return self.target_encoder if self.cfg.objective == "jepa" else self.context_encoder

    @torch.no_grad()
    def encode_targets(self, x: torch.Tensor, target_idx: torch.Tensor | None = None) -> torch.Tensor:
        """What the predictor must match, (B, N, D') for the whole clip or (B, M, D') at `target_idx`: normalised
        latents of the embedding encoder, or the pixels of each token for the pixel objective."""
        if self.cfg.objective == "pixel":
            self.context_encoder.token_grid(x)  # refuses a clip that does not fit the tubelets, as the encoders do
            targets = patchify(x.float(), self.cfg.tubelet, self.cfg.patch_size)
        else:
            targets = normalize_targets(self.embedding_encoder(x))
        return targets if target_idx is None else gather_tokens(targets, target_idx)

    @torch.no_grad()
    def encode_visible(self, x: torch.Tensor, context_idx: torch.Tensor) -> torch.Tensor:
        """The targets of the tokens at `context_idx` as the embedding encoder gives them seeing only those, (B, K,
        D'): what a baseline may use. The whole clip's targets of the same tokens have attended to the hidden ones."""
        if self.cfg.objective == "pixel":
            return self.encode_targets(x, context_idx)  # a token's pixels never depend on the others
        return normalize_targets(self.embedding_encoder(x, keep=context_idx))

    def predict(self, x: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        """Encode only the visible tokens, then predict the targets at `target_idx`: (B, M, D')."""
        return self._predict(x, context_idx, target_idx)[0]

    def _predict(self, x, context_idx, target_idx) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.context_encoder(x, keep=context_idx)
        return self.predictor(context, context_idx, target_idx, self.context_encoder.token_grid(x)), context

    def forward(self, x: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor,
                sigreg_weight: float = 0.05, seed: int = 0) -> dict:
        """One training step's maths: the loss, and the embeddings the collapse monitors watch (target latents, or
        the context encoder's tokens for the pixel objective). `sigreg_weight` and `seed` matter for jepa-sigreg."""
        targets = self.encode_targets(x, target_idx)
        predicted, context = self._predict(x, context_idx, target_idx)
        loss = prediction_loss(predicted, targets)
        if self.cfg.objective == "jepa-sigreg":
            regularizer = sigreg(context.flatten(0, 1), seed=seed)
            loss = (1 - sigreg_weight) * loss + sigreg_weight * regularizer
        watched = normalize_targets(context.detach()) if self.cfg.objective == "pixel" else targets
        return {"loss": loss, "embeddings": watched}

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * context; nothing to do without a target encoder."""
        if self.cfg.objective != "jepa":
            return
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.context_encoder.parameters()]
        torch._foreach_lerp_(target, online, 1.0 - momentum)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv3d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
