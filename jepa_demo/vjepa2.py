"""Meta's V-JEPA 2 (through `transformers`) behind the same interface as our own models.

    load_model("facebook/vjepa2-vitl-fpc64-256")   # or a folder written by VJEPA2Model.save_pretrained

`VJEPA2Net` answers the calls `jepa_demo.inference.JEPAModel` makes of a `VideoJEPA` (`cfg`, `embedding_encoder`,
`encode_targets`, `predict`), so embedding, masked prediction, surprise, the gallery and every app view work
unchanged. Two things differ from `VJEPA2Model.forward`, on purpose:
- the encoder sees only the visible tokens when predicting (`forward` encodes the whole clip and masks afterwards,
  which would let the prediction peek at what it predicts); the encoder's rotary positions take the kept indices;
- targets are the layer-normed encoder outputs of the whole clip (`normalize_targets`), as in V-JEPA's training and
  its intuitive-physics evaluation.
Preprocessing is reproduced from the saved video-processor config (short-side resize, centre crop, ImageNet
mean/std) through `jepa_demo.preprocess`: `VJEPA2VideoProcessor` itself needs torchvision. `transformers` is imported
only when such a checkpoint is loaded.
"""

import json
import math
import re
import sys
import threading
from pathlib import Path

import torch
import torch.nn as nn

from .config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelConfig,
    PreprocessConfig,
    check_parameter_count,
    first_few,
    to_dict,
)
from .model import check_finite_weights, gather_tokens, normalize_targets

MODEL_TYPE = "vjepa2"
# Where transformers' processors save their settings, newest name first.
PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
# What to fetch of a V-JEPA 2 Hub repo (weights as safetensors, single or sharded; never pickles).
HUB_FILES = ("config.json", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
             *PROCESSOR_FILES)
_QUIET_LOADING = threading.Lock()


def is_vjepa2_config(config: dict) -> bool:
    return isinstance(config, dict) and config.get("model_type") == MODEL_TYPE


def model_config(hf_config: dict) -> ModelConfig:
    """Our architecture record of a VJEPA2Config dict, validated (sizes bounded) before any weight is allocated."""
    _check_other_sizes(hf_config)
    try:
        cfg = ModelConfig(**{ours: hf_config[theirs] for ours, theirs in _FIELDS.items()},
                          mlp_ratio=hf_config.get("mlp_ratio", 4.0))
    except KeyError as err:
        raise ValueError(f"a V-JEPA 2 config needs {err.args[0]!r}") from None
    except ValueError as err:  # in the names config.json uses, not ours ("dim must be between ...")
        raise ValueError(_OUR_NAMES.sub(lambda name: _FIELDS[name[0]], str(err)).removesuffix(
            " (3-D sin-cos position embedding)")) from None
    # ModelConfig sized the predictor's MLPs with the encoder's ratio: V-JEPA 2's has its own
    extra = cfg.pred_depth * 2 * (hf_config.get("pred_mlp_ratio", 4.0) - cfg.mlp_ratio) * cfg.pred_dim**2
    check_parameter_count(cfg.approx_parameters + extra)
    return cfg


# Our ModelConfig's fields and the VJEPA2Config fields they are read from.
_FIELDS = {"img_size": "crop_size", "num_frames": "frames_per_clip", "patch_size": "patch_size",
           "tubelet": "tubelet_size", "dim": "hidden_size", "depth": "num_hidden_layers",
           "heads": "num_attention_heads", "pred_dim": "pred_hidden_size", "pred_depth": "pred_num_hidden_layers",
           "pred_heads": "pred_num_attention_heads"}
_OUR_NAMES = re.compile(rf"\b({'|'.join(_FIELDS)})\b")


def _check_other_sizes(hf_config: dict) -> None:
    """The VJEPA2Config fields that size weights and have no place in our record. transformers allocates (and
    initialises) every weight whose shape the file does not match before it reports the mismatch, so a hostile value
    would take the memory first: a predictor MLP ratio of 2000 at ViT-L sizes is about 28 GB. And the layer norms'
    epsilon: NaN or a negative one made every output NaN (blamed on the weights), 1e30 gave every clip one embedding."""
    # key: (VJEPA2Config's default, lowest, highest); in_chans 3: the frames are RGB
    bounds = {"in_chans": (3, 3, 3), "pred_num_mask_tokens": (10, 1, 64), "pred_mlp_ratio": (4.0, 0.5, 16),
              "layer_norm_eps": (1e-6, 1e-12, 1e-2)}
    for key, (default, low, high) in bounds.items():
        value = hf_config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{key} must be a number in [{low}, {high}], got {value!r}")


