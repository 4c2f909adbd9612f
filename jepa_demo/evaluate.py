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
from collections import Counter, defaultdict

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from .checkpoint import CheckpointError
from .inference import JEPAModel, load_model
from .model import VideoJEPA
from .world import VIOLATIONS, WorldConfig, make_pair, object_pixels, render_clip

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


def tracking_errors(model: JEPAModel, clips) -> dict:
    """Has the predictor learned where objects go? Error of the future-mask prediction on the tokens objects cover
    (and on the rest), next to the error of copying each token's target latent from the last visible time step
    ('latent persistence': a model that knows nothing about motion). Clips must match the model's size and length."""
    errors = defaultdict(list)
    for clip in clips:
        result = model.predict_masked(clip.frames, mask="future")
        latents = model.target_latents(clip.frames)  # (t, h, w, D)
        hidden_steps = np.flatnonzero(result.mask.any(axis=(1, 2)))
        copied = np.abs(latents[hidden_steps] - latents[hidden_steps[0] - 1]).mean(axis=-1)  # (F, h, w)
        objects = _object_tokens(clip, model.cfg)[hidden_steps]
        for name, error in (("model", result.error_map[hidden_steps]), ("persistence", copied)):
            errors[f"{name}_objects"].append(error[objects].mean())
            errors[f"{name}_background"].append(error[~objects].mean())
    return {name: float(np.mean(values)) for name, values in errors.items()}


def _object_tokens(clip, cfg) -> np.ndarray:
    """(t, h, w) bool: tokens (tubelet x patch) in which any object pixel is drawn."""
    t, h, w = cfg.grid
    pixels = object_pixels(clip)  # (T, S, S)
    return pixels.reshape(t, cfg.tubelet, h, cfg.patch_size, w, cfg.patch_size).any(axis=(1, 3, 5))


def majority_rates(clips) -> dict:
    """Accuracy of always answering each label's most common value: the floor any probe must clear."""
    rates = {label: Counter(str(c.labels[label]) for c in clips).most_common(1)[0][1] / len(clips)
             for label in PROBE_LABELS}
    return {**rates, "mean": float(np.mean(list(rates.values())))}


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
    report["knn_probe"]["majority"] = majority_rates(test_clips)
    plain = [render_clip(HELD_OUT_SEED + 700_000 + i, WorldConfig(size=size, num_frames=frames, occluder_prob=0))
             for i in range(num_pairs // 2)]
    report["tracking"] = tracking_errors(model, plain)
    for condition, detail in (("clean", False), ("detail", True)):
        pairs = violation_pairs(num_pairs, detail, size)
        report["pairs"][condition] = {
            "jepa": pair_accuracy(lambda v: model.surprise(v).score, pairs),
            "random_encoder": pair_accuracy(lambda v: baseline.surprise(v).score, pairs),
            "frame_difference": pair_accuracy(frame_difference_score, pairs),
        }
    return report


def format_report(report: dict) -> str:
    """Markdown tables (they read fine in a terminal too): the README's results are pasted from this."""
    probe = report["knn_probe"]
    lines = ["kNN probe accuracy, held-out clips (k=5, cosine)", "",
             "| label | JEPA | random encoder | most common value |", "|---|---|---|---|"]
    lines += [f"| {label} | {probe['jepa'][label]:.3f} | {probe['random_encoder'][label]:.3f} | "
              f"{probe['majority'][label]:.3f} |" for label in (*PROBE_LABELS, "mean")]
    track = report["tracking"]
    lines += ["", "Future prediction error (mean absolute latent error) on the last time steps of plain clips", "",
              "| tokens | JEPA predictor | copy the last visible latent |", "|---|---|---|",
              f"| with an object | {track['model_objects']:.3f} | {track['persistence_objects']:.3f} |",
              f"| background | {track['model_background']:.3f} | {track['persistence_background']:.3f} |"]
    for condition, scorers in report["pairs"].items():
        lines += ["", f"Violation pairs, {condition} clips ({report['num_pairs']} pairs): share where the implausible "
                  "twin scores higher (a tie counts half)", "",
                  "| kind | " + " | ".join(scorers) + " |", "|---" * (len(scorers) + 1) + "|"]
        for kind in (*VIOLATIONS, "all"):
            cells = [s["accuracy"] if kind == "all" else s["per_kind"].get(kind, float("nan"))
                     for s in scorers.values()]
            lines.append(f"| {kind} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jepa_demo.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/default")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--probe-clips", type=int, default=300, help="kNN training clips (and 2/3 as many to test)")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    args = parser.parse_args(argv)
    if min(args.pairs, args.probe_clips) < 1:
        parser.error("--pairs and --probe-clips must be at least 1")
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = evaluate(model, num_pairs=args.pairs, probe_train=args.probe_clips,
                      probe_test=max(1, args.probe_clips * 2 // 3))
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
