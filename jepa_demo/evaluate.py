"""The evaluation suite: does a model understand the synthetic world, and does it beat predicting pixels?

    python -m jepa_demo.evaluate [--checkpoint DIR ...] [--json out.json] [--report docs/results.md] [--validation]

On held-out seeds of `jepa_demo.world` (training uses seeds far below `HELD_OUT_SEED`), for each checkpoint (by
default every shipped one: the JEPA default, the pixel baseline, the SIGReg JEPA), a randomly initialised encoder of
the first one's shape, and a trivial pixel heuristic (the largest jump in frame-difference energy):
- violation of expectation: matched pairs (same start, one with a physics violation) per kind, on clean clips and on
  clips with irrelevant detail (per-frame noise, textured/flickering backgrounds). Pairwise accuracy (the
  implausible twin scores higher; a tie counts half) with Wilson 95 % intervals, and AUROC over all clips with a
  bootstrap 95 % interval (resampling pairs);
- representation: kNN and linear (logistic) probes of the world's labels, each model's lead over the random
  encoder with a bootstrap 95 % interval (resampling test clips; the probes are fitted once on the same training
  clips), effective rank of clip embeddings;
- tracking: future-prediction error on the tokens objects cover, next to copying the last visible target, with a
  bootstrap 95 % interval of the difference (resampling clips).
`--report` writes a Markdown report with plots (docs/results.md is generated this way). `--validation` draws every
clip from other seeds (from `VALIDATION_SEED`): recipes and scores are compared there, so that the held-out numbers
stay untouched by those choices. `--folder DIR` runs a kNN probe of your own videos instead, labelled by their
sub-folders (jepa_demo.folder_probe). This module knows nothing about training loops or the app.
"""

import contextlib
import dataclasses
import os
import shlex
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .checkpoint import (
    NO_CHECKPOINT,
    SHIPPED_DIR,
    SHIPPED_NAMES,
    CheckpointError,
    first_line,
    quiet_hub_client,
    write_json,
)
from .cli import (
    Once,
    OneLineParser,
    check_finite,
    one_line_name,
    out_of_memory,
    output_file,
    print_any_name,
    write_nowhere,
)
from .hardware import describe_hardware
from .inference import JEPAModel, load_model, surprise_score
from .model import VideoJEPA, effective_rank
from .preprocess import resize_and_crop
from .vjepa2 import VJEPA2Net
from .world import VIOLATIONS, WorldConfig, make_pair, object_pixels, render_clip

HELD_OUT_SEED = 1_000_000_000
VALIDATION_SEED = HELD_OUT_SEED + 900_000  # for choosing recipes and scores; its draws never meet the held-out ones
# Above the held-out or the validation seed, each set of clips has its own block of SEED_BLOCK seeds: the pairs from
# +0 (make_pair's derived starts lie millions above: world.DERIVED_SEED_STEP), the probes' from PROBE_*_SEEDS, the
# tracking clips from TRACKING_SEEDS.
PROBE_TRAIN_SEEDS, PROBE_TEST_SEEDS, TRACKING_SEEDS = 500_000, 600_000, 700_000
SEED_BLOCK = 100_000
PROBE_LABELS = ("num_objects", "gravity", "direction", "main_shape")
PAIR_FRAMES = 32  # frames of each violation pair's clips (see pair_world)
# The scorers the suites add themselves (the folder probe adds the third): no checkpoint may take their names
RANDOM, FRAME_DIFFERENCE, MAJORITY = "random encoder", "frame difference", "always the most common label"
KNN_NEIGHBOURS = 5
MAX_RESAMPLES = 100_000  # resamples x clips bootstrap indices are drawn at once


def pair_world(detail: bool, size: int = 64) -> WorldConfig:
    """The pairs' world. PAIR_FRAMES = 32 frames: for the shipped model (16-frame windows predicting their last 2 of 8
    steps) the 10 scored steps are at frames 12, 14, ..., 30, so two come before a violation in the middle of the clip
    (frame 16, where every kind but pass_through happens; the second's targets, from windows reaching frame 17,
    already see it) and eight from it on. A model of more than 16 frames would score no step before it. A
    pass_through happens at the first collision in view from frame 10 to 24, so one at frame 10 or 11 comes before
    the first scored step, and only its aftermath is scored."""
    cfg = WorldConfig(size=size, num_frames=PAIR_FRAMES)
    return dataclasses.replace(cfg, noise_std=0.05, background="mixed") if detail else cfg


def violation_pairs(num_pairs: int, detail: bool, size: int = 64, first_seed: int = HELD_OUT_SEED):
    """`num_pairs` (kind, plausible frames, implausible frames), kinds in turn, from seeds `first_seed` and up."""
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


