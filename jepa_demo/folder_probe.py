"""Do a checkpoint's clip embeddings tell your own labelled videos apart? A kNN probe of a folder's sub-folder labels.

    python -m jepa_demo.evaluate --folder clips/ [--checkpoint DIR ...] [--max-clips 300] [--json out.json]

Each sub-folder of the folder is a label (clips/cats/a.mp4 is a "cats"), as for training on `data=clips/`; files
directly in the folder have none and are left out. Each clip is embedded (`model.embed`) and labelled by the majority
of its k nearest other clips (cosine), leave-one-out, since a folder has no separate test set. Beside each checkpoint:
a randomly initialised encoder of the first one's shape (the 'no learning' baseline, with the first one's lead over
it and a paired bootstrap 95 % interval) and always answering the most common label (what a probe must beat). A
label needs MIN_PER_LABEL readable videos (fewer are left out, with a line saying so); past --max-clips, files are
drawn label by label (`draw`). It knows nothing about training or the app.
Clips cut from one recording find each other as neighbours and flatter both encoders: probe one clip per recording.
The interval treats clips as independent, which leave-one-out neighbours are not quite, so it is somewhat narrow.
"""

from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from tqdm import tqdm

from .cli import check_finite, one_line_name
from .evaluate import (
    MAJORITY,
    MIN_ITEMS_FOR_VERDICTS,
    MIN_RESAMPLES_FOR_VERDICTS,
    RANDOM,
    errors_named,
    format_difference,
    paired_difference,
    random_twin,
)
from .inference import JEPAModel
from .video import VideoError, folder_label, list_videos, read_video, with_path

# Left one out, a clip of a label with c videos has at most c - 1 neighbours of its own: with k = 5, a label of 3 or
# fewer never holds a majority of the vote, whatever the embeddings (it can win only a plurality, as the other labels
# happen to split the rest)
MIN_PER_LABEL = 4


def labelled_videos(root) -> tuple[list[Path], list[str]]:
    """Every video file in `root`'s sub-folders and its label. ValueError when fewer than two labels hold
    MIN_PER_LABEL files: nothing to tell apart."""
    listed = list_videos(root)
    labelled = [(path, label) for path in listed if (label := folder_label(path, root)) is not None]
    unlabelled = len(listed) - len(labelled)
    check_labels(root, Counter(label for _, label in labelled), "videos",
                 hint=f"; {unlabelled} lie directly in the folder, where no sub-folder names their label" if unlabelled
                 else "")
    return [path for path, _ in labelled], [label for _, label in labelled]


