"""The training loop: schedules, one JEPA step, collapse monitors, atomic saves and exact resume.

Everything that varies over training is a pure function of the step (learning rate, EMA momentum, the batch, the
mask), so `--resume` only needs the weights and the optimiser state to continue exactly where a run stopped.
Run it through `python -m train` (see `train/__main__.py`).
"""

import contextlib
import fcntl
import hashlib
import math
import os
import shutil
import signal
import stat
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from jepa_demo.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    atomic_write,
    check_writable_folder,
    first_detail,
    flush_to_disk,
    is_temporary_name,
    load_tensors,
    read_config,
    save_checkpoint,
    save_tensors,
    write_json,
)
from jepa_demo.cli import BestEffortStderr, say
from jepa_demo.config import PreprocessConfig, first_few, model_config_from_preset, to_dict
from jepa_demo.gallery import remove_galleries
from jepa_demo.hardware import describe_hardware
from jepa_demo.masks import future_mask, mask_to_indices, multiblock_mask
from jepa_demo.model import VideoJEPA, clip_spread, effective_rank, embedding_std
from jepa_demo.training_metrics import METRICS_NAME, append_row, read_raw_rows, rows_logged_before, write_rows

from .config import TrainConfig, config_to_dict
from .data import FolderBatches, WorldBatches, make_loader
from .report import (
    CARD_NAME,
    CURVES_NAME,
    TRAIN_CONFIG_NAME,
    CollapseAlarm,
    monitor_text,
    plot_curves,
    read_run_record,
    recorded_file_count,
    write_model_card,
)

STATE_NAME = "train_state.safetensors"
# Settings a resumed run may take new values of: how it is logged, saved and run. The device and compile change the
# sums (bf16 on CUDA, float32 on CPU; compiled kernels round otherwise): such a run goes on, not bit for bit the same.
MAY_CHANGE_ON_RESUME = {"out_dir", "log_every", "save_every", "device", "compile", "num_workers"}
# Recorded in train_config.json since a later version than some runs: a run recorded without one is not refused on it
RECORDED_LATER = {"data_files", "data_sizes", "data_labels"}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def momentum_at(step: int, cfg: TrainConfig) -> float:
    """EMA momentum rising from ema_start to ema_end (cosine): the ghost teacher slows down as training settles."""
    progress = min(1.0, step / max(1, cfg.steps))
    return cfg.ema_end - (cfg.ema_end - cfg.ema_start) * 0.5 * (1 + math.cos(math.pi * progress))


