"""The benchmark scripts run and write what they promise (tiny sizes: these check the scripts, not the speed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1"})


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
