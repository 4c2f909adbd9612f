"""Model and preprocessing settings: small validated dataclasses and a table of size presets.

A checkpoint's `config.json` holds both dataclasses, so a saved model rebuilds itself exactly. This module knows
nothing about training (see `train/config.py`) or about files.
"""

from dataclasses import asdict, dataclass, fields

# ImageNet statistics, the convention V-JEPA 2 and most video ViTs use; stored in every checkpoint's config.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Upper bounds checked before anything is allocated, so a hostile config.json cannot ask for terabytes.
_MAX_DIM = 4096
_MAX_DEPTH = 64
_MAX_TOKENS = 65536
# Each size is bounded on its own above; this bounds them together (16 GB of float32 weights; V-JEPA 2's ViT-g with
# its predictor counts ~1 B), so a config of in-range values cannot ask for terabytes either.
_MAX_PARAMETERS = 4_000_000_000
OBJECTIVES = ("jepa", "jepa-sigreg", "pixel")
# Preprocessing normalises in float32: a std of 1e-50 is 0 there and a mean of 1e39 infinite, every pixel inf
_FLOAT32_MAX, _FLOAT32_TINY = 3.4028234663852886e38, 1.1754943508222875e-38


def check_parameter_count(count: float) -> None:
    if count > _MAX_PARAMETERS:
        raise ValueError(f"about {shown_above(count / 1e9, _MAX_PARAMETERS / 1e9)} billion parameters, more than the "
                         f"limit {_MAX_PARAMETERS / 1e9:g} billion")


def shown_above(value: float, limit: float) -> str:
    """`value` (over `limit`) with as many decimals as it takes to read as over it, one at least: a clip of 60.03 s
    against a limit of 60 s reads '60.03', where '60.0' would contradict the refusal it is in."""
    decimals = 1
    while decimals < 6 and float(f"{value:.{decimals}f}") <= limit:
        decimals += 1
    return f"{value:.{decimals}f}"


