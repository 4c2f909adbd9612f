"""Golden checks of the shipped checkpoint (checkpoints/default): it loads, it is small, it did not collapse, and its
surprise reacts to an object appearing from nothing.

These guard against regressions at the one level the checkpoint reaches today; they are not the goals. The kNN probe
and the other violation kinds, where it does not beat a random encoder or the frame-difference heuristic, are measured
by `python -m jepa_demo.evaluate` and reported in the README; no test pretends otherwise."""

from pathlib import Path

import pytest

from jepa_demo.evaluate import pair_accuracy, violation_pairs
from jepa_demo.inference import load_model
from train.report import read_metrics

DEFAULT = Path(__file__).resolve().parent.parent / "checkpoints" / "default"
# Collapse floors (see README): a collapsed encoder has target std -> 0 and RankMe -> 1; a random one ~0.45 and ~47.
MIN_TARGET_STD = 0.1
MIN_RANKME = 5.0
MIN_APPEAR_ACCURACY = 0.8  # measured 0.94-1.00 on held-out pairs


@pytest.fixture(scope="module")
def model():
    return load_model(DEFAULT, device="cpu")


def test_shipped_checkpoint_is_complete_and_small(model):
    for name in ("model.safetensors", "config.json", "README.md", "metrics.csv", "training_curves.png"):
        assert (DEFAULT / name).is_file(), name
    assert (DEFAULT / "model.safetensors").stat().st_size <= 25 * 2**20
    assert model.info()["step"] == model.config["train"]["steps"]
    card = (DEFAULT / "README.md").read_text()
    assert "python -m train --config train/configs/cpu.yaml" in card


def test_training_log_shows_no_collapse():
    rows = read_metrics(DEFAULT / "metrics.csv")
    assert min(r["target_std"] for r in rows) >= MIN_TARGET_STD
    assert min(r["rankme"] for r in rows) >= MIN_RANKME


@pytest.mark.slow
def test_surprise_is_higher_when_an_object_appears_from_nothing(model):
    pairs = [(k, p, i) for k, p, i in violation_pairs(60, detail=False, size=model.preprocess.img_size)
             if k == "appear"]
    accuracy = pair_accuracy(lambda video: model.surprise(video).score, pairs)["accuracy"]
    assert accuracy >= MIN_APPEAR_ACCURACY, accuracy
