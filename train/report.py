"""What a checkpoint folder tells a reader: the training-curves PNG and the model card (README.md).

The card records data, recipe, the exact command, wall time, hardware and the last logged metrics, from the files
the run wrote (metrics.csv), never from memory.
"""

import json
import math
import os
import shlex
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from jepa_demo.checkpoint import atomic_write, write_text  # noqa: E402
from jepa_demo.training_metrics import METRICS_NAME, read_metrics  # noqa: E402

CARD_NAME, CURVES_NAME = "README.md", "training_curves.png"
TRAIN_CONFIG_NAME = "train_config.json"  # the run's resolved settings (train.loop.run_record)
_LOSSES = {"jepa": "smooth-L1, hidden tokens", "jepa-sigreg": "smooth-L1 and SIGReg, hidden tokens",
           "pixel": "smooth-L1, hidden pixels"}
_PLOTTED = [("loss", "loss"), ("target_std", None),  # titled by _std_name
            ("rankme", "effective rank (RankMe)"), ("lr", "learning rate"), ("momentum", "EMA momentum"),
            ("clips_per_s", "throughput (clips/s)")]
# Collapse floors, stated before the default was trained (README, "No collapse"). A collapsed encoder maps every token
# to one point: the spread of its layer-normed target tokens goes to 0 (a random encoder's is about 0.45) and their
# effective rank to 1, where a token must tell apart at least five things about an object (x, y, colour, shape, size).
# Added after it: the spread across clips at each token (clip_spread), on the same scale, with the same floor (a
# random encoder's is about 0.28, the default's teacher's 0.44: tests/test_default_checkpoint.py).
COLLAPSE_FLOORS = {"target_std": 0.1, "clip_std": 0.1, "rankme": 5.0}
_MONITORS = {"target_std": "target-embedding std", "clip_std": "target-embedding std across clips",
             "rankme": "effective rank (RankMe)"}
_BELOW_FLOOR = {"target_std": "the target tokens are drawing together towards one point",
                "clip_std": "the clips get nearly the same target tokens: they say where a token is, not what is there",
                "rankme": "the target tokens span only a few directions (dimensional collapse)"}


_DESCRIPTIONS = {
    "jepa": "A small video JEPA (context encoder, EMA target encoder, narrow predictor): it predicts the target "
            "encoder's latents of hidden tubelets.",
    "jepa-sigreg": "A small video JEPA without an EMA teacher: the predictor matches the context encoder's own "
                   "latents of hidden tubelets, and a SIGReg term (LeJEPA) keeps the embeddings from collapsing. "
                   "The collapse monitors watch those latents.",
    "pixel": "The pixel-prediction baseline (VideoMAE-style): the same encoder and predictor, but the predictor "
             "outputs the hidden tubelets' pixels. The collapse monitors watch the context encoder's tokens.",
}


def plot_curves(metrics_path: Path, png_path: Path, objective: str = "jepa") -> None:
    rows = read_metrics(metrics_path)
    if not rows:
        return
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    # fixed margins: a layout engine measured every label at each save (half the plot's time, redrawn at every save)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.08, top=0.95, wspace=0.28, hspace=0.38)
    steps = [r["step"] for r in rows]
    # only the JEPA objective has an EMA teacher: the others log a momentum nothing uses
    panels = [(key, title) for key, title in _PLOTTED if key != "momentum" or objective == "jepa"]
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (key, title) in zip(axes.flat, panels):
        marker = "o" if len(rows) == 1 else None  # a line through one point draws nothing
        ax.plot(steps, [r[key] for r in rows], lw=1, marker=marker)
        if key == "loss":
            title = f"{title} ({_LOSSES[objective]})"
        elif key == "target_std":
            title = _std_name(objective)
            if not all(math.isnan(r["clip_std"]) for r in rows):  # a run logged before it has no such line
                ax.plot(steps, [r["clip_std"] for r in rows], lw=1, ls="--", marker=marker)
                title += " (dashed: across clips)"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)


def _std_name(objective: str) -> str:
    """What the spread monitor measures: the pixel baseline has no target embeddings, only its encoder's tokens."""
    return "encoder-token std" if objective == "pixel" else "target-embedding std"


