import json

import numpy as np
import pytest

from jepa_demo.evaluate import (
    evaluate,
    format_report,
    frame_difference_score,
    main,
    pair_accuracy,
    tracking_errors,
    violation_pairs,
)
from jepa_demo.inference import load_model
from jepa_demo.world import VIOLATIONS, WorldConfig, render_clip


@pytest.fixture
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


def test_pair_accuracy_counts_wins_losses_and_ties_per_kind():
    bright, dark = np.full((4, 8, 8, 3), 200, np.uint8), np.zeros((4, 8, 8, 3), np.uint8)
    pairs = [("teleport", dark, bright), ("teleport", bright, dark), ("vanish", dark, dark)]
    result = pair_accuracy(lambda v: float(v.mean()), pairs)
    assert result["per_kind"] == {"teleport": 0.5, "vanish": 0.5}
    assert result["accuracy"] == pytest.approx(0.5)
    assert pair_accuracy(lambda v: float(v.mean()), pairs[:1])["accuracy"] == 1.0


def test_frame_difference_score_finds_a_sudden_change():
    steady = np.zeros((10, 16, 16, 3), np.uint8)
    jump = steady.copy()
    jump[6:, :8] = 255  # half the frame lights up at frame 6
    assert frame_difference_score(steady) == 0.0
    assert frame_difference_score(jump) > 0.1


def test_violation_pairs_are_held_out_matched_twins_of_every_kind():
    pairs = violation_pairs(len(VIOLATIONS), detail=False, size=32)
    assert [kind for kind, _, _ in pairs] == list(VIOLATIONS)
    for _, plausible, implausible in pairs:
        assert plausible.shape == implausible.shape and not np.array_equal(plausible, implausible)
        assert np.array_equal(plausible[:6], implausible[:6])  # same start, the violation comes later


def test_small_evaluation_reports_every_scorer_and_writes_json(checkpoint, tmp_path, capsys):
    report = evaluate(load_model(checkpoint, device="cpu"), num_pairs=6, probe_train=20, probe_test=10)
    for condition in ("clean", "detail"):
        scorers = report["pairs"][condition]
        assert set(scorers) == {"jepa", "random_encoder", "frame_difference"}
        assert all(0 <= s["accuracy"] <= 1 and set(s["per_kind"]) == set(VIOLATIONS) for s in scorers.values())
    assert 0 <= report["knn_probe"]["jepa"]["mean"] <= 1 and 0 < report["knn_probe"]["majority"]["mean"] <= 1
    assert "| teleport |" in format_report(report)

    out = tmp_path / "report.json"
    assert main(["--checkpoint", str(checkpoint), "--pairs", "6", "--probe-clips", "20", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["num_pairs"] == 6
    assert "kNN probe" in capsys.readouterr().out


def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err


def test_tracking_errors_compare_the_predictor_with_copying_the_last_latent(checkpoint):
    model = load_model(checkpoint, device="cpu")
    clips = [render_clip(i, WorldConfig(size=32, num_frames=4, occluder_prob=0, min_objects=3, radius=(0.2, 0.25)))
             for i in range(3)]
    errors = tracking_errors(model, clips)
    assert set(errors) == {f"{who}_{where}" for who in ("model", "persistence") for where in ("objects", "background")}
    assert all(np.isfinite(v) and v > 0 for v in errors.values())
    assert model.target_latents(clips[0].frames).shape == (*model.cfg.grid, model.embed_dim)