# What `jepa_demo.preprocess` does, as a video-processor config says it: resize, centre crop, scale to [0, 1],
# normalise (a processor file may switch each off; none of Meta's does)
_FIXED_STEPS = {"do_resize": True, "do_center_crop": True, "do_rescale": True, "rescale_factor": 1 / 255,
                "do_normalize": True, "resample": 2}  # 2: PIL's bilinear, as preprocess_video resizes


_PROCESSOR = "VJEPA2VideoProcessor"


def _same(saved, expected) -> bool:
    """A saved float may be rounded (1/255 written as float32): equal to a few ulps; anything else exactly."""
    if isinstance(expected, float) and isinstance(saved, (int, float)) and not isinstance(saved, bool):
        return math.isclose(saved, expected, rel_tol=1e-6)
    return type(saved) is type(expected) and saved == expected


def preprocess_config(folder: Path, cfg: ModelConfig) -> PreprocessConfig:
    """From the saved video-processor config when there is one (crop, mean and std), else V-JEPA 2's defaults for
    this crop size."""
    saved = next((folder / name for name in PROCESSOR_FILES if (folder / name).is_file()), None)
    try:
        settings = json.loads(saved.read_text()) if saved else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{saved.name} is not valid JSON ({err})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{saved.name}: expected an object of settings, got {type(settings).__name__}")
    kind = settings.get("video_processor_type", _PROCESSOR)
    if kind != _PROCESSOR:  # transformers would build that class, with its own sizes and steps
        raise ValueError(f"{saved.name}: a {kind} is not supported: jepa_demo preprocesses as a {_PROCESSOR} does")
    changed = {key: settings[key] for key, value in _FIXED_STEPS.items() if not _same(settings.get(key, value), value)}
    if changed:  # transformers would honour them, and feed the model other inputs than preprocess_video makes
        raise ValueError(f"{saved.name}: {changed} is not supported: jepa_demo always resizes, centre-crops, scales "
                         "by 1/255 and normalises")
    crop = settings.get("crop_size", cfg.img_size)
    if isinstance(crop, dict):  # {"height": h, "width": w}, as transformers saves it: square crops only
        if "height" not in crop or crop.get("width", crop["height"]) != crop["height"]:
            raise ValueError(f"{saved.name}: crop_size must give one height (and the same width), got {crop}")
        crop = crop["height"]
    mean, std = settings.get("image_mean", IMAGENET_MEAN), settings.get("image_std", IMAGENET_STD)
    if not (isinstance(mean, (list, tuple)) and isinstance(std, (list, tuple))):
        raise ValueError(f"{saved.name}: image_mean and image_std must be lists of three numbers")
    if isinstance(crop, bool) or not isinstance(crop, int):  # "256" would read 'crop size 256 differs from ... 256'
        raise ValueError(f"{saved.name}: crop_size must be a whole number of pixels, got {crop!r}")
    if crop != cfg.img_size:
        raise ValueError(f"{saved.name}: crop size {crop} differs from the model's crop_size {cfg.img_size}")
    # transformers' VJEPA2VideoProcessor (5.x) sets the short side from the crop and ignores a saved size: so do we
    resize = int(cfg.img_size * 256 / 224)
    try:
        return PreprocessConfig(img_size=cfg.img_size, num_frames=cfg.num_frames, resize=resize, mean=tuple(mean),
                                std=tuple(std))
    except ValueError as err:
        raise ValueError(f"{saved.name if saved else 'preprocessing'}: {err}") from None


