"""The video JEPA: context encoder, EMA target encoder ("ghost teacher") and narrow predictor.

    clip (B, 3, T, H, W) --tubelets--> tokens (B, N, D) + 3-D sin-cos positions
    context encoder(visible tokens)                       -> (B, K, D)
    predictor(context tokens + mask tokens at hidden positions) -> predicted latents (B, M, D)
    target encoder(all tokens), layer-normed, at hidden positions -> targets (B, M, D)
    loss = smooth-L1(prediction, target); target encoder <- EMA of the context encoder (no gradients)

`normalize_targets` is the only definition of the target: the training loss and every score call it. `latent_error`
(mean absolute error per token) is the error every score shows. This module knows nothing about files, masks'
sampling or training loops.
"""

import copy
from functools import lru_cache

import torch
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
    background wherever an object is less than half likely). On the synthetic world it made no clear difference to
    object tracking: after the default recipe, object-patch error stays above that of copying the last latent with
    either loss (README, "What the shipped model has and has not learned")."""
    return F.smooth_l1_loss(predicted.float(), target.float())


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, N, D) gathered at (B, K) -> (B, K, D)."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


@lru_cache(maxsize=32)
def _sincos_3d(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """Fixed 3-D sin-cos position embedding, (T*H*W, dim); time gets the remainder of the split."""
    dim_space = (dim // 3) // 2 * 2
    dim_time = dim - 2 * dim_space
    t, h, w = grid
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    parts = [_sincos_1d(tt.flatten(), dim_time), _sincos_1d(hh.flatten(), dim_space),
             _sincos_1d(ww.flatten(), dim_space)]
    return torch.cat(parts, dim=1)


def _sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / max(dim // 2, 1))
    angles = positions.double()[:, None] * freqs[None, :]  # (N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def position_embedding(grid, dim: int, device) -> torch.Tensor:
    return _sincos_3d(tuple(grid), dim).to(device)


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
        self.head = nn.Linear(cfg.pred_dim, cfg.dim)
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
    """Context encoder + predictor (trained) and their EMA target encoder (never receives gradients)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.context_encoder = VideoEncoder(cfg)
        self.predictor = Predictor(cfg)
        self.apply(_init_weights)
        self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False)

    @torch.no_grad()
    def encode_targets(self, x: torch.Tensor, target_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised target latents (B, N, D) of the whole clip, or (B, M, D) at `target_idx`."""
        targets = normalize_targets(self.target_encoder(x))
        return targets if target_idx is None else gather_tokens(targets, target_idx)

    def predict(self, x: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        """Encode only the visible tokens, then predict the latents at `target_idx`: (B, M, D)."""
        context = self.context_encoder(x, keep=context_idx)
        return self.predictor(context, context_idx, target_idx, self.context_encoder.token_grid(x))

    def forward(self, x: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> dict:
        """One training step's maths: loss plus the targets (for the collapse monitors)."""
        targets = self.encode_targets(x, target_idx)
        predicted = self.predict(x, context_idx, target_idx)
        return {"loss": prediction_loss(predicted, targets), "targets": targets}

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * context."""
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.context_encoder.parameters()]
        torch._foreach_lerp_(target, online, 1.0 - momentum)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv3d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