def draw(labels: list[str], max_clips: int, seed: int = 0) -> dict[str, tuple[list[int], int]]:
    """Per label, its files (indices into `labels`) in a random order (from `seed`) and how many readable ones to
    take from them: all when there are `max_clips` or fewer in all; else about `max_clips`, each label's share in
    proportion to its files but never fewer than MIN_PER_LABEL of a label that has them."""
    rng, drawn = np.random.default_rng(seed), {}
    for label, count in sorted(Counter(labels).items()):
        members = [i for i, name in enumerate(labels) if name == label]
        share = count if len(labels) <= max_clips else min(count, max(MIN_PER_LABEL, max_clips * count // len(labels)))
        drawn[label] = (rng.permutation(members).tolist(), share)
    return drawn


def enough_labels(counts) -> bool:
    """Whether two labels (label -> count of videos) hold MIN_PER_LABEL videos each: something to tell apart."""
    return sum(count >= MIN_PER_LABEL for count in counts.values()) >= 2


def check_labels(root, counts: Counter, what: str, unreadable: list[str] = (), hint: str = "") -> None:
    """`unreadable`: why files could not be read, the reason so few are left (named: the first of them); `hint`, a
    further reason, added to the message."""
    if not enough_labels(counts):
        found = ", ".join(f"{label} ({count})" for label, count in sorted(counts.items()))
        why = (f"; {len(unreadable)} could not be read (first: {unreadable[0]})" if unreadable else "") + hint
        raise ValueError(f"{root}: the probe needs two sub-folders (labels) holding at least {MIN_PER_LABEL} {what} "
                         f"each; found {found or 'none'}{why}")


def leave_one_out_knn(embeddings: np.ndarray, labels: list[str], k: int = 5) -> np.ndarray:
    """(clips,) bool: whether the majority label of each clip's k nearest other clips (cosine) is its own. A tied
    vote goes to the label first in sorted order (scikit-learn's rule): the same rule for every encoder compared, so
    the lead over the random one stands, but a label's own row gains or loses by its name."""
    neighbours = min(k, len(embeddings) - 1)
    probe = KNeighborsClassifier(n_neighbors=neighbours, metric="cosine")
    return cross_val_predict(probe, embeddings, labels, cv=LeaveOneOut()) == np.asarray(labels)


def most_common_label(labels: list[str]) -> np.ndarray:
    """(clips,) bool: whether each clip's label is the folder's most common one (ties: the first in alphabetical
    order), the floor a probe must clear. Not left one out: leaving each clip out makes the other label the most
    common one whenever two are level, and that floor would be 0."""
    counts = Counter(labels)
    answer = min(counts, key=lambda name: (-counts[name], name))
    return np.asarray(labels) == answer


def folder_probe(models: dict[str, JEPAModel], root, max_clips: int = 300, k: int = 5,
                 resamples: int = 1000, listed: tuple[list[Path], list[str]] | None = None) -> dict:
    """The probe for `models` (name -> model; the first one gets a random twin). Files are taken label by label
    (`draw`); one that cannot be read for every model's input is left out for all, so that all answer the same clips,
    and replaced by the next of its label. `listed`: `labelled_videos(root)` when the caller has it already (a large
    or network folder is then listed once)."""
    paths, labels = labelled_videos(root) if listed is None else listed
    scorers = {**models, RANDOM: random_twin(next(iter(models.values())))}
    drawn = draw(labels, max_clips)
    embeddings, unreadable = _embed_drawn(paths, drawn, scorers)
    readable = Counter(labels[i] for i in embeddings)
    check_labels(root, readable, "readable videos", unreadable)
    too_few = {label: readable[label] for label in drawn if readable[label] < MIN_PER_LABEL}
    kept = [i for i in sorted(embeddings) if labels[i] not in too_few]
    labels = [labels[i] for i in kept]
    hits = {name: leave_one_out_knn(np.stack([embeddings[i][name] for i in kept]), labels, k) for name in scorers}
    hits[MAJORITY] = most_common_label(labels)
    under_test = next(iter(models))
    return {"folder": str(root), "k": k, "clips": len(labels), "resamples": resamples, "unreadable": unreadable,
            "too_few": too_few,
            "labels": dict(sorted(Counter(labels).items())),
            "accuracy": {name: _per_label(right, labels) for name, right in hits.items()},
            "vs_random": paired_difference(hits[under_test], hits[RANDOM], resamples)}


def _per_label(right: np.ndarray, labels: list[str]) -> dict:
    by_label = {label: float(right[[i for i, name in enumerate(labels) if name == label]].mean())
                for label in sorted(set(labels))}
    return {"per_label": by_label, "all": float(right.mean())}


def _input(model: JEPAModel) -> tuple[int, int]:
    """What `model.embed` is given: its number of frames, decoded straight to its short side."""
    return model.cfg.num_frames, model.preprocess.resize_to


def _embedding(name: str, model: JEPAModel, clip: np.ndarray) -> np.ndarray:
    with errors_named(name):  # outputs that are not numbers, said for this model, not in scikit-learn's words
        return check_finite(model.embed(clip))


def _embed_drawn(paths: list[Path], drawn: dict, scorers: dict[str, JEPAModel]) -> tuple[dict, list[str]]:
    """File index -> {scorer name: embedding} for the files `draw` asks for, read one at a time for each input the
    scorers take (only the embeddings are kept); a file that fails for any input is replaced by the next of its
    label. And why the unreadable ones failed."""
    inputs = {}
    for name, model in scorers.items():
        inputs.setdefault(_input(model), []).append(name)
    embeddings, unreadable = {}, []
    with tqdm(total=sum(share for _, share in drawn.values()), desc="embedding", unit="file", leave=False,
              disable=None) as bar:  # None: on a terminal only
        for order, share in drawn.values():
            taken = 0
            for i in order:
                if taken == share:
                    break
                try:
                    clips = {key: read_video(paths[i], num_frames=key[0], size=key[1]) for key in inputs}
                except VideoError as err:
                    unreadable.append(with_path(err, paths[i]))
                    continue
                embeddings[i] = {name: _embedding(name, scorers[name], clips[key])
                                 for key, names in inputs.items() for name in names}
                taken += 1
                bar.update()
    return embeddings, unreadable


def _cell(label: str) -> str:
    """A sub-folder's name as one Markdown table cell: a '|' in it would split the row (every figure after it under
    the wrong model), a newline end it."""
    return one_line_name(label).replace("|", "\\|")


def format_folder_report(report: dict) -> str:
    """A Markdown table: accuracy per label and in all, per model; the first one's lead over the random encoder."""
    scorers = list(report["accuracy"])
    lines = [f"### kNN probe (k={report['k']}, cosine, leave-one-out) of the sub-folder labels of "
             f"{one_line_name(report['folder'])}: "
             f"{report['clips']} clips", ""]
    if report["unreadable"]:
        first = one_line_name(report["unreadable"][0])
        lines += [f"Left out, cannot be read: {len(report['unreadable'])} (first: {first})", ""]
    if report["too_few"]:
        few = ", ".join(f"{one_line_name(label)} ({count})" for label, count in report["too_few"].items())
        lines += [f"Left out, labels with fewer than {MIN_PER_LABEL} readable videos: {few}", ""]
    lines += ["| label (clips) | " + " | ".join(scorers) + " |", "|---" * (len(scorers) + 1) + "|"]
    for label, count in report["labels"].items():
        lines.append(f"| {_cell(label)} ({count}) | "
                     + " | ".join(f"{report['accuracy'][s]['per_label'][label]:.3f}" for s in scorers) + " |")
    lines.append("| **all** | " + " | ".join(f"{report['accuracy'][s]['all']:.3f}" for s in scorers) + " |")
    lines += ["", f"{scorers[0]} minus the {RANDOM} [95 % interval]: {format_difference(report['vs_random'])}"]
    if report["resamples"] < MIN_RESAMPLES_FOR_VERDICTS or report["clips"] < MIN_ITEMS_FOR_VERDICTS:
        lines[-1] += (f" (from {report['resamples']} resamples of {report['clips']} clips: too few for the interval "
                      "to mean much)")
    return "\n".join(lines)