def check_safetensors_only(folder: Path, hf_config: dict) -> list[str]:
    """Refuse a folder that would make transformers unpickle: `use_safetensors=True` does not stop a config's
    "transformers_weights": "adapter_model.bin", nor an index whose shards are .bin files. The weight files it loads,
    as named there (model.safetensors when nothing names them)."""
    named = hf_config.get("transformers_weights")
    layouts = ("model.safetensors", "model.safetensors.index.json")
    if named is None and all((folder / name).is_file() for name in layouts):
        # transformers loads the single file, while the index may name other weights, or shards no longer there
        if _in_hub_cache(folder):  # a Hub repo that publishes both: not the user's to fix; checked as loaded
            return ["model.safetensors"]
        # a local folder saved twice in different layouts (save_pretrained removes only shards)
        raise ValueError("holds both model.safetensors and model.safetensors.index.json, the weights of two saves: "
                         "remove the older layout")
    if named is None:
        indexes = [folder / "model.safetensors.index.json"]
    else:  # the named file alone, as transformers loads it, whatever index an earlier save left beside it
        indexes = [folder / named] if isinstance(named, str) and named.endswith(".index.json") else []
    files = [] if named is None else [named]
    for index in indexes:
        if index.is_file():
            try:
                files += list(json.loads(index.read_text())["weight_map"].values())
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{index.name} is not a safetensors index (no weight_map object)") from None
    for name in files:
        if not isinstance(name, str) or not name.endswith((".safetensors", ".safetensors.index.json")):
            raise ValueError(f"weights {name!r} are not safetensors; only safetensors are loaded (nothing is "
                             "unpickled)")
    return sorted({name for name in files if name.endswith(".safetensors")} or {"model.safetensors"})