def score_pairs(score, pairs) -> np.ndarray:
    """(n, 2): each pair's (plausible, implausible) scores."""
    return np.array([[score(plausible), score(implausible)] for _, plausible, implausible in pairs], dtype=np.float64)


def _wins(scores: np.ndarray) -> np.ndarray:
    """(n,): 1 where a pair's implausible clip outscores its plausible twin, 1/2 on a tie (pairwise accuracy)."""
    return (np.sign(scores[:, 1] - scores[:, 0]) + 1) / 2


def _auroc(scores: np.ndarray) -> float:
    """The share of (implausible clip, plausible clip) combinations over all pairs where the implausible one scores
    higher, a tie counting half: by sorting, not an (n, n) table of wins (80 GB at the 100,000 pairs --pairs
    allows, built again for each bootstrap resample)."""
    plausible = np.sort(scores[:, 0])
    below = np.searchsorted(plausible, scores[:, 1], side="left")  # plausible clips it beats
    not_above = np.searchsorted(plausible, scores[:, 1], side="right")  # ... and those it ties with
    return float((below + not_above).sum() / (2 * len(scores) ** 2))


def _with_intervals(scores: np.ndarray, rng: np.random.Generator, resamples: int) -> dict:
    """Pairwise accuracy with its Wilson 95 % interval, and AUROC with a percentile-bootstrap one (resampling whole
    pairs)."""
    matched = _wins(scores)
    samples = rng.integers(0, len(scores), size=(resamples, len(scores)))
    auroc = np.array([_auroc(scores[s]) for s in samples])
    return {"accuracy": float(matched.mean()), "accuracy_ci": wilson_interval(matched.mean(), len(scores)),
            "auroc": _auroc(scores), "auroc_ci": _interval(auroc), "pairs": len(scores)}


def wilson_interval(share: float, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a share of `n` pairs won. Not the bootstrap: a kind won in all of its 17 pairs
    resamples to 1.00 every time, an interval of zero width, as if 17 pairs were certainty (Wilson: [0.82, 1.00])."""
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2))
    # Around the share whatever the rounding: at 1.0 of 100 pairs the upper bound came out 1 - 1e-16, below the
    # share, and the report's error bars (share minus bound) went negative, which matplotlib refuses
    return [float(max(0.0, min(share, centre - half))), float(min(1.0, max(share, centre + half)))]


def _interval(samples: np.ndarray) -> list[float]:
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def pair_statistics(scores: np.ndarray, kinds: list[str], resamples: int = 1000, seed: int = 0) -> dict:
    """Accuracy and AUROC (with intervals) over all pairs and per violation kind."""
    rng = np.random.default_rng(seed)
    kind_of = np.asarray(kinds)
    per_kind = {kind: _with_intervals(scores[kind_of == kind], rng, resamples) for kind in dict.fromkeys(kinds)}
    return {**_with_intervals(scores, rng, resamples), "per_kind": per_kind}


# How to read `surprise_shift`, for the report's tables and its summary line.
SHIFT_READING = ("largest rise of the implausible twin's per-step surprise over its plausible twin's (not below "
                 "zero where the twins share their first scored step, as for a violation at frame 16) / the difference "
                 "at the last step, as a share of the plausible twin's mean level. A surprise is a rise that fades "
                 "(first number well above the second); a lasting shift or a drop is the error following how much "
                 "is in view.")


def surprise_shift(curves: list[tuple[np.ndarray, np.ndarray]], kinds: list[str]) -> dict:
    """How each kind of violation moves a model's per-step surprise, from each pair's (plausible, implausible) curves:
    `rise`, the largest excess of the implausible twin's curve over its plausible twin's, and `end`, the difference at
    the last step, both as a share of the plausible twin's mean level, averaged per kind. A surprise in V-JEPA's sense
    is a rise that fades once the new state is in view (rise well above end); a shift that stays, or a drop, is the
    error following how much is in view. Both move the score (peak minus calmest step), so the accuracy alone cannot
    tell them apart. A pair whose plausible twin has no surprise at all (a collapsed model's) has no such share and
    is left out; a kind left without pairs reads None for both."""
    shift = {kind: [] for kind in kinds}
    for kind, (plausible, implausible) in zip(kinds, curves):
        if plausible.mean() > 0:
            excess = (implausible - plausible) / plausible.mean()
            shift[kind].append((excess.max(), excess[-1]))
    return {kind: dict(zip(("rise", "end"), np.mean(values, axis=0).tolist() if values else (None, None)))
            for kind, values in shift.items()}


def format_shift(shift: dict) -> str:
    """One kind's `surprise_shift` as "rise / end"."""
    return "n/a" if shift["rise"] is None else f"{shift['rise']:+.2f} / {shift['end']:+.2f}"


def probe_clips(train: int, test: int, first_seed: int, size: int, num_frames: int) -> tuple[list, list]:
    """The probes' labelled clips: `train` from seeds `first_seed` + PROBE_TRAIN_SEEDS and up, `test` from
    + PROBE_TEST_SEEDS."""
    cfg = WorldConfig(size=size, num_frames=num_frames)
    train_clips = [render_clip(first_seed + PROBE_TRAIN_SEEDS + i, cfg) for i in range(train)]
    test_clips = [render_clip(first_seed + PROBE_TEST_SEEDS + i, cfg) for i in range(test)]
    return train_clips, test_clips


def representation_scores(embed, train_clips, test_clips,
                          k: int = KNN_NEIGHBOURS) -> tuple[dict, dict[str, np.ndarray]]:
    """kNN (cosine; a tied vote goes to the value first in sorted order, scikit-learn's rule, for every encoder
    alike) and linear (logistic regression on standardised embeddings) probe accuracy per label, and the
    effective rank (RankMe) of the test clips' embeddings; with, per probe, a (labels, test clips) bool array of the
    answers it got right (for `paired_difference`)."""
    train_x = np.stack([check_finite(embed(c.frames)) for c in train_clips])
    test_x = np.stack([check_finite(embed(c.frames)) for c in test_clips])
    neighbours = min(k, len(train_x))  # a tiny --probe-clips may give fewer training clips than k
    probes = {"knn": KNeighborsClassifier(n_neighbors=neighbours, metric="cosine"),
              "linear": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))}
    labels = [([str(c.labels[label]) for c in train_clips], [str(c.labels[label]) for c in test_clips])
              for label in PROBE_LABELS]
    hits = {name: np.stack([_probe_hits(probe, train_x, train_y, test_x, test_y) for train_y, test_y in labels])
            for name, probe in probes.items()}
    scores = {name: {**dict(zip(PROBE_LABELS, right.mean(axis=1).tolist())), "mean": float(right.mean())}
              for name, right in hits.items()}
    scores["effective_rank"] = effective_rank(torch.from_numpy(test_x))
    return scores, hits