def summarize(rows: list[dict], tail: int = 10) -> dict:
    """Averages of the last `tail` logged rows, and the minima of the collapse monitors over the whole run."""
    last = rows[-tail:]
    mean = {k: sum(r[k] for r in last) / len(last) for k in ("loss", "target_std", "rankme")}
    # the first row a process logs (step 0, or the first after --resume) also timed its start-up: step 0's is left out
    # (the last rows of a short run may be two) and the median keeps a resumed run's from pulling the figure down
    timed = [r for r in last if r["step"] > 0] or last
    mean["clips_per_s"] = statistics.median(r["clips_per_s"] for r in timed)
    across_clips = [r["clip_std"] for r in rows if not math.isnan(r["clip_std"])]  # none: logged before it was
    return {"final": mean, "min_target_std": min(r["target_std"] for r in rows),
            "min_clip_std": min(across_clips) if across_clips else None, "min_rankme": min(r["rankme"] for r in rows)}


def can_collapse(objective: str) -> bool:
    """The pixel baseline predicts pixels, which cannot collapse: its monitors only describe its encoder's tokens."""
    return objective != "pixel"


class CollapseAlarm:
    """Says once per monitor, as a run logs its rows, that the monitor fell below its collapse floor (once per
    process: a resumed run that is still below says so again)."""

    def __init__(self, objective: str):
        self._unsaid = set(COLLAPSE_FLOORS) if can_collapse(objective) else set()

    def warnings(self, row: dict) -> list[str]:
        crossed = sorted(key for key in self._unsaid if row[key] < COLLAPSE_FLOORS[key])
        self._unsaid -= set(crossed)
        return [f"warning: step {row['step']:.0f}: {_MONITORS[key]} {monitor_text(row[key], key, 3, 'g')} is below its "
                f"collapse floor {COLLAPSE_FLOORS[key]:g}: {_BELOW_FLOOR[key]} (README, 'No collapse')"
                for key in crossed]


def _clip_spread_line(stats: dict, objective: str) -> list[str]:
    if stats["min_clip_std"] is None:
        return []
    note = _floor_note("clip_std", stats["min_clip_std"], objective)
    return [f"- its spread across clips at each token: minimum over the run "
            f"{monitor_text(stats['min_clip_std'], 'clip_std', 3, 'f')}{note}"]


def monitor_text(value: float, key: str, digits: int, kind: str) -> str:
    """Monitor `key`'s `value` to `digits` (`kind` "f": decimals, "g": significant digits), more where that many would
    print a value below the collapse floor as the floor itself ("4.97" rather than "5.0, below its floor of 5")."""
    floor, text = COLLAPSE_FLOORS[key], f"{value:.{digits}{kind}}"
    while value < floor <= float(text) and digits < 12:
        digits += 1
        text = f"{value:.{digits}{kind}}"
    return text


def _floor_note(key: str, minimum: float, objective: str) -> str:
    below = can_collapse(objective) and minimum < COLLAPSE_FLOORS[key]
    return f", below its collapse floor of {COLLAPSE_FLOORS[key]:g}" if below else ""


