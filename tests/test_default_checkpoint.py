"""Golden checks of the shipped checkpoints (checkpoints/default, and its comparisons pixel-baseline and jepa-sigreg):
they load, they are small, the default did not collapse, and a small run of the evaluation suite stays above the
margins stated below.

These guard against regressions at the level the default reaches today; they are not the goals. The goals (issue 4:
pairwise accuracy >= 0.97, +0.15 over the pixel baseline with irrelevant detail, kNN +0.2 over a random encoder) are
measured by `python -m jepa_demo.evaluate --report docs/results.md`, and docs/results.md says they are not met; no
test pretends otherwise."""

from pathlib import Path

import pytest

from jepa_demo import gallery
from jepa_demo.evaluate import (
    HELD_OUT_SEED,
    majority_rates,
    pair_statistics,
    probe_clips,
    random_twin,
    representation_scores,
    score_pairs,
    violation_pairs,
)
from jepa_demo.inference import load_model
from jepa_demo.training_metrics import read_metrics
from jepa_demo.world import render_clip
from train.report import COLLAPSE_FLOORS

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT = CHECKPOINTS / "default"
# Margins of the small suite below (24 pairs, 60 + 40 probe clips), with what the shipped default measured:
MIN_CLEAN_ACCURACY = 0.65  # pairwise accuracy over all kinds, clean clips: measured 0.75
# With irrelevant detail: measured 0.58 (14 of 24), 0.75 before bounces under gravity kept their height (2026-12-05:
# the default was trained on bounces that lose it, and held out it fell from 0.76 to 0.68 there, README). Set from
# that measurement, not from what the check should mean: more than chance (12 of 24) by at least one pair.
MIN_DETAIL_ACCURACY = 0.54
# Clean clips, over a random encoder of the same shape: measured +0.21 (0.75 vs 0.54; +0.29, 0.75 vs 0.46, before the
# bounces kept their height), set so that one pair (0.04) may turn on another machine's float sums
MIN_MARGIN_OVER_RANDOM = 0.16
# The probe and rank checks guard against a broken or collapsed embedding only: an untrained encoder passes them too
# (held out, a random encoder's probes are 0.499 and 0.511 against the most common value's 0.424, its rank 2.9), and
# the default's probes do not beat a random encoder's (README, Results)
PROBE_FLOOR_SLACK = 0.1  # kNN may fall at most this far below the most-common-value floor (measured +0.06)
MIN_CLIP_RANK = 2.0  # effective rank of clip embeddings (a collapsed encoder gives 1; measured 2.7)


@pytest.mark.parametrize("name", ["default", "pixel-baseline", "jepa-sigreg"])
def test_shipped_checkpoints_are_complete_small_and_recorded(name):
    folder = CHECKPOINTS / name
    for part in ("model.safetensors", "config.json", "README.md", "metrics.csv", "training_curves.png"):
        assert (folder / part).is_file(), part
    assert (folder / "model.safetensors").stat().st_size <= 25 * 2**20
    model = load_model(folder, device="cpu")
    assert model.info()["step"] == model.config["train"]["steps"] == 1500  # the same budget for all three
    card = (folder / "README.md").read_text()
    assert "python -m train --config train/configs/cpu.yaml" in card
    assert model.objective == {"default": "jepa"}.get(name, name.removesuffix("-baseline"))


@pytest.mark.parametrize("name", ["default", "pixel-baseline", "jepa-sigreg"])
def test_shipped_checkpoints_carry_their_current_gallery_and_threshold(name, tmp_path, monkeypatch):
    """A fresh clone's app reads these instead of building them (tens of seconds each on 2 cores). After retraining,
    rebuild them with `python -m jepa_demo.gallery --checkpoint checkpoints/NAME --ship`."""
    model = load_model(CHECKPOINTS / name, device="cpu")
    found = gallery.find_gallery(model, cache_dir=tmp_path)  # an empty cache: only a shipped file can be found
    rebuild = f"stale or missing: python -m jepa_demo.gallery --checkpoint checkpoints/{name} --ship"
    assert found and found[1].parent == CHECKPOINTS / name, rebuild
    shipped = found[0]
    with monkeypatch.context() as patch:
        patch.setattr(gallery, "calibrate_surprise", lambda *args: pytest.fail("calibrated, not read"))
        assert gallery.cached_surprise_threshold(model, tmp_path) == shipped.surprise_threshold > 0
    # and still what calibrating gives: a change to the surprise code or to the world late in a clip (frames 16-31,
    # which the embeddings below never see) leaves the fingerprint as it was
    assert gallery.surprise_threshold(model) == pytest.approx(shipped.surprise_threshold, rel=1e-3), \
        rebuild.replace("stale or missing: ", "threshold stale: bump GALLERY_FORMAT (jepa_demo/gallery.py), then ")
    for index in (0, 150, 299):  # its embeddings are this model's: each clip, embedded anew, finds itself first
        (nearest, similarity), *_ = gallery.nearest(shipped, model.embed(gallery.gallery_clip(shipped, index, model)))
        assert nearest == index and similarity > 0.9999
    # and its labels the world's as it labels them now (the map's colours): a change of labels alone leaves frames and
    # embeddings as they were, so only this finds such a stale file (which --ship alone would find valid and keep)
    world = gallery._world(model)
    assert [render_clip(int(seed), world).labels for seed in shipped.seeds] == shipped.labels, \
        f"labels {rebuild.replace('stale or missing: ', 'stale: bump GALLERY_FORMAT (jepa_demo/gallery.py), then ')}"
    assert not any(tmp_path.iterdir())