def mask_for_step(step: int, cfg: TrainConfig, grid) -> tuple[str, torch.Tensor]:
    """The step's mask, drawn from a generator seeded by (seed, step): same step, same mask, on every rank."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    if float(torch.rand((), generator=gen)) < cfg.future_prob:
        return "future", future_mask(grid, cfg.future_steps)
    return "multiblock", multiblock_mask(grid, gen)


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Single process, or DDP when launched by torchrun (nccl on CUDA, gloo on CPU)."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda, but this torch sees no CUDA GPU; use device=auto or device=cpu")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if "RANK" not in os.environ:
        return Runtime(torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda and local_rank >= torch.cuda.device_count():
        raise ValueError(f"process {local_rank} has no GPU of its own: this machine has {torch.cuda.device_count()}; "
                         f"use --nproc_per_node {torch.cuda.device_count()} or fewer (a --resume needs the run's own "
                         "number of processes: on fewer GPUs, device=cpu)")
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return Runtime(device, rank, dist.get_world_size())


def build_optimizer(model: VideoJEPA, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parts; no weight decay on biases and norms (1-D). Like I-JEPA's, every tensor of two
    or more dimensions is decayed, the predictor's (1, 1, D) mask token included."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


_LOWER_LR = "a lower lr may help, as a new run (in another out_dir if this one saved)"


class TrainingDiverged(ValueError):
    """The loss or the gradients stopped being numbers. Resuming would replay the same steps into the same state, and
    the learning rate cannot change on resume: only a new run helps."""


def train_step(model: VideoJEPA, forward, optimizer, batch: torch.Tensor, step: int, cfg: TrainConfig,
               runtime: Runtime) -> dict:
    """One optimisation step: predict the hidden targets, update context encoder + predictor, then EMA the target
    encoder (when the objective has one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    mask_name, mask = mask_for_step(step, cfg, model.cfg.grid)
    context_idx, target_idx = (i.to(runtime.device) for i in mask_to_indices(mask, batch.shape[0]))
    with runtime.autocast:
        out = forward(batch, context_idx, target_idx, sigreg_weight=cfg.sigreg_weight, seed=cfg.seed * 1_000_003 + step)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
    # One update with a NaN would write it into every weight, and then into every save. The norm is of the gradients
    # DDP averaged, the same on every process, so all of them stop here when any one's loss went bad.
    loss, norm = out["loss"].item(), norm.item()
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise TrainingDiverged(f"the loss is {loss} and the gradient norm {norm} at step {step}: training diverged; "
                               f"{_LOWER_LR}")
    try:
        optimizer.step()
    except RuntimeError as err:  # AdamW's step size, lr over its bias correction, past float32's range (lr=1e38)
        if "overflow" not in str(err):
            raise
        raise TrainingDiverged(f"the optimiser's step overflowed at step {step} (lr={cfg.lr:g}); {_LOWER_LR}") from None
    model.ema_update(momentum_at(step, cfg))
    return {"loss": loss, "embeddings": out["embeddings"], "mask": mask_name}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Optimiser state as flat tensors + JSON-able rest, so it can live in safetensors (nothing pickled)."""
    state = optimizer.state_dict()
    tensors = {f"optim.{idx}.{key}": value for idx, entry in state["state"].items() for key, value in entry.items()}
    return tensors, {"param_groups": state["param_groups"]}


_DEVICE_SETTINGS = ("fused", "foreach", "capturable")


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    # load_state_dict takes every setting from the saved groups, how the update runs too: a run begun on the CPU and
    # resumed on a GPU would step unfused. Those follow this run's device; the rest (lr, betas, ...) the saved run.
    # (Not strict: load_state_dict itself names a different number of groups.)
    groups = [{**saved, **{key: group[key] for key in _DEVICE_SETTINGS if key in group}}
              for saved, group in zip(meta["param_groups"], optimizer.param_groups, strict=False)]
    # load_state_dict checks the groups' sizes, not the moments' shapes: another would fail at the first step
    params = [param for group in optimizer.param_groups for param in group["params"]]
    for idx, entry in state.items():
        for key, value in entry.items():
            if value.dim() and (idx >= len(params) or value.shape != params[idx].shape):
                raise ValueError(f"the optimiser's {key} of parameter {idx} is {tuple(value.shape)}, the model's "
                                 f"{tuple(params[idx].shape) if idx < len(params) else 'nothing'}")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_training_state(out: Path, model: VideoJEPA, optimizer, step: int, cfg: TrainConfig,
                        wall_seconds: float, world_size: int, segments: list[dict] = ()) -> None:
    """One file, written atomically: a crash mid-save leaves the previous state intact. `segments`: the run's
    commands so far (`RunHistory`)."""
    optim_tensors, optim_meta = optimizer_tensors(optimizer)
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **optim_tensors}
    meta = {"step": step, "wall_seconds": wall_seconds, "world_size": world_size, "train": config_to_dict(cfg),
            "segments": list(segments), **optim_meta}
    save_tensors(out / STATE_NAME, tensors, meta)


@dataclass
class RunHistory:
    """The commands a run has taken so far, each a segment {command, hardware, steps: [first, end), seconds}: after
    a --resume the card's command and hardware were the last process's alone (a GPU run finished on a CPU read as
    all on the CPU, its command a bare --resume), while its wall time was the whole run's."""

    earlier: list[dict]
    command: str
    start: int
    seconds_before: float

    @classmethod
    def of(cls, out: Path, command: str, start: int, seconds_before: float) -> "RunHistory":
        """The history `out`'s training state records, when this process resumes it at step `start`."""
        earlier = []
        if start:
            _, meta = load_tensors(out / STATE_NAME, metadata_only=True)
            earlier = [dict(segment) for segment in meta.get("segments", [])]
            if not earlier:  # a state saved before segments were recorded: its time, of unknown make
                earlier = [{"command": None, "hardware": None, "steps": [0, start], "seconds": seconds_before}]
        return cls(earlier, command, start, seconds_before)

    def segments(self, step: int, seconds: float, hardware: str) -> list[dict]:
        """Every segment up to this save at `step`, `seconds` into the run (redoing a finished run's export: none)."""
        if step == self.start:
            return self.earlier
        return [*self.earlier, {"command": self.command, "hardware": hardware, "steps": [self.start, step],
                                "seconds": seconds - self.seconds_before}]


def run_record(cfg: TrainConfig, dataset) -> dict:
    """What train_config.json records: the settings, and for data=FOLDER which files the batches are drawn from and
    how many lie in each sub-folder (the folder's labels, for `python -m jepa_demo.evaluate --folder`)."""
    record = config_to_dict(cfg)
    if cfg.data != "world":
        record.update(data_files=dataset.files_fingerprint, data_sizes=dataset.sizes_fingerprint)
        if dataset.label_counts:
            record["data_labels"] = dataset.label_counts
    return record


def check_same_run(out: Path, record: dict) -> None:
    """--resume continues the saved run exactly, so every setting that shapes its result must be the run's own (a
    different model failed deep in load_state_dict; a different lr or steps would have bent the schedules silently),
    and so must the data folder's files (others, added or gone, would draw other batches)."""
    if (saved := read_run_record(out)) is None:
        raise ValueError(f"cannot resume: {out / TRAIN_CONFIG_NAME} is missing or unreadable, so the run's settings "
                         "are unknown")
    changed = [f"{key}={value} (the run has {saved.get(key)})"
               for key, value in _changed(saved, record, "data_files" in saved).items()]
    if changed:
        # a file that cannot be read now (a network drive, a copy under way) counts as gone, though nothing changed
        fewer = "data_files" in record and (recorded_file_count(record) or 0) < (recorded_file_count(saved) or 0)
        unread = (" (fewer files than the run had: if the folder's report above left one out as unreadable, make it "
                  "readable again and rerun)" if fewer else "")
        raise ValueError(f"--resume continues the run in {out} exactly, but {', '.join(changed)}{unread}; start a new "
                         "run in another out_dir to change them")


def state_is_this_runs(cfg: TrainConfig, resumed: bool = False) -> bool:
    """Whether out_dir's training state is a run with `cfg`'s settings (those a resume keeps) that --resume would
    continue: an unfinished one, or, when this run is that --resume, a finished one whose export it redoes (a last
    save whose export failed)."""
    try:
        _, meta = load_tensors(Path(cfg.out_dir) / STATE_NAME, metadata_only=True)
    except CheckpointError:
        return False
    # the state records the settings, the run's record its data files too (what a data folder is compared by)
    files_recorded = "data_files" in (read_run_record(Path(cfg.out_dir)) or {})
    step = int(meta.get("step", 0))
    return (step < cfg.steps or resumed and step == cfg.steps) and not _changed(meta.get("train", {}),
                                                                                 config_to_dict(cfg), files_recorded)


def _changed(saved: dict, record: dict, files_recorded: bool) -> dict:
    """The settings of `record` that a resume may not change and `saved` holds otherwise (those recorded later only
    where `saved` has them). `files_recorded`: whether the run recorded its data files, by which a data folder is
    then compared."""
    return {key: value for key, value in record.items()
            if key not in MAY_CHANGE_ON_RESUME and not _same_setting(key, saved.get(key), value, files_recorded)
            and (key in saved or key not in RECORDED_LATER)}


def _same_setting(key: str, saved, value, files_recorded: bool) -> bool:
    """A data folder is the same data when its files are (data_files, data_sizes, compared apart), however it is
    named: data=clips from /home/me, data=/home/me/clips from anywhere, a copy on another drive. A run recorded
    before its files were is compared by the folder's real path."""
    if key == "data" and isinstance(saved, str) and value != "world" and saved != "world":
        return files_recorded or os.path.realpath(saved) == os.path.realpath(value)
    return saved == value


def load_training_state(out: Path, model: VideoJEPA, optimizer, world_size: int) -> tuple[int, float]:
    """Restore weights and optimiser from `out`; returns (steps already done, wall seconds they took)."""
    tensors, meta = load_tensors(out / STATE_NAME)
    saved_world = meta.get("world_size", world_size)  # states saved before it was recorded: unknown, not refused
    if saved_world != world_size:  # each process draws its own share of a batch, so the batches would differ
        raise ValueError(f"--resume continues the run in {out} exactly, and it ran as {saved_world} process(es), not "
                         f"{world_size}; resume it with the same number of processes")
    try:  # a state saved by another version of the model (a preset's sizes changed since, say): not a traceback
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        load_optimizer(optimizer, tensors, meta)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{out / STATE_NAME}: does not fit the model this code makes ({first_detail(err)}); saved "
                         "by another version of it? A new run needs another out_dir") from None
    return int(meta["step"]), float(meta.get("wall_seconds", 0.0))


