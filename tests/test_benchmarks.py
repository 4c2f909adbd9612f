"""The benchmark scripts run and write what they promise (tiny sizes: these check the scripts, not the speed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": os.environ["PATH"], **env})


def test_train_throughput_reports_clips_flops_mfu_and_memory(tmp_path):
    out = tmp_path / "train.json"
    result = _run("train_throughput.py", "--config", "train/configs/tiny.yaml", "--steps", "2", "--warmup", "1",
                  "--threads", "1", "--peak-tflops", "0.1", "--json", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["clips_per_s"] > 0 and report["gflops_per_step"] > 0 and report["peak_memory_gb"] > 0
    assert report["mfu"] == pytest.approx(report["achieved_tflops"] / 0.1)
    assert "| CPU, 1 threads | tiny |" in result.stdout


def test_encoder_speed_compares_ours_with_vjepa2(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "encoder.json"
    result = _run("encoder_speed.py", "--presets", "tiny", "--repeats", "1", "--threads", "1", "--json", out)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["ours_s"] > 0 and row["vjepa2_s"] > 0
    assert row["ratio_vjepa2_over_ours"] == pytest.approx(row["vjepa2_s"] / row["ours_s"])


@pytest.mark.slow
def test_load_test_serves_every_user_the_answer_for_its_own_clip(tmp_path):
    """The reduced load test: `python app.py` launched for real, with an empty cache folder as on a fresh clone, 8
    gradio_client users x 3 requests, twice. The file lifetime must outlast the slowest request (7.5 s on 2 fast
    cores, 12.5 s on slow ones, 16 s while make test's other worker computes): with 4 s, the sweep sometimes removed
    an upload before its queued request had read it ("file not found"). 36 s leaves room for a slower machine."""
    out, cache = tmp_path / "load.json", tmp_path / "cache"
    result = _run("load_test.py", "--users", "8", "--requests", "3", "--rounds", "2", "--file-lifetime", "36",
                  "--json", out, JEPA_LENS_CACHE=str(cache))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert 0 < report["start_s"] < 120
    assert not [*cache.glob("gallery-*"), *cache.glob("threshold-*")]  # a fresh start: the checkpoints carry theirs
    assert report["distinct_answers"] == report["clips"] == 7  # a mixed-up answer would be caught
    for outcome in report["rounds"]:
        assert (outcome["served"], outcome["wrong"], outcome["failed"]) == (24, 0, 0), outcome["errors"]
    assert report["after_load"]["correct"] and report["after_load"]["seconds"] < 30
    assert report["uploads_in_temp_dir"] > 0 and report["uploads_left_after_lifetime"] == 0
    assert 0 < report["idle_rss_mb"] <= report["rounds"][0]["peak_mb"]
    assert report["stop_status"] == 0 and report["left_after_stop"] == []


def test_vjepa2_latency_times_every_call_through_our_interface(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "vjepa2.json"
    result = _run("vjepa2_latency.py", "--hidden-size", "64", "--layers", "2", "--frames-per-clip", "4",
                  "--clip-frames", "8", "--threads", "1", "--json", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {"load", "embed", "predict_masked (multiblock)", "surprise"}
    assert all(seconds > 0 for seconds in report["seconds"].values()) and report["parameters"] > 0


def test_sweep_race_compares_the_plain_sweep_with_the_apps(tmp_path):
    out = tmp_path / "sweep.json"
    result = _run("sweep_race.py", "--seconds", "1", "--threads", "0", "--json", out)  # once recorded all zeros
    assert result.returncode == 2 and "must be above 0" in result.stderr and not out.exists()
    result = _run("sweep_race.py", "--seconds", "1", "--threads", "2", "--json", out)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["sweep"] for row in rows] == ["check, remove, discard", "app.sweep_files"]
    assert all(row["fetches"] > 0 and row["failed_writes"] == [] for row in rows)
    plain, app = ({"refused": row["refused_403"] + row["refused_404"], **row} for row in rows)
    assert app["refused"] <= plain["refused"] + 5  # the app's sweep is not the worse one (a random race: some slack)
    assert "app.sweep_files" in result.stdout