def test_training_log_shows_no_collapse():
    rows = read_metrics(DEFAULT / "metrics.csv")
    assert min(r["target_std"] for r in rows) >= COLLAPSE_FLOORS["target_std"]
    assert min(r["rankme"] for r in rows) >= COLLAPSE_FLOORS["rankme"]


def test_the_defaults_targets_differ_from_clip_to_clip_at_every_token():
    """Its log predates the monitor of the spread across clips (jepa_demo.training_metrics.LOGGED_LATER), so the
    teacher is checked here: on 32 world clips under one future mask, its tokens at each place vary with the clip,
    above the floor (0.44 measured; a random encoder of its shape, whose tokens say what is there without training,
    0.28: the floor of 0.1 sits well under both, as the overall spread's sits under a random encoder's 0.45)."""
    import numpy as np
    import torch

    from jepa_demo.masks import mask_to_indices, sample_mask
    from jepa_demo.model import clip_spread
    from jepa_demo.preprocess import preprocess_batch
    from jepa_demo.world import WorldConfig, render_clip

    model = load_model(DEFAULT, device="cpu")
    cfg = WorldConfig(size=model.preprocess.img_size, num_frames=model.cfg.num_frames)
    clips = preprocess_batch(np.stack([render_clip(HELD_OUT_SEED + 9_000_000 + i, cfg).frames for i in range(32)]),
                             model.preprocess)
    mask = sample_mask("future", model.cfg.grid, torch.Generator().manual_seed(0), num_future=2)
    with torch.no_grad():
        targets = model.net.encode_targets(clips, mask_to_indices(mask, len(clips))[1])
        random_targets = random_twin(model).net.encode_targets(clips, mask_to_indices(mask, len(clips))[1])
    assert clip_spread(targets) >= COLLAPSE_FLOORS["clip_std"]
    # at every token, not on average only: measured 0.30 at the least varied (a random encoder's, 0.01)
    assert targets.std(dim=0).mean(-1).min() >= COLLAPSE_FLOORS["clip_std"]
    # the figures README.md and train/report.py give for the floor's scale
    assert float(clip_spread(targets)) == pytest.approx(0.44, abs=0.01)
    assert float(clip_spread(random_targets)) == pytest.approx(0.28, abs=0.01)


@pytest.mark.slow
def test_small_evaluation_suite_stays_above_the_stated_margins():
    """The suite's own pieces, on the clips `evaluate` would draw, for only what is asserted: the default on both
    conditions and its random twin on clean clips (the whole `evaluate` runs on tiny models in test_evaluate.py;
    here it would also score the pixel baseline and the random encoder with detail, doubling the time)."""
    default = load_model(DEFAULT, device="cpu")
    random = random_twin(default)
    clean, detail = (violation_pairs(24, with_detail) for with_detail in (False, True))
    accuracy = {name: pair_statistics(score_pairs(_surprise_score(model), pairs), [kind for kind, _, _ in pairs],
                                      resamples=10)["accuracy"]
                for name, model, pairs in (("clean", default, clean), ("detail", default, detail),
                                           ("random, clean", random, clean))}
    assert accuracy["clean"] >= MIN_CLEAN_ACCURACY
    assert accuracy["detail"] >= MIN_DETAIL_ACCURACY
    assert accuracy["clean"] - accuracy["random, clean"] >= MIN_MARGIN_OVER_RANDOM
    size, frames = default.preprocess.img_size, default.cfg.num_frames
    train, test = probe_clips(60, 40, HELD_OUT_SEED, size, frames)
    probes, _ = representation_scores(default.embed, train, test)
    majority = majority_rates(train, test)["mean"]
    assert probes["knn"]["mean"] >= majority - PROBE_FLOOR_SLACK
    # the linear probe strictly above: one embedding for every clip leaves it the most common value, so the slack
    # would let a collapsed encoder pass (measured +0.12)
    assert probes["linear"]["mean"] > majority
    assert probes["effective_rank"] >= MIN_CLIP_RANK


def _surprise_score(model):
    return lambda video: model.surprise(video).score