@contextlib.contextmanager
def errors_named(model_name: str):
    """A model's ValueError (outputs that are not numbers) names the model: several may be compared."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"{model_name}: {err}") from None


def _probe_hits(probe, train_x, train_y, test_x, test_y) -> np.ndarray:
    """(test clips,) bool: which test labels the probe, fitted on the training clips, gets right."""
    if len(set(train_y)) < 2:  # one class seen in training: the probe can only answer it
        return np.array([y == train_y[0] for y in test_y])
    return probe.fit(train_x, train_y).predict(test_x) == np.asarray(test_y)


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """Mean of `a` minus mean of `b`, two scorers' results on the same items (per test clip: the share of labels a
    probe got right; per violation pair: 1 for a win, 1/2 for a tie), with a percentile-bootstrap 95 % interval that
    resamples the items. Both answered the same items, so the resampling is paired: the interval is that of the
    difference, narrower than the two means' own, and two scorers whose own intervals overlap can still differ."""
    per_item = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    samples = np.random.default_rng(seed).integers(0, len(per_item), size=(resamples, len(per_item)))
    return {"difference": float(per_item.mean()), "difference_ci": _interval(per_item[samples].mean(axis=1))}


def tracking_errors(model: JEPAModel, clips, resamples: int = 1000) -> dict:
    """Has the predictor learned where objects go? Error of the future-mask prediction on the tokens objects cover
    (and on the rest), next to the error of copying each token's latent at the last visible time step, as the
    model gives it seeing only the visible steps ('persistence': a model that knows nothing about motion); and on
    object tokens the model's error minus the copy's (`paired_difference` over the clips: below zero, it predicts
    better than copying). Clips must match the model's size and length."""
    errors = defaultdict(list)
    for clip in clips:
        result = model.predict_masked(clip.frames, mask="future")
        hidden_steps = np.flatnonzero(result.mask.any(axis=(1, 2)))
        last_visible = model.visible_latents(clip.frames, result.mask)[hidden_steps[0] - 1]  # (h, w, D')
        targets = result.target.reshape(len(hidden_steps), *last_visible.shape)  # future masks hide whole steps
        copied = np.abs(targets - last_visible).mean(axis=-1)  # (F, h, w)
        objects = _object_tokens(clip, model)[hidden_steps]
        for name, error in (("model", result.error_map[hidden_steps]), ("persistence", copied)):
            errors[f"{name}_objects"].append(error[objects].mean())
            errors[f"{name}_background"].append(error[~objects].mean())
    difference = paired_difference(errors["model_objects"], errors["persistence_objects"], resamples)
    return {**{name: float(np.mean(values)) for name, values in errors.items()}, "objects_minus_copy": difference}


