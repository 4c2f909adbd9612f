"""Does the model understand the synthetic world?  `python -m jepa_demo.evaluate --checkpoint DIR [--json out.json]`

On held-out seeds of `jepa_demo.world` (training uses seeds far below `HELD_OUT_SEED`):
- violation of expectation: matched pairs (same start, one with a physics violation) per kind; a scorer is right on
  a pair when the implausible twin gets the higher score. On clean clips and on clips with irrelevant detail.
- kNN probe: how well embeddings predict the world's labels (k nearest neighbours, cosine).
The same for a randomly initialised encoder of the same shape and, for pairs, a trivial pixel heuristic (the largest
jump in frame-difference energy). This module knows nothing about training loops or the app.
"""

import argparse
import dataclasses
import json
import sys
from collections import defaultdict

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from .inference import JEPAModel, load_model
from .model import VideoJEPA
from .world import VIOLATIONS, WorldConfig, make_pair, render_clip

HELD_OUT_SEED = 1_000_000_000
PROBE_LABELS = ("num_objects", "gravity", "direction", "main_shape")


def pair_world(detail: bool, num_frames: int = 32, size: int = 64) -> WorldConfig:
    """Clips long enough for several surprise windows before and after the violation."""
    cfg = WorldConfig(size=size, num_frames=num_frames)
    return dataclasses.replace(cfg, noise_std=0.05, background="mixed") if detail else cfg


def violation_pairs(num_pairs: int, detail: bool, size: int = 64, first_seed: int = HELD_OUT_SEED):
    """`num_pairs` (kind, plausible frames, implausible frames), kinds in turn, from held-out seeds."""
    cfg = pair_world(detail, size=size)
    pairs = []
    for i in range(num_pairs):
        kind = VIOLATIONS[i % len(VIOLATIONS)]
        plausible, implausible = make_pair(first_seed + i, kind, cfg)
        pairs.append((kind, plausible.frames, implausible.frames))
    return pairs


def frame_difference_score(video: np.ndarray) -> float:
    """Trivial pixel heuristic: the largest jump, from one frame pair to the next, in mean squared difference."""
    frames = video.astype(np.float32) / 255.0
    energy = ((frames[1:] - frames[:-1]) ** 2).mean(axis=(1, 2, 3))  # (T-1,)
    return float(np.abs(np.diff(energy)).max()) if len(energy) > 1 else 0.0


def pair_accuracy(score, pairs) -> dict:
    """Share of pairs where score(implausible) > score(plausible), overall and per kind; a tie counts half (the
    twins share their start, so a score that peaks there cannot tell them apart)."""
    wins = defaultdict(list)
    for kind, plausible, implausible in pairs:
        wins[kind].append(float(np.sign(score(implausible) - score(plausible)) + 1) / 2)
    per_kind = {kind: float(np.mean(w)) for kind, w in wins.items()}
    return {"accuracy": float(np.mean([x for w in wins.values() for x in w])), "per_kind": per_kind}


def labelled_clips(count: int, first_seed: int, size: int, num_frames: int):
    cfg = WorldConfig(size=size, num_frames=num_frames)
    return [render_clip(first_seed + i, cfg) for i in range(count)]


def knn_probe(embed, train_clips, test_clips, k: int = 5) -> dict:
    """kNN accuracy per label, from embeddings of clean clips (cosine distance)."""
    train_x = np.stack([embed(c.frames) for c in train_clips])
    test_x = np.stack([embed(c.frames) for c in test_clips])
    scores = {}
    for label in PROBE_LABELS:
        train_y = [str(c.labels[label]) for c in train_clips]
        test_y = [str(c.labels[label]) for c in test_clips]
        knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train_x, train_y)
        scores[label] = float(knn.score(test_x, test_y))
    scores["mean"] = float(np.mean([scores[label] for label in PROBE_LABELS]))
    return scores


def random_twin(model: JEPAModel, seed: int = 0) -> JEPAModel:
    """A freshly initialised network of the same shape and preprocessing: the 'no learning' baseline."""
    torch.manual_seed(seed)
    return JEPAModel(VideoJEPA(model.cfg), model.preprocess, model.config, str(model.device))


def evaluate(model: JEPAModel, num_pairs: int = 100, probe_train: int = 300, probe_test: int = 200) -> dict:
    size, frames = model.preprocess.img_size, model.cfg.num_frames
    train_clips = labelled_clips(probe_train, HELD_OUT_SEED + 500_000, size, frames)
    test_clips = labelled_clips(probe_test, HELD_OUT_SEED + 600_000, size, frames)
    baseline = random_twin(model)
    report = {"num_pairs": num_pairs, "knn_probe": {}, "pairs": {}}
    for name, candidate in (("jepa", model), ("random_encoder", baseline)):
        report["knn_probe"][name] = knn_probe(candidate.embed, train_clips, test_clips)
    for condition, detail in (("clean", False), ("detail", True)):
        pairs = violation_pairs(num_pairs, detail, size)
        report["pairs"][condition] = {
            "jepa": pair_accuracy(lambda v: model.surprise(v).score, pairs),
            "random_encoder": pair_accuracy(lambda v: baseline.surprise(v).score, pairs),
            "frame_difference": pair_accuracy(frame_difference_score, pairs),
        }
    return report


def format_report(report: dict) -> str:
    lines = ["kNN probe accuracy (held-out clips)", f"  {'label':<14}{'jepa':>8}{'random':>8}"]
    probe = report["knn_probe"]
    for label in (*PROBE_LABELS, "mean"):
        lines.append(f"  {label:<14}{probe['jepa'][label]:>8.3f}{probe['random_encoder'][label]:>8.3f}")
    for condition, scorers in report["pairs"].items():
        lines += ["", f"violation pairs, {condition} clips ({report['num_pairs']} pairs): implausible twin scores higher",
                  f"  {'kind':<14}" + "".join(f"{name:>18}" for name in scorers)]
        for kind in (*VIOLATIONS, "all"):
            cells = [s["accuracy"] if kind == "all" else s["per_kind"].get(kind, float("nan"))
                     for s in scorers.values()]
            lines.append(f"  {kind:<14}" + "".join(f"{c:>18.3f}" for c in cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jepa_demo.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/default")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--json", help="also write the report as JSON to this file")
    args = parser.parse_args(argv)
    report = evaluate(load_model(args.checkpoint), num_pairs=args.pairs)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
