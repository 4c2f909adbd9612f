"""The command line, run as a user would: real mp4 files, a real subprocess, one JSON object per file and line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jepa_demo.checkpoint import save_checkpoint
from jepa_demo.video import write_video
from jepa_demo.world import WorldConfig, make_pair

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path, tiny_model, tiny_preprocess):
    save_checkpoint(tiny_model, tmp_path / "ckpt", tiny_preprocess, step=3)
    plausible, implausible = make_pair(1, "vanish", WorldConfig(size=48, num_frames=16))
    write_video(tmp_path / "a.mp4", plausible.frames)
    write_video(tmp_path / "b.mp4", implausible.frames)
    (tmp_path / "broken.mp4").write_text("this is not a video")
    return tmp_path


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jepa_demo", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_surprise_json_one_line_per_file_and_bad_file_reported(files):
    result = _cli("surprise", files / "a.mp4", files / "broken.mp4", files / "b.mp4", "--json",
                  "--checkpoint", files / "ckpt")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["file"]).name for r in lines] == ["a.mp4", "b.mp4"]
    for r in lines:
        assert r["score"] == pytest.approx(max(r["per_step"]) - min(r["per_step"]), abs=2e-6)  # 6 decimals
        assert len(r["per_step"]) == 7
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "broken.mp4" in errors[0] and "not a readable video" in errors[0]
    assert "Traceback" not in result.stderr


def test_embed_and_info(files):
    result = _cli("embed", files / "a.mp4", "--json", "--checkpoint", files / "ckpt")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["dim"] == 32 and len(record["embedding"]) == 32
    result = _cli("info", files / "a.mp4")
    assert result.returncode == 0 and "16 frames, 48x48" in result.stdout


def test_a_reader_that_goes_away_stops_it_quietly(files):
    """`python -m jepa_demo info *.mp4 | head -1`: the pipe is closed here before the first line is written."""
    process = subprocess.Popen([sys.executable, "-m", "jepa_demo", "info", files / "a.mp4", files / "b.mp4"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141 and stderr == b""  # 128 + SIGPIPE, as a Unix tool; no traceback

def test_bad_checkpoint_exits_2_with_one_line(files):
    result = _cli("embed", files / "a.mp4", "--checkpoint", files / "nowhere")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no checkpoint folder" in result.stderr


def test_terminal_demo_runs_pairs_through_mp4_and_leaves_nothing_behind(files, tmp_path):
    """The terminal tour: one block per violation kind, the temporary mp4 files removed."""
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    result = subprocess.run([sys.executable, "-m", "jepa_demo.demo", "--checkpoint", str(files / "ckpt"),
                             "--kind", "appear", "--kind", "vanish"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "appear at frame" in result.stdout and "vanish at frame" in result.stdout
    assert "more surprising in" in result.stdout and "of 2 pairs" in result.stdout
    assert not list((tmp_path / "tmp").iterdir())

    missing = subprocess.run([sys.executable, "-m", "jepa_demo.demo", "--checkpoint", str(tmp_path / "none")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
