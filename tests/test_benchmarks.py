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
    assert report["clips_per_s"] > 0 and report["gflops_per_step"] > 0 and report["peak_memory_gib"] > 0
    assert 0 < report["attention_share_of_flops"] < 1  # PyTorch's counter alone counts no CPU attention
    assert report["mfu"] == pytest.approx(report["achieved_tflops"] / 0.1)
    assert report["achieved_tflops"] == pytest.approx(report["gflops_per_step"] * 2 / report["seconds"] / 1e3)
    assert report["peak_source"] == "--peak-tflops" and report["warmup"] == 1 and report["torch"]
    assert "| CPU, 1 threads | tiny |" in result.stdout


def test_train_throughput_counts_each_steps_own_mask():
    """The mask sets how many tokens the encoder sees: a future mask and a multi-block mask cost differently."""
    import importlib.util

    import torch

    from jepa_demo.config import model_config_from_preset
    from jepa_demo.model import VideoJEPA
    from train.config import load_config
    from train.loop import Runtime, mask_for_step

    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = load_config(str(ROOT / "train" / "configs" / "tiny.yaml"), ["future_prob=0.5"])
    model = VideoJEPA(model_config_from_preset(cfg.model))
    steps = {mask_for_step(step, cfg, model.cfg.grid)[0]: step for step in range(20)}
    clip = torch.zeros(1, 3, model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size)
    runtime = Runtime(torch.device("cpu"))
    future, multiblock = (bench.step_flops(model, clip, steps[kind], cfg, runtime) for kind in ("future", "multiblock"))
    assert future[0] != multiblock[0] and future[1] > 0 and multiblock[1] > 0
    assert all(p.grad is None for p in model.parameters())  # counting leaves no gradients behind
    assert bench.gpu_peak_tflops("NVIDIA L40S") == 362.0 and bench.gpu_peak_tflops("NVIDIA L4") == 121.0
    assert bench.gpu_peak_tflops("NVIDIA H100 PCIe") == 756.0 and bench.gpu_peak_tflops("NVIDIA A10G") is None


def test_benchmarks_refuse_settings_they_cannot_measure(tmp_path):
    """Refused up front, before minutes of work: no threads, several processes each dividing the whole batch's FLOPs
    by one device's peak, a V-JEPA 2 clip shorter than the model's window (it failed in surprise, the last call), a
    V-JEPA 2 shape transformers cannot build (after a 326 M-parameter model was built and saved)."""
    out = tmp_path / "out.json"
    refused = [_run("train_throughput.py", "--config", "train/configs/tiny.yaml", "--threads", "0", "--json", out),
               _run("train_throughput.py", "--config", "train/configs/tiny.yaml", "--json", out, RANK="0"),
               _run("vjepa2_latency.py", "--frames-per-clip", "64", "--json", out),
               _run("vjepa2_latency.py", "--frames-per-clip", "15", "--json", out),
               _run("vjepa2_latency.py", "--frames-per-clip", "2", "--json", out),  # one time step: nothing to predict
               _run("vjepa2_latency.py", "--hidden-size", "100", "--json", out)]
    reasons = ["must be at least 1", "one process", "--clip-frames 32 is shorter", "a multiple of the tubelet",
               "two at least", "a multiple of the tubelet"]
    for result, reason in zip(refused, reasons, strict=True):
        assert result.returncode == 2 and reason in result.stderr, result.stderr
    assert not out.exists()


def test_encoder_speed_compares_ours_with_vjepa2(tmp_path):
    out = tmp_path / "encoder.json"
    result = _run("encoder_speed.py", "--presets", "tiny", "--repeats", "1", "--threads", "1", "--json", out)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["ours_s"] > 0 and row["vjepa2_s"] > 0
    assert row["ratio_vjepa2_over_ours"] == pytest.approx(row["vjepa2_s"] / row["ours_s"])


@pytest.mark.slow
def test_load_test_serves_every_user_the_answer_for_its_own_clip(tmp_path):
    """The reduced load test: `python app.py` launched for real, with an empty cache folder of its own as on a fresh
    clone, 8 gradio_client users x 3 requests, twice. The file lifetime must outlast the slowest request (7.5 s on 2
    fast cores, 12.5 s on slow ones, 16 s while make test's other worker computes): with 4 s, the sweep sometimes
    removed an upload before its queued request had read it ("file not found"). 36 s leaves room for a slower
    machine."""
    out, home_cache = tmp_path / "load.json", tmp_path / "home-cache"
    result = _run("load_test.py", "--users", "8", "--requests", "3", "--rounds", "2", "--file-lifetime", "36",
                  "--json", out, JEPA_LENS_CACHE=str(home_cache))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert 0 < report["start_s"] < 120
    assert not home_cache.exists()  # the app started on an empty cache of the script's own, not the caller's
    started_with = report["cache_after_start"]
    assert any(name.startswith("jepa-lens-served/examples/") for name in started_with)  # what the app wrote
    assert not [name for name in started_with if name.startswith(("gallery-", "threshold-"))]  # checkpoints carry them
    assert report["distinct_answers"] == report["clips"] == 7  # a mixed-up answer would be caught
    for outcome in report["rounds"]:
        assert (outcome["served"], outcome["wrong"], outcome["failed"]) == (24, 0, 0), outcome["errors"]
    assert report["after_load"]["correct"] and report["after_load"]["seconds"] < 30
    assert report["uploads_in_temp_dir"] > 0 and report["uploads_left_after_lifetime"] == 0
    # MB, not KB or pages: a server holding torch, Gradio and a model takes hundreds of MB, not hundreds of thousands
    assert 200 < report["idle_rss_mib"] < 8000 and 200 < report["rounds"][0]["peak_mib"] < 8000
    assert report["stop_status"] == 0 and report["left_after_stop"] == []


def test_app_views_times_the_apps_own_explorer(tmp_path):
    """The app draws the pixel baseline's surprise beside the default's: the timed view must do that work too."""
    out = tmp_path / "views.json"
    result = _run("app_views.py", "--repeats", "1", "--threads", "2", "--json", out,
                  JEPA_LENS_CACHE=str(tmp_path / "cache"), GRADIO_ANALYTICS_ENABLED="False", CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["surprise_beside"] == "pixel" and report["checkpoint"].endswith("default")
    assert report["device"] == "cpu" and report["threads"] == 2  # as asked: a GPU the machine has is hidden
    assert set(report["median_seconds"]) == {"decode upload", "masked prediction", "nearest neighbours",
                                             "embedding map", "surprise", "all four views"}
    assert all(seconds > 0 for seconds in report["median_seconds"].values())


def test_vjepa2_latency_times_every_call_through_our_interface(tmp_path):
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
    assert all(row["fetches"] > 0 and row["sweep_passes"] > 0 and row["failed_writes"] == [] for row in rows)
    plain, app = ({"refused": row["refused_403"] + row["refused_404"], **row} for row in rows)
    assert app["refused"] <= plain["refused"] + 5  # the app's sweep is not the worse one (a random race: some slack)
    assert "app.sweep_files" in result.stdout