def warn_if_warmup_outlasts_the_run(cfg: TrainConfig) -> None:
    """`steps=50` on a recipe warming up for 100 steps trains at half its rate at most, and never decays: allowed (a
    smoke test of a step or two), but said."""
    if cfg.warmup_steps > cfg.steps:
        say(f"note: warmup_steps={cfg.warmup_steps} is more than steps={cfg.steps}: the learning rate rises only to "
            f"{lr_at(cfg.steps - 1, cfg):.3g}, short of lr={cfg.lr:g}, and never decays (set warmup_steps lower for "
            "a short run: a new run, as --resume keeps it)")


def replace_finished_run(out: Path) -> None:
    """A new run in an earlier run's folder (or a checkpoint's) replaces it, but not an unfinished one: that is work
    --resume would continue. What the earlier run saved goes at once: until this run's first save, its state would let
    --resume continue the earlier run under this one's settings, and its model would load from the folder beside this
    run's metrics, and so do the galleries built for its weights (a shipped checkpoint's)."""
    state = out / STATE_NAME
    if state.exists():
        _, meta = load_tensors(state, metadata_only=True)  # a big run's state is gigabytes; its step is in the header
        done, total = int(meta["step"]), int(meta.get("train", {}).get("steps", 0))
        if done < total:
            raise ValueError(f"{out} holds an unfinished run (saved at step {done} of {total}): add --resume to "
                             "continue it, or choose another out_dir for a new run")
    for name in (STATE_NAME, WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, CURVES_NAME):
        (out / name).unlink(missing_ok=True)
    remove_galleries(out)


