"""How long each of the app's views takes for a 10-second 480p mp4, after warm-up, on the shipped checkpoint.

    python benchmarks/app_views.py [--checkpoint checkpoints/default] [--repeats 5] [--seconds 10]
                                   [--json benchmarks/app_views.json]

Times the same calls the app's handlers make, on the app's own Explorer (`app.explorer_for`: the surprise view runs the
pixel baseline beside any other checkpoint), without Gradio's transport: a fresh upload is decoded twice, for surprise
and for the other views (each then finds its decoding remembered, as in the app), then each view does its own work. The
neighbours' thumbnails go to a fresh folder in each run, so that view renders them as it does for a new clip's
neighbours. Prints a table (median of the repeats, seconds) and writes JSON. --threads sets torch's threads only:
decoding (PyAV) uses every core, so run it on a machine of the size you report (the recorded run: 2 cores).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402
from jepa_demo.hardware import cpu_model, usable_cpus  # noqa: E402

# the app is imported here, and reads its settings then: a shell's hosted mode would refuse the checkpoint's path
# (its cache folder, JEPA_LENS_CACHE, stays: the app's galleries are read from there)
for name in ("JEPA_LENS_HOSTED", "JEPA_LENS_ALLOWED_MODELS", "SPACE_ID"):
    os.environ.pop(name, None)
import app  # noqa: E402
from jepa_demo import write_video  # noqa: E402
from jepa_demo.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from jepa_demo.explore import MAX_SECONDS, Explorer, forget_decoded_clips  # noqa: E402
from jepa_demo.world import WorldConfig, render_clip  # noqa: E402


def test_clip(folder: Path, seconds: int = 10) -> Path:
    """`seconds` of 640x480 at 30 fps: a synthetic clip upscaled, so it has moving objects, plus noise for realism."""
    small = render_clip(7, WorldConfig(size=160, num_frames=30 * seconds, noise_std=0.03)).frames  # (T, 160, 160, 3)
    frames = np.repeat(np.repeat(small, 3, axis=1), 4, axis=2)[:, :480, :640]  # (T, 480, 640, 3)
    path = folder / f"clip-480p-{seconds}s.mp4"
    write_video(path, frames, fps=30)
    return path


def time_views(explorer: Explorer, path: Path, thumbnails: Path) -> dict:
    """Seconds for a fresh upload: decoding it, then each view (which finds the decoded clip remembered); the
    neighbours' thumbnails are rendered into `thumbnails`, a folder of none yet."""
    forget_decoded_clips()
    explorer.thumbnail_dir = thumbnails

    def surprise():
        clip = explorer.load(path, "surprise")
        view = explorer.surprise(clip.frames, clip.source_frames, path)
        if explorer.baseline and not isinstance(view.numbers["baseline"], dict):  # a note saying why not
            sys.exit(f"error: {view.numbers['baseline']}: the time of surprise would leave out the baseline's curve "
                     "the app draws beside the model's; nothing written")
        return view

    steps = {  # as the app decodes: once for surprise, once for the views that read one model input
        "decode for surprise": lambda: explorer.load(path, "surprise"),
        "decode model input": lambda: explorer.load(path, "neighbors"),
        "masked prediction": lambda: explorer.masked(explorer.load(path, "masked").frames, "multiblock"),
        "nearest neighbours": lambda: explorer.neighbors(explorer.load(path, "neighbors").frames, k=8),
        "embedding map": lambda: explorer.embedding_map(explorer.load(path, "map").frames, "num_objects"),
        "surprise": surprise,
    }
    out = {}
    for name, fn in steps.items():
        start = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - start
    out["decode + four views"] = sum(out.values())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10, help=f"the clip's length (at most {MAX_SECONDS:.0f})")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "app_views.json"))
    args = parser.parse_args(argv)
    if min(args.repeats, args.threads, args.seconds) < 1:
        parser.error("--repeats, --threads and --seconds must be at least 1")
    if args.seconds > MAX_SECONDS:
        parser.error(f"--seconds {args.seconds}: the app refuses clips over {MAX_SECONDS:.0f} s")
    out = _report.check_output(parser, args.json)
    torch.set_num_threads(args.threads)
    try:
        explorer = app.explorer_for(args.checkpoint).warm_up()
    except app.gr.Error as err:  # the app's message for a checkpoint it cannot load (its CheckpointError included)
        parser.error(err.message)
    with tempfile.TemporaryDirectory() as tmp:
        path = test_clip(Path(tmp), args.seconds)
        time_views(explorer, path, Path(tmp) / "thumbnails-warm-up")  # first calls allocate, load ffmpeg, etc.
        runs = [time_views(explorer, path, Path(tmp) / f"thumbnails-{i}") for i in range(args.repeats)]
    medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    device = str(explorer.model.device)
    print(f"{'step':<22}{'median s':>10}   ({args.repeats} repeats, {device}, {args.threads} threads)")
    for name, seconds in medians.items():
        print(f"{name:<22}{seconds:>10.3f}")
    report = {"command": _report.command(__file__, argv),
              "checkpoint": _shown(args.checkpoint),
              "surprise_beside": explorer.baseline and explorer.baseline.objective,
              "clip": f"{args.seconds} s, 640x480, 30 fps mp4", "device": device, "threads": args.threads,
              "repeats": args.repeats,
              "median_seconds": medians, "torch": torch.__version__, **_report.versions("gradio", "av"),
              "machine": cpu_model(),
              # decoding uses every core it may: --threads alone does not say the machine's size (nor os.cpu_count,
              # blind to a container's or taskset's share)
              "cpus": usable_cpus()}
    _report.write(out, report)
    return 0


def _shown(checkpoint: str) -> str:
    """The checkpoint as the JSON records it: a folder relative to the repository when inside it, not this machine's
    path; a shipped name or a Hub id as given (resolved from another working folder, it named no folder at all)."""
    path = Path(checkpoint).resolve()
    return str(path.relative_to(ROOT)) if path.is_dir() and path.is_relative_to(ROOT) else checkpoint


if __name__ == "__main__":
    sys.exit(main())