def _object_tokens(clip, model: JEPAModel) -> np.ndarray:
    """(t, h, w) bool: tokens (tubelet x patch) in which any object pixel is drawn, as the model sees the clip (a
    preprocessing that resizes past the crop, V-JEPA 2's, moves and cuts off the frame's edges)."""
    cfg, pre = model.cfg, model.preprocess
    drawn = torch.from_numpy(object_pixels(clip)).float()[:, None]  # (T, 1, S, S)
    pixels = (resize_and_crop(drawn, pre.img_size, pre.resize_to)[:, 0] >= 0.5).numpy()  # not the blur around
    t, h, w = cfg.grid
    return pixels.reshape(t, cfg.tubelet, h, cfg.patch_size, w, cfg.patch_size).any(axis=(1, 3, 5))


def majority_rates(train_clips, test_clips) -> dict:
    """Accuracy on the test clips of always answering each label's most common value among the training clips: the
    floor any probe must clear, found as a probe would find it (the test clips' own most common value is an oracle)."""
    rates = {}
    for label in PROBE_LABELS:
        answer = Counter(str(c.labels[label]) for c in train_clips).most_common(1)[0][0]
        rates[label] = float(np.mean([str(c.labels[label]) == answer for c in test_clips]))
    return {**rates, "mean": float(np.mean(list(rates.values())))}


def _encoder_shape(model: JEPAModel) -> dict:
    """What makes two encoders' random initialisations comparable (the objective and predictor may differ)."""
    cfg = model.cfg
    return {"patch_size": cfg.patch_size, "tubelet": cfg.tubelet, "dim": cfg.dim, "depth": cfg.depth,
            "heads": cfg.heads, "mlp_ratio": cfg.mlp_ratio}


def random_twin(model: JEPAModel, seed: int = 0) -> JEPAModel:
    """A freshly initialised network of the same architecture, shape and preprocessing: the 'no learning' baseline.
    A V-JEPA 2 twin is transformers' own initialisation of its config (rotary positions, its norms), not ours."""
    torch.manual_seed(seed)
    net = model.net.freshly_initialised() if isinstance(model.net, VJEPA2Net) else VideoJEPA(model.cfg)
    return JEPAModel(net, model.preprocess, model.config, str(model.device))


def evaluate(models: dict[str, JEPAModel], num_pairs: int = 100, probe_train: int = 300, probe_test: int = 200,
             resamples: int = 1000, first_seed: int = HELD_OUT_SEED) -> dict:
    """The whole suite for `models` (name -> model; the first one gets a random twin), plus the pixel heuristic.
    All models must share the preprocessing of the first (the clips are rendered once at its size and length).
    Clips come from seeds `first_seed` and up, each set in its own block (SEED_BLOCK)."""
    started = time.time()
    check_counts(num_pairs, probe_train, probe_test)
    check_names(list(models))
    first = next(iter(models.values()))
    size, frames = first.preprocess.img_size, first.cfg.num_frames
    for name, model in models.items():
        if (model.preprocess.img_size, model.cfg.num_frames) != (size, frames):
            raise ValueError(f"{name} takes {model.cfg.num_frames} frames of {model.preprocess.img_size} px, the first "
                             f"checkpoint {frames} of {size} px: evaluate them separately")
        if _encoder_shape(model) != _encoder_shape(first):  # every model is measured against the first's random twin
            raise ValueError(f"{name}'s encoder is not the first checkpoint's shape ({_encoder_shape(model)} against "
                             f"{_encoder_shape(first)}): evaluate them separately, each against its own random twin")
    if 2 * frames > PAIR_FRAMES:  # refused before the probes and tracking run, not after
        raise ValueError(f"the violation pairs are {PAIR_FRAMES}-frame clips, made for models of at most "
                         f"{PAIR_FRAMES // 2} frames; the checkpoints take {frames}")
    models = {**models, RANDOM: random_twin(first)}
    described = {name: _describe(model) for name, model in models.items()}
    described[RANDOM]["step"] = 0
    train_clips, test_clips = probe_clips(probe_train, probe_test, first_seed, size, frames)
    plain = [render_clip(first_seed + TRACKING_SEEDS + i, WorldConfig(size=size, num_frames=frames, occluder_prob=0))
             for i in range(tracking_clips(num_pairs))]
    neighbours = min(KNN_NEIGHBOURS, probe_train)  # fewer training clips than k: the k the kNN probe can use
    representation = {}
    for name, model in models.items():
        with errors_named(name):
            representation[name] = representation_scores(model.embed, train_clips, test_clips, neighbours)
    random_hits = representation[RANDOM][1]
    for name, (scores, hits) in representation.items():
        if name != RANDOM:
            scores["vs_random"] = {probe: paired_difference(hits[probe].mean(axis=0), random_hits[probe].mean(axis=0),
                                                            resamples) for probe in hits}
    report = {"models": described,
              "representation": {name: scores for name, (scores, _) in representation.items()},
              "majority": majority_rates(train_clips, test_clips),
              "tracking": {name: tracking_errors(model, plain, resamples) for name, model in models.items()},
              "pairs": {}, "surprise_shift": {}}
    for condition, detail in (("clean", False), ("detail", True)):
        pairs = violation_pairs(num_pairs, detail, size, first_seed)
        kinds = [kind for kind, _, _ in pairs]
        # every frame, as the frame-difference heuristic sees them: a model of fewer than 8 frames would otherwise
        # read one in two (surprise keeps 4 of its clips' worth)
        curves = {}
        for name, model in models.items():
            with errors_named(name):
                curves[name] = [(check_finite(model.surprise(plausible, max_frames=PAIR_FRAMES).per_step),
                                 check_finite(model.surprise(implausible, max_frames=PAIR_FRAMES).per_step))
                                for _, plausible, implausible in pairs]
        scores = {name: np.array([[surprise_score(p), surprise_score(i)] for p, i in pair_curves])
                  for name, pair_curves in curves.items()}
        scores[FRAME_DIFFERENCE] = score_pairs(frame_difference_score, pairs)
        report["pairs"][condition] = {name: pair_statistics(s, kinds, resamples) for name, s in scores.items()}
        under_test, *others = scores  # the first checkpoint, against every other scorer on the same pairs
        wins = {name: _wins(s) for name, s in scores.items()}
        report["pairs"][condition][under_test]["vs"] = {
            name: paired_difference(wins[under_test], wins[name], resamples) for name in others}
        report["surprise_shift"][condition] = {name: surprise_shift(c, kinds) for name, c in curves.items()}
    report["settings"] = {"num_pairs": num_pairs, "probe_train": probe_train, "probe_test": probe_test,
                          "knn_neighbours": neighbours, "resamples": resamples, "first_seed": first_seed,
                          "seconds": round(time.time() - started, 1), "threads": torch.get_num_threads(),
                          "hardware": describe_hardware(first.device), "torch": torch.__version__}
    return report


