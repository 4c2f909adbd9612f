"""A one-minute terminal tour of a checkpoint (what `make demo` runs until the app exists).

    python -m jepa_demo.demo [--checkpoint checkpoints/default] [--kind vanish]

It renders a clip of the synthetic world and its twin with a physics violation, writes both as real mp4 files in a
temporary folder (removed afterwards), reads them back the way a user's upload is read, and prints the model's
surprise over time for each: the violating twin should spike after the violation frame.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError
from .inference import load_model
from .video import read_video, write_video
from .world import VIOLATIONS, WorldConfig, make_pair

_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, low: float, high: float) -> str:
    scaled = (np.asarray(values) - low) / max(high - low, 1e-9)
    return "".join(_BARS[int(round(v * (len(_BARS) - 1)))] for v in np.clip(scaled, 0, 1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jepa_demo.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/default")
    parser.add_argument("--kind", choices=VIOLATIONS, default="vanish")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plausible, implausible = make_pair(args.seed, args.kind, WorldConfig(size=model.preprocess.img_size,
                                                                        num_frames=32))
    with tempfile.TemporaryDirectory(prefix="jepa-demo-") as tmp:
        clips = {}
        for name, clip in (("plausible", plausible), (args.kind, implausible)):
            path = Path(tmp) / f"{name}.mp4"
            write_video(path, clip.frames)
            clips[name] = read_video(path)
    results = {name: model.surprise(video) for name, video in clips.items()}
    _print_report(model, results, implausible.labels["violation_frame"], args.kind)
    return 0


def _print_report(model, results: dict, violation_frame: int, kind: str) -> None:
    info = model.info()
    print(f"checkpoint: step {info['step']}, {info['params'] / 1e6:.1f} M parameters, on {info['device']}")
    print(f"a clip and its twin where '{kind}' happens at frame {violation_frame}; surprise per time step:\n")
    values = np.concatenate([r.per_step for r in results.values()])
    low, high = float(values.min()), float(values.max())
    for name, result in results.items():
        peak = int(result.step_frames[np.argmax(result.per_step)])
        print(f"  {name:>13}  {sparkline(result.per_step, low, high)}  score {result.score:.4f}  (peak frame {peak})")
    frames = next(iter(results.values())).step_frames
    print(f"  {'frames':>13}  {frames[0]} .. {frames[-1]}\n")
    verdict = "higher" if results[kind].score > results["plausible"].score else "NOT higher"
    print(f"The violating twin's surprise is {verdict} than the plausible clip's.")