def read_run_record(folder: Path) -> dict | None:
    """`folder`'s train_config.json, or None when it is missing, unreadable, or JSON that is no record (`[]`)."""
    try:
        record = json.loads((Path(folder) / TRAIN_CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_file_count(record: dict) -> int | None:
    """How many video files a run's record says it drew from (train.data.FolderBatches records "N files, sha256
    ..."), or None: the synthetic world, or a run recorded before its files were."""
    head = str(record.get("data_files", "")).partition(" files,")[0]
    return int(head) if head.isdigit() else None


def _folder_data(folder: Path, root: str) -> str:
    """The card's data line for data=FOLDER, from the run's train_config.json."""
    record = read_run_record(folder) or {}
    count = recorded_file_count(record)
    text = f"{'the' if count is None else count} video files under `{root}`"
    if labels := record.get("data_labels"):
        # imported here: the folder probe brings scikit-learn, which training does not use
        from jepa_demo.folder_probe import MIN_PER_LABEL, enough_labels

        counts = ", ".join(f"{label} ({count})" for label, count in labels.items())
        text += f"; its sub-folders label them: {counts}"
        if enough_labels(labels):
            text += (". How well the embeddings tell them apart: "
                     f"`python -m jepa_demo.evaluate --folder {shlex.quote(root)} --checkpoint "
                     f"{shlex.quote(str(folder))}`")  # quoted, as the card's command is: pasted into a shell
        else:  # what the probe would refuse
            text += f" (too few to probe: that needs two labels of at least {MIN_PER_LABEL} videos)"
    return text


def _duration(seconds: float) -> str:
    """Minutes to a tenth, or seconds under a minute: a seconds-long run's card read "0.0 min", as if not timed."""
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _commands(segments: list[dict]) -> str:
    """The command that started the run, then each that resumed it and where."""
    first, *resumed = [f"`{segment['command']}`" if segment["command"] else "n/a" for segment in segments]
    return "; ".join([first, *(f"resumed at step {segment['steps'][0]} with {command}"
                               for segment, command in zip(segments[1:], resumed))])


def _wall_time(seconds: float, segments: list[dict]) -> str:
    """The run's wall time, and what it ran on: per segment where that changed (a run begun on a GPU and finished on
    a CPU is neither)."""
    total = _duration(seconds)
    hardware = {segment["hardware"] for segment in segments}
    if len(hardware) == 1:
        return f"{total} on {hardware.pop() or 'unrecorded hardware'}"
    parts = [f"steps {segment['steps'][0]}-{segment['steps'][1]}: {_duration(segment['seconds'])} on "
             f"{segment['hardware'] or 'unrecorded hardware'}" for segment in segments]
    return f"{total} ({'; '.join(parts)})"


def write_model_card(folder: Path, train_cfg, model_cfg: dict, step: int, segments: list[dict],
                     seconds: float) -> None:
    """The card of the checkpoint saved at `step`, `seconds` into the run; `segments`: each command of the run so far
    (train.loop.RunHistory), the first that started it."""
    rows = read_metrics(folder / METRICS_NAME)
    stats = summarize(rows) if rows else None
    data = ("the synthetic physics world (jepa_demo.world), rendered on the fly" if train_cfg.data == "world"
            else _folder_data(folder, train_cfg.data))
    lines = [
        "---", "library_name: jepa-lens", "tags: [jepa, video, self-supervised]", "---", "",
        f"# JEPA Lens checkpoint `{Path(os.path.abspath(folder)).name}`", "",  # out_dir=. names its folder
        _DESCRIPTIONS[train_cfg.objective] + " Trained with JEPA Lens.",
        "Load it with `jepa_demo.load_model(path_or_repo_id)`.", "",
        f"- **Data**: {data}",
        f"- **Steps**: {step} of {train_cfg.steps}, batch {train_cfg.batch_size}",
        f"- **Command**: {_commands(segments)}",
        f"- **Wall time**: {_wall_time(seconds, segments)}", "",
        "## Metrics (mean of the last 10 logged steps)", "",
    ]
    if stats:
        final = stats["final"]
        std_note = _floor_note("target_std", stats["min_target_std"], train_cfg.objective)
        rank_note = _floor_note("rankme", stats["min_rankme"], train_cfg.objective)
        lines += [f"- loss ({_LOSSES[train_cfg.objective]}): {final['loss']:.4f}",
                  f"- {_std_name(train_cfg.objective)}: {final['target_std']:.3f} "
                  f"(minimum over the run {monitor_text(stats['min_target_std'], 'target_std', 3, 'f')}{std_note})",
                  *_clip_spread_line(stats, train_cfg.objective),
                  f"- effective rank (RankMe): {final['rankme']:.1f} of {model_cfg['dim']} "
                  f"(minimum over the run {monitor_text(stats['min_rankme'], 'rankme', 1, 'f')}{rank_note})",
                  f"- throughput: {final['clips_per_s']:.1f} clips/s (median)"]
    lines += ["", f"![training curves]({CURVES_NAME})", "", "## Architecture", "", "```json",
              json.dumps(model_cfg, indent=2), "```", "", "## Training config", "", "```json",
              json.dumps(vars(train_cfg), indent=2), "```", ""]
    write_text(folder / CARD_NAME, "\n".join(lines))  # names not UTF-8 escaped, rather than failing every save