def check_counts(num_pairs: int, probe_train: int, probe_test: int) -> None:
    """Raise ValueError for counts `evaluate` cannot honour: a violation kind without a pair, a probe without clips,
    or a set of clips outgrowing its block of SEED_BLOCK seeds into the next set's (probe training clips that are
    also test clips)."""
    if num_pairs < len(VIOLATIONS):
        raise ValueError(f"num_pairs (--pairs) must be at least {len(VIOLATIONS)}: one pair per violation kind")
    if min(probe_train, probe_test) < 1:
        raise ValueError("the probes need at least 1 training and 1 test clip (--probe-clips)")
    if max(num_pairs, probe_train, probe_test) > SEED_BLOCK:
        raise ValueError(f"pairs and probe clips (--pairs, --probe-clips) can be at most {SEED_BLOCK} each: each set "
                         "of clips has its block of seeds")


def check_names(names: list[str]) -> None:
    """Raise ValueError for model names the report could not tell apart: two the same, or one of the scorers the
    suite adds itself (its entry would replace the model's, or get its scores)."""
    if len(set(names)) < len(names):
        raise ValueError(f"two checkpoints share a name ({', '.join(names)}): the report could not tell them apart")
    if "" in names:  # "/" has no name of its own: the tables' column and the JSON key would be blank
        raise ValueError("a checkpoint has no name (the root folder?): give its folder a name")
    if taken := [name for name in names if name in (RANDOM, FRAME_DIFFERENCE, MAJORITY)]:
        raise ValueError(f"a checkpoint is named '{taken[0]}', like one of the suite's own scorers: rename its folder")
    # a '|' splits a Markdown table's column, a '`' ends the report's code span, a control character breaks a line
    if odd := [name for name in names if "|" in name or "`" in name or not name.isprintable()]:
        raise ValueError(f"a checkpoint is named {odd[0]!r}: the tables cannot show a name with '|', '`' or a control "
                         "character: rename its folder")


def _describe(model: JEPAModel) -> dict:
    train = model.config.get("train", {})
    trained = sum(p.numel() for p in model.net.parameters() if p.requires_grad)  # not the EMA copy
    return {"objective": model.objective, "step": model.config.get("step"), "steps": train.get("steps"),
            "params": model.info()["params"], "trained_params": trained}


def _ci(stats: dict, key: str) -> str:
    low, high = stats[f"{key}_ci"]
    return f"{stats[key]:.2f} [{low:.2f}, {high:.2f}]"