def _in_hub_cache(folder: Path) -> bool:
    """Whether `folder` is a download of a Hub repo (a snapshot in the Hub's cache)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).resolve() in folder.resolve().parents


def check_floating(folder: Path, files: list[str], used: set[str], prefix: str) -> None:
    """ValueError naming a tensor of the model's (`used`; in the file perhaps under `prefix`., as a task model saves
    it) that the weight `files` it was loaded from hold as integers (headers only): loaded as float32, they would
    become weights without a word. Tensors the model does not use (a file's extra counters, say) are left alone, as
    transformers leaves them."""
    from safetensors import safe_open

    for name in files:
        with safe_open(folder / name, framework="pt") as weights:
            for key in weights.keys():
                if key.removeprefix(f"{prefix}.") not in used:
                    continue
                if not (dtype := weights.get_slice(key).get_dtype()).startswith(("F", "BF")):  # F32, BF16, F8_E4M3
                    raise ValueError(f"{name}: {key} holds {dtype} values, not floating-point weights")


def _query_with_a_trained_mask_token(hf_model) -> None:
    """transformers' predictor always fills the hidden positions with mask token 1 (the default of Meta's predictor
    too), while Meta's training picks the token by the clip-length group of the batch: a model trained on one clip
    length trains token 0 alone and leaves the others at their zero initialisation, so the predictor would be queried
    with a zero vector it never saw. For exactly that case (token 1 all zeros, token 0 not) token 0 is copied into
    token 1, in memory; any other model is left as it is."""
    tokens = hf_model.predictor.embeddings.mask_tokens
    if len(tokens) > 1 and not tokens[1].any() and tokens[0].any():
        with torch.no_grad():
            tokens[1].copy_(tokens[0])


class VJEPA2Net(nn.Module):
    """A transformers VJEPA2Model seen through our model interface (inputs (B, 3, T, H, W), as preprocess makes)."""

    def __init__(self, hf_model, cfg: ModelConfig):
        super().__init__()
        self.hf = hf_model
        self.cfg = cfg

    @property
    def embedding_encoder(self):
        return self.encode

    def freshly_initialised(self) -> "VJEPA2Net":
        """The same architecture with transformers' initial weights (drawn from torch's global generator), float32."""
        return VJEPA2Net(type(self.hf)(self.hf.config).float().eval(), self.cfg)

    def encode(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder outputs (B, N, D), or (B, K, D) of the tokens at `keep` (B, K), computed without the others."""
        encoder = self.hf.encoder
        tokens = encoder.embeddings(x.transpose(1, 2))  # transformers reads (B, T, 3, H, W)
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        for layer in encoder.layer:
            tokens = layer(tokens, keep)[0]  # rotary positions of the kept tokens
        return encoder.layernorm(tokens)

    @torch.no_grad()
    def encode_targets(self, x: torch.Tensor, target_idx: torch.Tensor | None = None) -> torch.Tensor:
        targets = normalize_targets(self.encode(x))
        return targets if target_idx is None else gather_tokens(targets, target_idx)

    @torch.no_grad()
    def encode_visible(self, x: torch.Tensor, context_idx: torch.Tensor) -> torch.Tensor:
        return normalize_targets(self.encode(x, keep=context_idx))

    def predict(self, x: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        """Encode the visible tokens alone, then run V-JEPA 2's predictor: (B, M, D) at `target_idx`."""
        context = self.encode(x, keep=context_idx)
        # The predictor gathers its context from a full-grid tensor; hidden positions stay zero and are never read.
        grid = context.new_zeros(context.shape[0], self.cfg.num_tokens, context.shape[-1])
        grid.scatter_(1, context_idx.unsqueeze(-1).expand_as(context), context)
        return self.hf.predictor(grid, context_mask=[context_idx], target_mask=[target_idx]).last_hidden_state


def build_vjepa2(folder: Path, hf_config: dict, source: str) -> tuple[VJEPA2Net, PreprocessConfig, dict]:
    """(network in eval mode on CPU, its preprocessing, a config record like our checkpoints'); `source` is what the
    user asked for (a folder or a Hub id)."""
    try:
        cfg = model_config(hf_config)
    except ValueError as err:
        raise ValueError(f"config.json: {err}") from None
    preprocess = preprocess_config(folder, cfg)
    files = check_safetensors_only(folder, hf_config)
    from transformers import VJEPA2Model
    from transformers.utils import logging as hf_logging

    # transformers' verbosity and bars are global: one lock, so two checkpoints loading at once (the app's threads)
    # cannot leave them changed.
    with _QUIET_LOADING:
        verbosity = hf_logging.get_verbosity()
        hide_bar = hf_logging.is_progress_bar_enabled() and not sys.stderr.isatty()  # like ours: none in a log file
        hf_logging.set_verbosity_error()  # its load report: a missing weight is our error below, extra ones are fine
        if hide_bar:
            hf_logging.disable_progress_bar()
        try:
            # float32 as our checkpoints (CUDA gets bf16 by autocast): by default transformers 5 takes the dtype
            # config.json records, and a model saved in half precision would run in it on CPU
            # ignore_mismatched_sizes: a weight of another shape than config.json makes is then in the loading info,
            # refused below by name, rather than raised as 'look at the above report' of the log hidden here
            hf_model, loading = VJEPA2Model.from_pretrained(folder, use_safetensors=True, output_loading_info=True,
                                                            dtype=torch.float32, ignore_mismatched_sizes=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            if hide_bar:
                hf_logging.enable_progress_bar()
    if mismatched := sorted(loading["mismatched_keys"]):
        (key, stored, made), more = mismatched[0], len(mismatched) - 1
        raise ValueError(f"the weights do not fit config.json: {key} is {tuple(stored)} in the file, {tuple(made)} "
                         f"in the model config.json makes{f' ({more} more)' if more else ''}")
    # from_pretrained drops a weight config.json does not build (a layer more than num_hidden_layers, a bias where
    # qkv_bias is false) without a word; a task head's (classifier, pooler) has no place in this model and may go
    prefix = f"{hf_model.base_model_prefix}."
    if dropped := sorted(key for key in loading["unexpected_keys"]
                         if key.removeprefix(prefix).startswith(("embeddings.", "encoder.", "predictor."))):
        raise ValueError(f"the weights hold {len(dropped)} tensors the model config.json makes has no place for "
                         f"({first_few(dropped)}): they would be dropped")
    if missing := sorted(loading["missing_keys"]):  # from_pretrained only warns, and leaves them at random values
        raise ValueError(f"the weights lack {len(missing)} of the model's tensors ({first_few(missing)}): they "
                         "would be random")
    check_floating(folder, files, set(hf_model.state_dict()), hf_model.base_model_prefix)
    check_finite_weights(hf_model.state_dict())
    _query_with_a_trained_mask_token(hf_model)
    record = {"format": MODEL_TYPE, "source": source, "step": None, "model": to_dict(cfg),
              "preprocess": to_dict(preprocess)}
    return VJEPA2Net(hf_model, cfg).eval(), preprocess, record
