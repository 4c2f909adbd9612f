"""Training settings: defaults in one dataclass, a recipe YAML holding only what differs, typed key=value overrides.

Resolution order: `TrainConfig` defaults <- recipe file <- command-line `key=value`. An unknown key or a value of the
wrong type is an error naming the key. The resolved config is written next to the outputs (`train_config.json`, with,
for data=FOLDER, which files the run draws from).
"""

import math
import os
from collections.abc import Hashable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from jepa_demo.config import MODEL_PRESETS, OBJECTIVES, model_config_from_preset
from jepa_demo.hardware import usable_cpus
from jepa_demo.world import COLORS

# The synthetic world's clips in a run have seeds seed * CLIP_SEED_STRIDE + 0, 1, 2, ... (train.data.WorldBatches).
# The evaluation's, the gallery's and the app's example clips start at jepa_demo.evaluate.HELD_OUT_SEED, written out
# here (importing it would import scikit-learn; a test checks it): no run may train on them. (The README's mask figure
# and the browser test's screenshots show seeds 3 and 2026: scenes from the training range, though never their
# violations; its surprise figure shows the app's example scene.)
CLIP_SEED_STRIDE = 10_000_019
EVALUATION_SEEDS_FROM = 1_000_000_000


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"  # checkpoint folder: weights, config, card, metrics, curves, training state
    model: str = "small"  # row of jepa_demo.config.MODEL_PRESETS
    objective: str = "jepa"  # jepa (EMA teacher) | jepa-sigreg (no EMA, SIGReg) | pixel (baseline); see jepa_demo.model
    sigreg_weight: float = 0.05  # jepa-sigreg only: loss = (1 - w) * prediction + w * SIGReg (LeJEPA's default)
    data: str = "world"  # "world" (synthetic, generated on the fly) or a folder of video files
    # synthetic world: half the clips (detail_prob) get irrelevant detail so the encoder learns to ignore it
    max_objects: int = 3
    detail_prob: float = 0.5
    noise_std: float = 0.05
    # optimisation
    steps: int = 1500
    batch_size: int = 16  # global: split across DDP processes
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    ema_start: float = 0.996  # EMA momentum rises from ema_start to ema_end over training (cosine)
    ema_end: float = 1.0
    # masking: each batch gets the future mask with probability future_prob, else a multi-block mask
    future_prob: float = 0.5
    future_steps: int = 2
    seed: int = 0
    # logging and saving
    log_every: int = 10
    save_every: int = 200
    # hardware
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False  # torch.compile (CUDA only: it was slower than eager for training on CPU)
    num_workers: int = 0  # data-loading processes

    def __post_init__(self):
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"model must be one of {sorted(MODEL_PRESETS)}, got {self.model!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not 0 <= self.sigreg_weight < 1:
            raise ValueError(f"sigreg_weight must be in [0, 1), got {self.sigreg_weight}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("steps", "batch_size", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("detail_prob", "future_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0 <= self.ema_start <= self.ema_end <= 1:
            raise ValueError(f"need 0 <= ema_start <= ema_end <= 1, got ema_start={self.ema_start} and "
                             f"ema_end={self.ema_end}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be at least 0, got {self.warmup_steps}")
        for name in ("lr", "grad_clip"):  # a negative clip norm would flip every gradient, silently
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0, got {getattr(self, name)}")
        if self.min_lr > self.lr:  # min_lr's default, 1e-5, is above a small fine-tuning lr: said, as is the fix
            raise ValueError(f"min_lr ({self.min_lr:g}) must not be above lr ({self.lr:g}): set min_lr too")
        if not (self.min_lr >= 0 and self.weight_decay >= 0):
            raise ValueError("min_lr and weight_decay must be at least 0")
        for name in ("lr", "weight_decay"):  # an infinite one makes every weight NaN at the first step
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not 0 <= self.noise_std <= 1:  # as the world checks it, for a data folder too (NaN would reach the JSON)
            raise ValueError(f"noise_std is in units of full intensity: between 0 and 1, got {self.noise_std}")
        if not math.isfinite(self.grad_clip):  # recorded in config.json and the card, and JSON has no infinity
            raise ValueError(f"grad_clip must be a finite number, got {self.grad_clip} (a large one, such as 1e9, "
                             "leaves the gradients unclipped)")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be at least 0, got {self.num_workers}")
        # a typo (num_workers=10000) forked workers until memory ran out, before a stop request could be heard
        if self.num_workers > (most := 4 * usable_cpus()):
            raise ValueError(f"num_workers {self.num_workers} is more than 4 per CPU core this process may use: at "
                             f"most {most} (more only fight over the cores)")
        if not 1 <= self.max_objects <= len(COLORS):  # the world's own check names settings training does not have
            raise ValueError(f"max_objects must be between 1 and {len(COLORS)} (one colour per object), got "
                             f"{self.max_objects}")
        time_steps = model_config_from_preset(self.model).grid[0]
        if not 1 <= self.future_steps < time_steps:  # its default, 2, is too many for the tiny model: named
            raise ValueError(f"future_steps must be between 1 and {time_steps - 1}: model {self.model} sees "
                             f"{time_steps} time steps, and future_steps is {self.future_steps} (set "
                             f"future_steps={time_steps - 1} or lower)")
        if not self.out_dir.strip():
            raise ValueError("out_dir must name a folder")
        # ~ as load_model reads it: a recipe's is never expanded by a shell, nor zsh's out_dir=~/x
        self.out_dir, self.data = os.path.expanduser(self.out_dir), os.path.expanduser(self.data)
        if not self.data.strip():  # Path("") is the working folder: an unset $VIDEOS would train on whatever is there
            raise ValueError("data must be world or name a folder of video files")
        if not 0 <= self.seed < 2**32:  # seeds torch's and numpy's generators with the step mixed in
            raise ValueError(f"seed must be between 0 and 2**32 - 1, got {self.seed}")
        clips = self.steps * self.batch_size
        if self.data == "world" and clips > EVALUATION_SEEDS_FROM:
            raise ValueError(f"steps x batch_size = {clips:_} world clips, more than the {EVALUATION_SEEDS_FROM:_} "
                             "before the seeds the evaluation and the app use: fewer steps or a smaller batch")
        if self.data == "world" and self.seed * CLIP_SEED_STRIDE + clips > EVALUATION_SEEDS_FROM:
            raise ValueError(f"seed={self.seed} would train on the world clips the evaluation and the app use (seeds "
                             f"from {EVALUATION_SEEDS_FROM:_}); with {clips} clips the seed can be at most "
                             f"{(EVALUATION_SEEDS_FROM - clips) // CLIP_SEED_STRIDE}")


def load_config(recipe: str | None, overrides: list[str]) -> TrainConfig:
    if recipe is not None and not recipe.strip():  # --config "$RECIPE" with RECIPE unset: not a run of the defaults
        raise ValueError("--config is empty: give a recipe file, e.g. train/configs/cpu.yaml, or leave --config out")
    values = _typed(_read_recipe(recipe), "recipe") if recipe is not None else {}
    values.update(parse_overrides(overrides))
    return TrainConfig(**values)


def parse_overrides(items: list[str]) -> dict:
    """["lr=3e-4", "compile=true"] -> {"lr": 0.0003, "compile": True}, typed by the TrainConfig field."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    values, given = {}, {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value")
        if key not in types:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(types))}")
        if key in given:  # the last would win without a word, and the run not be the one asked for
            raise ValueError(f"{key} is given twice ({given[key]} and {item}); give it once")
        values[key], given[key] = _coerce(key, text, types[key]), item
    return values


def _coerce(key: str, text: str, kind):
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{key} must be true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{key} must be {_KIND_NAMES[kind]}, got {text!r}") from None


_KIND_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


_YAML_INF_NAN = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}  # YAML's spellings, Python's


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice: the last would win without a word (lr: 0.001 near the top
    and an lr: 0.01 added further down), as the overrides refuse a key given twice."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: flatten_mapping below merges it
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it below, in its words
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_number(self, node, kind: type):
        """A number as an override reads it (Python's `kind`, int or float): YAML 1.1 read `seed: 010` as octal 8,
        `steps: 25:00` as 1500 (base 60) and `1:30.0` as 90.0, where seed=010 is 10. YAML's own .inf and .nan stay
        numbers (the checks refuse them by name). Text Python does not read stays text, which `_typed` refuses."""
        text = self.construct_scalar(node)
        try:
            return kind(_YAML_INF_NAN.get(text.lower(), text))
        except ValueError:
            return text


_RecipeLoader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: loader.construct_number(node, int))
_RecipeLoader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: loader.construct_number(node, float))


_MAX_RECIPE_BYTES = 2**20


def _read_recipe(path: str) -> dict:
    path = Path(os.path.expanduser(path))  # --config=~/r.yaml: no shell expands ~ after the = (as out_dir and data)
    try:  # is_file too: a name too long or a folder one may not enter raises rather than answer False
        if path.is_dir():
            raise ValueError(f"recipe {path} is a folder: give a recipe file in it, e.g. {path / 'cpu.yaml'}")
        if not path.exists():
            raise ValueError(f"recipe {path} not found")
        # --config clip.mp4 is not read whole into memory to find out; nor is a pipe (`--config <(sed ... r.yaml)`,
        # which has no size to check first) or a device
        with path.open("rb") as recipe:
            text = recipe.read(_MAX_RECIPE_BYTES + 1)
        if len(text) > _MAX_RECIPE_BYTES:
            raise ValueError(f"recipe {path} is more than 1 MB, not a recipe (a few lines of key: value)")
        values = yaml.load(text.decode(), Loader=_RecipeLoader)
    except UnicodeDecodeError:
        raise ValueError(f"recipe {path} is not a text file") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ValueError(f"recipe {path} is not valid YAML: nested too deeply") from None
    except OSError as err:  # not "could not write": nothing has been written yet
        raise ValueError(f"cannot read recipe {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        what = " ".join(filter(None, (getattr(err, "context", None), getattr(err, "problem", None))))
        what = what or str(err).splitlines()[0]  # a ReaderError (a control character) has neither, and two lines
        raise ValueError(f"recipe {path} is not valid YAML{where}: {what}") from None
    if values is None:  # `--config <(sed ... typo.yaml)`, whose sed failed: not a run of the defaults, unasked
        raise ValueError(f"recipe {path} holds no settings (an empty file, or comments only)")
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a mapping of key: value")
    return values


def _typed(values: dict, source: str) -> dict:
    """A recipe's values, checked against the TrainConfig fields. PyYAML reads 3e-4 (no dot) as a string, so a
    number written as text is read as one, as an override would be."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    typed = {}
    for key, value in values.items():
        if key not in types:
            raise ValueError(f"unknown setting {key!r} in {source}; known: {', '.join(sorted(types))}")
        kind = types[key]
        if isinstance(value, str) and kind in (int, float, bool):  # as on the command line: compile: "true"
            value = _coerce(key, value, kind)
        elif kind is bool and type(value) is int:  # compile: 1, as compile=1 is on the command line
            value = _coerce(key, str(value), kind)
        expected = (int, float) if kind is float else kind
        if isinstance(value, bool) and kind is not bool or not isinstance(value, expected):
            # YAML reads out_dir: 2024 as a number (and 0123 as 83): a name is not guessed from one
            number = kind is str and type(value) in (int, float)
            quote = " (quote it in the recipe: YAML read it as a number)" if number else ""
            raise ValueError(f"{key} must be {_KIND_NAMES[kind]}, got {value!r}{quote}")
        if kind is float and isinstance(value, int):  # a whole number in a float setting: as an override reads it
            try:
                value = float(value)
            except OverflowError:  # 309 digits or more; math.isfinite would raise it, not answer
                raise ValueError(f"{key} must be a finite number, got an integer of {len(str(value))} digits") from None
        typed[key] = value
    return typed


def config_to_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