class MetricsLog:
    """metrics.csv (and TensorBoard when installed); on resume, only the whole rows logged before the resumed step
    are kept."""

    def __init__(self, path: Path, start_step: int):
        self.path = path
        kept = rows_logged_before(read_raw_rows(path), start_step) if start_step else []
        atomic_write(path, lambda tmp: write_rows(tmp, kept))  # a crash here must not cost the run its history
        self.tensorboard = _tensorboard_writer(path.parent, start_step)

    def write(self, row: dict) -> None:
        append_row(self.path, row)
        if self.tensorboard:
            for key, value in row.items():
                if isinstance(value, float):
                    self.tensorboard.add_scalar(key, value, row["step"])

    def close(self) -> None:
        """TensorBoard's writer holds events in memory for up to two minutes: a short run would lose them all."""
        if self.tensorboard:
            self.tensorboard.close()


def _tensorboard_writer(folder: Path, start_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional: the CSV is the record
        return None
    # TensorBoard hides the events from the step a run starts at on (a replaced run's, or a resumed run's past its
    # last save), as metrics.csv drops those rows
    return SummaryWriter(str(folder / "tensorboard"), purge_step=start_step)


def check_output_folder(out: Path, held: contextlib.ExitStack) -> None:
    """Fail before training, not after an hour, when the outputs cannot be written or would overwrite files that are
    not a run's: a run writes README.md, config.json and more (out_dir=. once replaced the project's README). Then
    take the folder for this run (`held` keeps it until the run ends) and only then clear what killed saves left."""
    if others := _files_of_something_else(out):
        raise ValueError(f"out_dir {out} already holds other files ({first_few(others)}); choose a new or empty "
                         "folder, or the folder of an earlier run to train it again")
    try:
        check_writable_folder(out)
    except FileExistsError:  # makedirs' words for a file of that name ("File exists")
        raise ValueError(f"out_dir {out} is a file, not a folder: choose a new or empty folder") from None
    except OSError as err:
        raise ValueError(f"cannot write to output folder {out}: {err.strerror or err}") from None
    held.enter_context(only_run_in(out))
    remove_interrupted_writes(out)


# Lock descriptors this process holds (only_run_in). A forked data worker closes its copies: each copy would hold
# the lock for as long as the worker lived, past the end of the run.
_HELD_FOLDERS: list[int] = []


def _let_go_of_folders_in_child() -> None:
    for fd in _HELD_FOLDERS:
        os.close(fd)
    _HELD_FOLDERS.clear()


os.register_at_fork(after_in_child=_let_go_of_folders_in_child)


@contextlib.contextmanager
def only_run_in(out: Path):
    """Hold `out` for this run (an exclusive flock on the folder, which ends with the process however it ends):
    a second run in the same folder is refused. Two runs there mixed their metrics.csv, saves and cards, and a
    second command, even one then refused, deleted the first's save in progress as a killed save's leftover."""
    fd = os.open(out, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"out_dir {out} is in use by another training run, still running; wait for it to end, or "
                         "choose another out_dir") from None
    _HELD_FOLDERS.append(fd)
    try:
        yield
    finally:
        _HELD_FOLDERS.remove(fd)
        os.close(fd)


def _files_of_something_else(out: Path) -> list[str]:
    """What an existing `out` holds (hidden files aside), unless it is an earlier run's folder or a checkpoint."""
    if not out.is_dir():
        return []
    names = sorted(entry.name for entry in out.iterdir() if not entry.name.startswith("."))
    earlier_run = _holds_run_record(out) or STATE_NAME in names
    return [] if earlier_run or _is_checkpoint(out) else names


def _holds_run_record(folder: Path) -> bool:
    """Whether folder/train_config.json is one a run of ours wrote, not another tool's file of that common name (its
    folder's README.md, config.json and weights would be replaced as an earlier run's)."""
    record = read_run_record(folder)
    ours = {field.name for field in fields(TrainConfig)} | RECORDED_LATER
    return record is not None and {"model", "steps", "out_dir"} <= record.keys() <= ours


def _is_checkpoint(folder: Path) -> bool:
    try:
        read_config(folder)
    except CheckpointError:
        return False
    return True


def disk_space_needed(out: Path, model: VideoJEPA) -> int:
    """Bytes the saves need free: the training state (weights and Adam's two moments) and the checkpoint, twice over,
    because an atomic save keeps the old file until the new one is complete; less the state and checkpoint files
    already in `out`, which these replace (a resumed run's own, or a finished run's, removed at start)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    replaced = 0
    for name in (STATE_NAME, WEIGHTS_NAME):
        with contextlib.suppress(OSError):  # none there (a new folder), or a name too long: check_disk_space says
            found = os.lstat(out / name)
            replaced += found.st_size if stat.S_ISREG(found.st_mode) else 0  # a link's target is not freed
    return max(2 * (2 * weights + moments) - replaced, 0) + 16 * 2**20  # + metrics, curves, card


def check_disk_space(out: Path, model: VideoJEPA) -> None:
    """Refuse to start when the disk cannot hold the saves (`disk_space_needed`)."""
    needed = disk_space_needed(out, model)
    try:  # the first look at out_dir: a name too long or a folder one may not enter raises here
        usage = shutil.disk_usage(next(folder for folder in (out, *out.parents) if folder.exists()))
    except OSError as err:
        raise ValueError(f"cannot write to output folder {out}: {err.strerror or err}") from None
    free = usage.free
    # no size at all: not a disk (/proc, /sys), whose refusal to be written check_output_folder says in its words
    if usage.total and free < needed:
        raise ValueError(f"not enough disk space for {out}: {free / 2**20:.0f} MB free, its saves need about "
                         f"{needed / 2**20:.0f} MB")


def remove_interrupted_writes(out: Path) -> None:
    """A process killed mid-save leaves its temporary file behind (the real file is intact): delete those, and no
    other hidden file (a user's own .notes.tmp)."""
    for leftover in out.glob(".*"):
        if is_temporary_name(leftover.name):
            leftover.unlink(missing_ok=True)


def run(cfg: TrainConfig, resume: bool = False, command: str = "") -> Path:
    """Train according to `cfg`; returns the checkpoint folder."""
    with contextlib.ExitStack() as held:  # out_dir, held by the main process from its checks to the run's end
        return _run(cfg, resume, command, held)


def _run(cfg: TrainConfig, resume: bool, command: str, held: contextlib.ExitStack) -> Path:
    runtime = setup_runtime(cfg)
    out = Path(cfg.out_dir)
    model_cfg = model_config_from_preset(cfg.model, objective=cfg.objective)
    preprocess = PreprocessConfig(img_size=model_cfg.img_size, num_frames=model_cfg.num_frames)
    dataset = build_dataset(cfg, preprocess, runtime)  # a bad data= fails here, before out_dir is made
    torch.manual_seed(cfg.seed)
    model = VideoJEPA(model_cfg).to(runtime.device)
    refused_by_main(runtime, lambda: _check_outputs(out, model, held, cfg))
    optimizer = build_optimizer(model, cfg, runtime.device)
    start, seconds_before = 0, 0.0
    record = run_record(cfg, dataset)
    if runtime.world_size > 1:  # before a finished run in out_dir is replaced
        check_processes_see_the_same_files(record, runtime)
    if resume and (out / STATE_NAME).exists():
        refused_by_main(runtime, lambda: check_same_run(out, record))
        start, seconds_before = load_training_state(out, model, optimizer, runtime.world_size)
    else:
        refused_by_main(runtime, lambda: _start_afresh(out, resume))
    history = RunHistory.of(out, command, start, seconds_before) if runtime.is_main else None
    if runtime.world_size > 1:
        check_processes_resume_together(start, runtime)
    forward = wrap_for_speed(model, cfg, runtime)
    loader = make_loader(dataset, start, cfg.steps, cfg.num_workers, pin_memory=runtime.device.type == "cuda")
    if runtime.is_main:  # first: it is what marks the folder as a run's, should the next line fail
        write_json(out / TRAIN_CONFIG_NAME, record)
    log = MetricsLog(out / METRICS_NAME, start) if runtime.is_main else None
    started = time.perf_counter() - seconds_before
    if start == cfg.steps:  # the run had ended, but its last export may not have: the state is saved first
        _save(model, optimizer, start, cfg, runtime, out, preprocess, history, seconds_before, new_weights=False)
    try:
        _loop(model, forward, optimizer, loader, start, cfg, runtime, log, out, preprocess, history, started)
    finally:
        if log:
            log.close()
    if dist.is_initialized():
        # DDP's reducer holds the process group: released first, and every process done with it before it goes.
        # (Once, under a loaded make test, a process aborted at exit with "terminate called without an active
        # exception"; 24 runs of that test, 4 at a time, did not repeat it before or after this order.)
        del forward
        dist.barrier()
        dist.destroy_process_group()
    return out


def _check_outputs(out: Path, model: VideoJEPA, held: contextlib.ExitStack, cfg: TrainConfig) -> None:
    check_disk_space(out, model)
    check_output_folder(out, held)
    warn_if_warmup_outlasts_the_run(cfg)


def _start_afresh(out: Path, resume: bool) -> None:
    if resume:
        say(f"--resume: no {STATE_NAME} in {out}, starting from step 0")  # not a result
    replace_finished_run(out)


class SaidByTheMainProcess(ValueError):
    """Under torchrun, the refusal every process stops on, raised in the others: the main process says it, once."""


def refused_by_main(runtime: Runtime, check) -> None:
    """`check()` on the main process alone (out_dir's checks: one folder, one look), and its refusal (a ValueError)
    stops every process: the others went on to the next collective and failed there, a gloo traceback under the one
    line that said why (under NCCL they would wait there until torchrun's timeout)."""
    refusal = None
    if runtime.is_main:
        try:
            check()
        except ValueError as err:
            refusal = err
    if runtime.world_size > 1:
        said = [None if refusal is None else str(refusal)]
        dist.broadcast_object_list(said, src=0)
        if said[0] is not None and not runtime.is_main:
            raise SaidByTheMainProcess(said[0])
    if refusal is not None:
        raise refusal


class CtrlC:
    """Ctrl-C taken between steps. Python raises KeyboardInterrupt wherever SIGINT lands, and one raised inside a
    finaliser (a __del__ or a weakref callback, which each step's tensors and each save's figure run) is printed as
    'Exception ignored' and lost: the run went on. So while training, a first Ctrl-C asks the loop to stop after the
    step in progress (and its save, if one is due), which raises KeyboardInterrupt there; a second raises at once.
    `kill`, `timeout`, a scheduler's preemption or torchrun passing one on (SIGTERM) and a closed terminal (SIGHUP)
    are taken the same way: by default they ended the run at once, its step and a due save lost. Each signal is left
    alone when it is not at Python's default (SIGINT ignored in a job started in the background, SIGHUP under nohup),
    and all of them off the main thread."""

    _DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                 getattr(signal, "SIGHUP", None): signal.SIG_DFL}  # Windows has no SIGHUP

    def __init__(self):
        self.requested = False
        self.replaced = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for stop, default in self._DEFAULTS.items():
                if stop is not None and signal.getsignal(stop) is default:
                    self.replaced[stop] = signal.signal(stop, self._pressed)
        return self

    def _pressed(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for stop, handler in self.replaced.items():
            signal.signal(stop, handler)


def _loop(model, forward, optimizer, loader, start, cfg, runtime, log, out, preprocess, history, started):
    # Context managers: the bar is closed before an error message is printed under it
    stderr = BestEffortStderr()  # a reader gone must not stop the step in progress, nor its save if one is due
    with tqdm(total=cfg.steps, initial=start, disable=not runtime.is_main, desc="train", unit="step", file=stderr,
              dynamic_ncols=True) as bar, CtrlC() as ctrl_c:
        tick, clips = time.perf_counter(), 0
        alarm = CollapseAlarm(cfg.objective)
        for step, batch in enumerate(loader, start=start):
            result = train_step(model, forward, optimizer, batch.to(runtime.device, non_blocking=True), step, cfg,
                                runtime)
            clips += batch.shape[0] * runtime.world_size
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                loss, embeddings = whole_batch(result, runtime)  # a collective under DDP: every process takes part
                if log:
                    row = _metrics_row(step, loss, embeddings, result["mask"], cfg,
                                       clips / max(time.perf_counter() - tick, 1e-9))
                    log.write(row)
                    # rounded, as the alarm and the card round, never up to a collapse floor: RankMe 4.6 was "5"
                    # ("rank" also read as a process's)
                    bar.set_postfix(loss=f"{row['loss']:.4f}",
                                    std=monitor_text(row["target_std"], "target_std", 2, "f"),
                                    rankme=monitor_text(row["rankme"], "rankme", 0, "f"))
                    for warning in alarm.warnings(row):
                        bar.write(warning, file=stderr)
                tick, clips = time.perf_counter(), 0
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                seconds = time.perf_counter() - started
                _save(model, optimizer, step + 1, cfg, runtime, out, preprocess, history, seconds)
                tick, clips = time.perf_counter(), 0  # clips/s measures training, not the save
            if step + 1 < cfg.steps and stop_together(ctrl_c.requested, runtime):  # after the last: a finished run
                raise KeyboardInterrupt


def stop_together(requested: bool, runtime: Runtime) -> bool:
    """Whether any process was asked to stop. torchrun hands Ctrl-C to each process at its own moment: one that had
    just passed the check would start the next step alone and wait in its collectives until torchrun killed it."""
    if runtime.world_size == 1:
        return requested
    flag = torch.tensor([int(requested)], device=runtime.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def whole_batch(result: dict, runtime: Runtime) -> tuple[float, torch.Tensor]:
    """The step's loss and target embeddings over the whole batch: under DDP each process holds only its share, and
    rank 0's alone would make the logged curves those of a smaller batch than the run trains on."""
    if runtime.world_size == 1:
        return result["loss"], result["embeddings"]
    loss = torch.tensor([result["loss"]], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(loss)  # each share holds the same number of clips: the batch's loss is the mean of theirs
    return loss.item() / runtime.world_size, torch.cat(gathered(result["embeddings"].detach().contiguous(), runtime))


def gathered(tensor: torch.Tensor, runtime: Runtime) -> list[torch.Tensor]:
    """Every process's `tensor` (same shape on each; on the process's device, as NCCL needs), in rank order."""
    tensors = [torch.empty_like(tensor) for _ in range(runtime.world_size)]
    dist.all_gather(tensors, tensor)
    return tensors


def _metrics_row(step: int, loss: float, embeddings: torch.Tensor, mask: str, cfg: TrainConfig,
                 clips_per_s: float) -> dict:
    return {"step": step, "loss": loss, "lr": lr_at(step, cfg), "momentum": momentum_at(step, cfg),
            "target_std": embedding_std(embeddings), "clip_std": clip_spread(embeddings),
            "rankme": effective_rank(embeddings),
            "clips_per_s": clips_per_s, "mask": mask}


def _save(model, optimizer, step, cfg, runtime, out, preprocess, history: RunHistory | None, seconds,
          new_weights: bool = True) -> None:
    """Rank 0 writes the training state first (what resume reads), then the exported checkpoint and its card
    (`history`: rank 0's, None on the others). `new_weights`: weights other than the saved ones, whose galleries
    (`python -m jepa_demo.gallery --ship`) go: built for the old weights, they are never read again, and `train push`
    would upload them (a run resumed in a folder whose save had been shipped a gallery)."""
    if runtime.world_size > 1:
        check_processes_agree(model, step, runtime)
    if runtime.is_main:
        # the rows logged so far first: appended without a sync, a power cut after this save could lose the last
        # ones, which the resumed run, starting after them, would never log again
        flush_to_disk(out / METRICS_NAME)
        segments = history.segments(step, seconds, describe_hardware(runtime.device, runtime.world_size))
        save_training_state(out, model, optimizer, step, cfg, seconds, runtime.world_size, segments)
        if new_weights:
            remove_galleries(out)
        save_checkpoint(model, out, preprocess, step, extra={"train": config_to_dict(cfg)})
        plot_curves(out / METRICS_NAME, out / CURVES_NAME, cfg.objective)
        write_model_card(out, cfg, to_dict(model.cfg), step, segments, seconds)
    if runtime.world_size > 1:
        dist.barrier()


def check_processes_agree(model: VideoJEPA, step: int, runtime: Runtime) -> None:
    """Under DDP every process holds the same weights: each applies the same averaged gradients, and the same EMA.
    Only rank 0 saves, so a process that had drifted (a module outside DDP, a collective missed) would go unseen:
    each save first compares one checksum per process, and stops the run before its weights are saved."""
    checksum = torch.stack([t.detach().double().sum() for t in model.state_dict().values()]).sum().reshape(1)
    sums = gathered(checksum, runtime)  # on the model's device
    if any(not torch.equal(other, sums[0]) for other in sums):
        raise RuntimeError(f"at step {step} the {runtime.world_size} processes hold different weights (checksums "
                           f"{[float(x) for x in sums]}); this save is not written")


def check_processes_resume_together(start: int, runtime: Runtime) -> None:
    """Each process decides from what it sees in out_dir whether to resume: one that cannot see the training state
    (another machine's, out_dir not on a disk they share) would start from step 0 while the others resume, and their
    collectives would wait on each other until a timeout, or for ever."""
    found = [int(step) for step in gathered(torch.tensor([start], device=runtime.device), runtime)]
    if len(set(found)) > 1:
        raise ValueError(f"the {runtime.world_size} processes would start from different steps ({found}): out_dir "
                         "must be on a disk every machine of the run sees")


def check_processes_see_the_same_files(record: dict, runtime: Runtime) -> None:
    """Each process lists data=FOLDER's files on its own, and only the main process's list is recorded: one that sees
    other files (a file it could not read, another machine's copy of the folder) would train on batches the record
    does not describe."""
    files = f"{record.get('data_files')} {record.get('data_sizes')}"
    digest = int.from_bytes(hashlib.sha256(files.encode()).digest()[:7], "big")  # fits an int64
    if len({int(seen) for seen in gathered(torch.tensor([digest], device=runtime.device), runtime)}) > 1:
        refusal = ValueError if runtime.is_main else SaidByTheMainProcess  # every process knows: one says it
        raise refusal(f"the {runtime.world_size} processes see different files in data={record['data']} (a file one of "
                      "them could not read, or machines with different copies of the folder): each must see the same "
                      "files")


def wrap_for_speed(model: VideoJEPA, cfg: TrainConfig, runtime: Runtime):
    """DDP when distributed, torch.compile when asked on CUDA; the EMA and saves still use the bare `model`."""
    forward = model
    if runtime.world_size > 1:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile and runtime.device.type == "cuda":
        forward = torch.compile(forward)
    elif cfg.compile and runtime.is_main:  # recorded as asked (config.json, the card): said here, not passed over
        say(f"note: compile=true is for CUDA (on the CPU, compiled training ran slower than eager): this run on "
            f"{runtime.device.type} runs eager")
    return forward


def build_dataset(cfg: TrainConfig, preprocess: PreprocessConfig, runtime: Runtime):
    if cfg.batch_size % runtime.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must divide by the {runtime.world_size} processes")
    per_rank = cfg.batch_size // runtime.world_size
    if cfg.data == "world":
        if runtime.is_main and os.path.isdir("world"):  # a folder of that name: said, as it is not what is read
            say("note: data=world is the synthetic world; to train on the folder world here, give data=./world")
        return WorldBatches(preprocess, per_rank, cfg.seed, runtime.rank, runtime.world_size, cfg.max_objects,
                            cfg.detail_prob, cfg.noise_std)
    return FolderBatches(cfg.data, preprocess, per_rank, cfg.seed, runtime.rank)