def first_few(names: list[str]) -> str:
    """The first three of `names`, comma-separated, and ", ..." when there are more: a message's list of weights or
    files."""
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a uint8 clip becomes the model's input tensor (see `jepa_demo.preprocess`)."""

    img_size: int = 64  # square crop side after short-side resize
    num_frames: int = 16  # frames taken from a clip for one forward pass (one in k: preprocess.sample_frame_indices)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: int = 0  # short side before the centre crop; 0 = img_size (V-JEPA 2 uses img_size * 256 / 224)

    @property
    def resize_to(self) -> int:
        return self.resize or self.img_size

    def __post_init__(self):
        _check_int("img_size", self.img_size, 8, 1024)
        _check_int("num_frames", self.num_frames, 1, 1024)
        if self.resize:
            _check_int("resize", self.resize, self.img_size, 4096)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need three values (R, G, B)")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (*self.mean, *self.std)):
            raise ValueError(f"mean and std must be numbers, got {self.mean} and {self.std}")
        if not all(abs(m) < _FLOAT32_MAX and _FLOAT32_TINY <= s < _FLOAT32_MAX and (1 + abs(m)) / s < _FLOAT32_MAX
                   for m, s in zip(self.mean, self.std)):
            raise ValueError("mean must be finite and std finite and positive, with (1 + |mean|) / std within "
                             "float32's range (pixels in [0, 1] are normalised in float32), got "
                             f"{self.mean} and {self.std}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the context/target encoders (a video ViT over tubelets) and the narrower predictor."""

    img_size: int = 64  # must match PreprocessConfig.img_size
    num_frames: int = 16  # frames per forward pass; must be a multiple of `tubelet`
    patch_size: int = 8  # spatial side of one token, in pixels
    tubelet: int = 2  # frames per token
    dim: int = 128  # encoder width
    depth: int = 6  # encoder blocks
    heads: int = 4
    mlp_ratio: float = 4.0
    pred_dim: int = 64  # predictor width: narrower than the encoder, as in I-JEPA / V-JEPA
    pred_depth: int = 4
    pred_heads: int = 4
    # what the predictor predicts at hidden tokens, and from what (see `jepa_demo.model`):
    # "jepa": latents of an EMA target encoder; "jepa-sigreg": latents of the context encoder itself (no EMA), with
    # SIGReg keeping the embeddings spread; "pixel": the hidden tubelets' pixels (the VideoMAE-style baseline)
    objective: str = "jepa"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        # 16: the smallest synthetic world, which draws every checkpoint's gallery at its model's size (the app and
        # the CLI's neighbours failed on a smaller model, blaming the world's size)
        _check_int("img_size", self.img_size, 16, 1024)
        _check_int("num_frames", self.num_frames, 1, 1024)
        _check_int("patch_size", self.patch_size, 1, 256)
        _check_int("tubelet", self.tubelet, 1, 64)
        for name in ("dim", "pred_dim"):
            _check_int(name, getattr(self, name), 8, _MAX_DIM)
        for name in ("depth", "pred_depth", "heads", "pred_heads"):
            _check_int(name, getattr(self, name), 1, _MAX_DEPTH)
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)):
            raise ValueError(f"mlp_ratio must be a number, got {self.mlp_ratio!r}")
        if not 0.5 <= float(self.mlp_ratio) <= 16:
            raise ValueError(f"mlp_ratio must be in [0.5, 16], got {self.mlp_ratio}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.num_frames % self.tubelet:
            raise ValueError(f"num_frames {self.num_frames} must be a multiple of tubelet {self.tubelet}")
        if self.dim % self.heads or self.pred_dim % self.pred_heads:
            raise ValueError("dim must divide by heads and pred_dim by pred_heads")
        if self.dim % 2 or self.pred_dim % 2:
            raise ValueError("dim and pred_dim must be even (3-D sin-cos position embedding)")
        t, h, w = self.grid
        if t < 2 or h * w < 2:  # every mask hides some tokens and keeps others, in time (future) or in space
            raise ValueError(f"the token grid is {t} x {h} x {w} (time x rows x columns); a model needs at least 2 "
                             "time steps and 2 tokens a step")
        if self.num_tokens > _MAX_TOKENS:
            raise ValueError(f"{self.num_tokens} tokens per clip is more than the limit {_MAX_TOKENS}")
        check_parameter_count(self.approx_parameters)

    @property
    def approx_parameters(self) -> int:
        """The weight matrices (biases and norms left out) of the encoder, its EMA copy when there is one, and the
        predictor: blocks (attention 4 d^2, MLP 2 r d^2), the tubelet embedding and the predictor's input and output
        layers, which a config of large tubelets and few blocks makes the biggest part."""
        def block(width: int) -> float:
            return (4 + 2 * float(self.mlp_ratio)) * width ** 2
        encoders = 2 if self.objective == "jepa" else 1
        encoder = self.depth * block(self.dim) + self.dim * self.pixels_per_token
        predicted = self.pixels_per_token if self.objective == "pixel" else self.dim
        predictor = self.pred_depth * block(self.pred_dim) + self.pred_dim * (self.dim + predicted)
        return int(encoders * encoder + predictor)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (time steps, rows, columns) of one clip."""
        side = self.img_size // self.patch_size
        return (self.num_frames // self.tubelet, side, side)

    @property
    def pixels_per_token(self) -> int:
        return self.tubelet * self.patch_size ** 2 * 3

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w


# Sizes are rows of a table, not classes. `small` is the shipped CPU model; `vit-s` is the GPU recipe's.
MODEL_PRESETS: dict[str, dict] = {
    "tiny": dict(img_size=32, num_frames=4, patch_size=8, dim=32, depth=2, heads=2, pred_dim=32, pred_depth=2,
                 pred_heads=2),
    "small": dict(),
    "vit-s": dict(img_size=128, num_frames=16, patch_size=16, dim=384, depth=12, heads=6, pred_dim=192,
                  pred_depth=6, pred_heads=6),
}


def model_config_from_preset(preset: str, **overrides) -> ModelConfig:
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(MODEL_PRESETS)}")
    return ModelConfig(**{**MODEL_PRESETS[preset], **overrides})


def dataclass_from_dict(cls, values: dict, where: str):
    """Build `cls` from a JSON dict, rejecting unknown keys and wrong types with a message naming `where`."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected an object, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    for key, value in values.items():
        if known[key].type is str:
            if not isinstance(value, str):
                raise ValueError(f"{where}: {key} must be a string, got {value!r}")
        elif isinstance(value, (list, tuple)) and not str(known[key].type).startswith("tuple"):
            raise ValueError(f"{where}: {key} must be a number, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float, list, tuple)):
            raise ValueError(f"{where}: {key} must be a number (or a list of numbers), got {value!r}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except (TypeError, ValueError, OverflowError) as err:  # OverflowError: an integer too large for a float
        raise ValueError(f"{where}: {err}") from None


def to_dict(config) -> dict:
    return asdict(config)


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