def format_difference(stats: dict) -> str:
    """A `paired_difference` as "+0.005 [-0.030, +0.040]"."""
    low, high = stats["difference_ci"]
    return f"{stats['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def format_report(report: dict) -> str:
    """Markdown tables (they read fine in a terminal too)."""
    settings = report["settings"]
    lines = [] if enough_for_verdicts(settings) else [
        f"(Too few for the intervals below to mean much: {settings['resamples']} resamples, {settings['num_pairs']} "
        f"pairs, {settings['probe_test']} probe test clips, {tracking_clips(settings['num_pairs'])} tracking clips; "
        f"at least {MIN_RESAMPLES_FOR_VERDICTS} resamples and {MIN_ITEMS_FOR_VERDICTS} of each make them meaningful.)",
        ""]
    for condition, scorers in report["pairs"].items():
        lines += [f"### Violation pairs, {condition} clips ({report['settings']['num_pairs']} pairs)", "",
                  "Pairwise accuracy: share of pairs where the implausible twin scores higher (a tie counts half) "
                  "[95 % Wilson interval]; AUROC over all clips [95 % bootstrap interval].", "",
                  "| kind | " + " | ".join(scorers) + " |", "|---" * (len(scorers) + 1) + "|"]
        for kind in VIOLATIONS:
            lines.append(f"| {kind} | " + " | ".join(_ci(s["per_kind"][kind], "accuracy") for s in scorers.values())
                         + " |")
        lines.append("| **all: accuracy** | " + " | ".join(_ci(s, "accuracy") for s in scorers.values()) + " |")
        lines += ["| **all: AUROC** | " + " | ".join(_ci(s, "auroc") for s in scorers.values()) + " |", ""]
    for condition, models in report["surprise_shift"].items():
        lines += [f"### How a violation moves the surprise curve, {condition} clips", "",
                  f"Mean over the kind's pairs of the {SHIFT_READING}", "",
                  "| kind | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
        lines += [f"| {kind} | " + " | ".join(format_shift(m[kind]) for m in models.values()) + " |"
                  for kind in VIOLATIONS]
        lines.append("")
    rep, majority = report["representation"], report["majority"]
    k = report["settings"].get("knn_neighbours", 5)  # reports written before it was recorded used 5
    for probe, title in (("knn", f"kNN probe (k={k}, cosine)"), ("linear", "Linear probe (logistic regression)")):
        test = report["settings"]["probe_test"]
        lines += [f"### {title}: accuracy on the probe's {test} test clip{'s' if test != 1 else ''}", "",
                  "| label | " + " | ".join(rep) + " | always the training clips' most common value |",
                  "|---" * (len(rep) + 2) + "|"]
        lines += [f"| {label} | " + " | ".join(f"{r[probe][label]:.3f}" for r in rep.values())
                  + f" | {majority[label]:.3f} |" for label in (*PROBE_LABELS, "mean")]
        leads = [format_difference(r["vs_random"][probe]) if "vs_random" in r else "" for r in rep.values()]
        lines += [f"| mean minus the {RANDOM}'s [95 % interval] | " + " | ".join(leads) + " | |", ""]
    lines += ["### Effective rank (RankMe) of the probe's test clips' embeddings", "", "| | " + " | ".join(rep) + " |",
              "|---" * (len(rep) + 1) + "|",
              "| effective rank | " + " | ".join(f"{r['effective_rank']:.1f}" for r in rep.values()) + " |", ""]
    track = report["tracking"]
    lines += ["### Future prediction error on plain clips (mean absolute error; in pixels for a model that predicts "
              "pixels and its random twin)", "",
              "| model | object tokens | copy last visible, object tokens | object tokens minus copy [95 % interval] "
              "| background | copy last, background |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {t['model_objects']:.3f} | {t['persistence_objects']:.3f} | "
              f"{format_difference(t['objects_minus_copy'])} | {t['model_background']:.3f} "
              f"| {t['persistence_background']:.3f} |" for name, t in track.items()]
    return "\n".join(lines)


def checkpoint_paths(given: list[str] | None) -> list[str]:
    """The given checkpoints, or every shipped one."""
    return given or [str(SHIPPED_DIR / name) for name in SHIPPED_NAMES if (SHIPPED_DIR / name).is_dir()]


def _load_all(paths: list[str]) -> dict[str, JEPAModel]:
    """Name (the folder's or repo's last part) -> model, for the checkpoints at `paths`."""
    if not paths:
        raise ValueError("no checkpoint given and none shipped under checkpoints/")
    if any(not path.strip() for path in paths):  # `--checkpoint "$CKPT"` with CKPT unset: not the root's "no name"
        raise CheckpointError(NO_CHECKPOINT)
    # abspath: "." or ".." is named after the folder it stands for (without following links, as the user named it)
    # (os.path.isdir: a name too long or a folder one may not enter answers False, for loading to say why, not raise)
    names = [Path(os.path.abspath(path)).name if os.path.isdir(path) else Path(path).name for path in paths]
    check_names(names)
    with quiet_hub_client():  # a Hub id that cannot be fetched: its CheckpointError's one line, no retry warnings
        return {name: load_model(path) for name, path in zip(names, paths)}


# Below these, an interval is too rough to call anything "clear": one resample gives an interval of zero width, and a
# handful of pairs or test clips can all agree by chance
MIN_RESAMPLES_FOR_VERDICTS = 200
MIN_ITEMS_FOR_VERDICTS = 20


def tracking_clips(num_pairs: int) -> int:
    """How many plain clips the future-prediction (tracking) check draws for a suite of `num_pairs` pairs."""
    return max(1, num_pairs // 2)


def enough_for_verdicts(settings: dict) -> bool:
    """Whether a report's intervals rest on enough resamples and items to call a difference clear."""
    return (settings["resamples"] >= MIN_RESAMPLES_FOR_VERDICTS
            and min(settings["num_pairs"], settings["probe_test"], tracking_clips(settings["num_pairs"]))
            >= MIN_ITEMS_FOR_VERDICTS)

# The options' defaults: None in the parser, so that one given where it does not apply can be refused.
DEFAULT_PAIRS, DEFAULT_PROBE_CLIPS, DEFAULT_MAX_CLIPS = 100, 300, 300


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m jepa_demo.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", action="append",
                        help="a checkpoint folder or Hub id (repeat for several; the first gets the random twin); "
                             f"default: the shipped ones ({', '.join(SHIPPED_NAMES)})")
    parser.add_argument("--pairs", type=int, action=Once,
                        help=f"violation pairs per condition (default {DEFAULT_PAIRS})")
    parser.add_argument("--probe-clips", type=int, action=Once,
                        help=f"probe training clips, and 2/3 as many to test (default {DEFAULT_PROBE_CLIPS})")
    parser.add_argument("--resamples", type=int, default=1000, action=Once,
                        help=f"bootstrap resamples for the intervals (at most {MAX_RESAMPLES})")
    parser.add_argument("--json", action=Once, help="also write the report as JSON to this file")
    parser.add_argument("--report", action=Once, help="also write a Markdown report with plots (e.g. docs/results.md)")
    parser.add_argument("--validation", action="store_true",
                        help="draw the clips from the validation seeds, where recipes are compared, not held-out ones")
    parser.add_argument("--folder", action=Once,
                        help="instead of the world's suite, a kNN probe of this folder's sub-folder labels "
                             "(jepa_demo.folder_probe)")
    parser.add_argument("--max-clips", type=int, action=Once,
                        help=f"with --folder: about this many videos, more when labels are many (each keeps the "
                             f"few the probe needs; default {DEFAULT_MAX_CLIPS})")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")
    if args.resamples > MAX_RESAMPLES:
        parser.error(f"--resamples can be at most {MAX_RESAMPLES}")
    for option, path in (("--json", args.json), ("--report", args.report)):
        if path is not None:  # found now, not after a 20-minute run
            output_file(parser, option, path, make_folders=True)
    print_any_name()  # the tables name checkpoints, folders and files
    try:
        # the folder first, checked before any checkpoint loads (a Hub one downloads first)
        run, show = _folder_probe(args, parser) if args.folder is not None else _world_suite(args, parser)
        report = run(_load_all(checkpoint_paths(args.checkpoint)))
    except KeyboardInterrupt:  # listing a large or network folder, or the run: nothing is written before it ends
        print("interrupted", file=sys.stderr)
        return 130
    except (CheckpointError, ValueError) as err:
        print(f"error: {one_line_name(str(err))}", file=sys.stderr)  # it may name a file called a\nb.mp4
        return 2
    except (RuntimeError, MemoryError) as err:  # MemoryError: NumPy's (very many pairs or clips)
        if isinstance(err, RuntimeError) and not out_of_memory(err):
            raise
        fewer = "--max-clips" if args.folder is not None else "--pairs or --probe-clips"
        print(f"error: out of memory ({first_line(err)}); fewer {fewer}, or a smaller model, need less",
              file=sys.stderr)
        return 2
    # The files first: a stdout that fails (a full disk under it, a reader gone) must not cost the run its outputs
    command = shlex.join(["python", "-m", "jepa_demo.evaluate", *(sys.argv[1:] if argv is None else argv)])
    failures = [f"could not write {err.filename or 'the outputs'}: {err.strerror or err}"  # a disk filled up, say
                for err in _write_outputs(report, args, command)]
    try:
        print(show(report), flush=True)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        write_nowhere(sys.stdout)
        if not failures:
            return 141
    except OSError as err:
        write_nowhere(sys.stdout)
        failures.append(f"could not print the tables: {err.strerror or err}"
                        + ("" if failures else " (the files asked for are written)"))
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _world_suite(args, parser):
    """After checking the suite's own options: the run (models -> report) and how its report prints."""
    if args.max_clips is not None:
        parser.error("--max-clips is for --folder; the world's suite takes --pairs and --probe-clips")
    args.pairs = DEFAULT_PAIRS if args.pairs is None else args.pairs
    args.probe_clips = DEFAULT_PROBE_CLIPS if args.probe_clips is None else args.probe_clips
    probe_test = max(1, args.probe_clips * 2 // 3)
    try:
        check_counts(args.pairs, args.probe_clips, probe_test)  # evaluate checks too, but only once models are loaded
    except ValueError as err:
        parser.error(str(err))
    if args.report and (problem := _report_problem(Path(args.report))):
        parser.error(f"--report {args.report}: {problem}")
    if args.report and args.json and _same_path(args.json, args.report, *_plot_paths(args.report)):
        parser.error(f"--json {args.json}: --report {args.report} writes there")
    _check_outputs_spare_inputs(args, parser, videos=[])

    def run(models):
        return evaluate(models, num_pairs=args.pairs, probe_train=args.probe_clips, probe_test=probe_test,
                        resamples=args.resamples, first_seed=VALIDATION_SEED if args.validation else HELD_OUT_SEED)
    return run, format_report


def _folder_probe(args, parser):
    """As `_world_suite`, for --folder; a ValueError for a folder the probe cannot use."""
    from .folder_probe import MIN_PER_LABEL, folder_probe, format_folder_report, labelled_videos

    if not args.folder.strip():  # an unset $DIR: not the world's suite, nor the working folder
        parser.error("--folder needs a folder of videos")
    if args.report or args.validation or args.pairs is not None or args.probe_clips is not None:
        parser.error("--folder probes your videos: --report, --validation, --pairs and --probe-clips are for the "
                     "world's suite")
    args.max_clips = DEFAULT_MAX_CLIPS if args.max_clips is None else args.max_clips
    if args.max_clips < 2 * MIN_PER_LABEL:  # two labels of MIN_PER_LABEL videos each
        parser.error(f"--max-clips must be at least {2 * MIN_PER_LABEL}")

    listed = labelled_videos(args.folder)  # before any checkpoint loads, to refuse the folder early
    _check_outputs_spare_inputs(args, parser, videos=listed[0])

    def run(models):
        return folder_probe(models, args.folder, args.max_clips, resamples=args.resamples, listed=listed)
    return run, format_folder_report


def _plot_paths(report: str) -> list[Path]:
    """The folder of plots a Markdown report at `report` writes, and its files."""
    from .results import PLOT_NAMES

    plots = Path(report).with_suffix("")
    return [plots, *(plots / name for name in PLOT_NAMES)]


def _check_outputs_spare_inputs(args, parser, videos: list[Path]) -> None:
    """Refuse (parser.error) an output that would replace what the run reads: a file in a checkpoint folder (its
    config, weights or card) or a video the folder probe lists. Written after the run, it was destroyed without a
    word (exit status 0)."""
    folders = [Path(path).resolve() for path in checkpoint_paths(args.checkpoint) if os.path.isdir(path)]
    read = {Path(video).resolve() for video in videos}
    outputs = [("--json", args.json), ("--report", args.report),
               *(("--report", plot) for plot in (_plot_paths(args.report)[1:] if args.report else []))]
    for option, path in outputs:
        if not path:
            continue
        target = Path(path).resolve()
        if target in read:
            parser.error(f"{option} {path}: a video the probe reads; give another file name")
        if target.is_file() and any(target.is_relative_to(folder) for folder in folders):
            parser.error(f"{option} {path}: a file of a checkpoint the run loads; give another file name")


def _write_outputs(report: dict, args, command: str) -> list[OSError]:
    """Write the files asked for, each tried whatever became of the other; returns the errors."""
    from .results import write_results

    errors = []
    if args.json:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            write_json(Path(args.json), report)
        except OSError as err:
            errors.append(err)
    if args.report:
        try:
            write_results(report, Path(args.report), command)
        except OSError as err:
            errors.append(err)
    return errors


def _report_problem(report: Path) -> str | None:
    """Why a Markdown report cannot go at `report`, its plots in the folder of its name without .md, or None (the
    report's own folder is `cannot_write_file`'s)."""
    plots = report.with_suffix("")
    if report.suffix != ".md":
        return "name a Markdown file ending in .md"
    if plots.exists() and not plots.is_dir():
        return f"its plots go in {plots}, which is a file"
    if plots.exists() and not os.access(plots, os.W_OK):
        return f"its plots go in {plots}, where it cannot write"
    return None


def _same_path(path: str, *others: str | Path) -> bool:
    return Path(path).resolve() in {Path(other).resolve() for other in others}


if __name__ == "__main__":
    sys.exit(main())
