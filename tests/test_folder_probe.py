"""The kNN probe of a folder's sub-folder labels (`python -m jepa_demo.evaluate --folder`), on real encoded files."""

import json

import numpy as np
import pytest

from jepa_demo.evaluate import main
from jepa_demo.folder_probe import labelled_videos, leave_one_out_knn, most_common_label
from jepa_demo.video import write_video


def _write(path, shade: int, frames: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    video = np.full((frames, 32, 32, 3), shade, np.uint8)
    video[:, 8:24, 8:24] = 255 - shade  # a square, so that the clip is not flat
    write_video(path, video)


def test_labels_are_the_first_sub_folder_and_loose_files_have_none(tmp_path):
    for name in ("cats/a.mp4", "cats/deep/b.gif", "dogs/c.mp4", "dogs/d.mp4", "e.mp4"):
        _write(tmp_path / name, 40)
    paths, labels = labelled_videos(tmp_path, max_clips=10)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["cats/a.mp4", "cats/deep/b.gif", "dogs/c.mp4",
                                                                  "dogs/d.mp4"]
    assert labels == ["cats", "cats", "dogs", "dogs"]
    few = labelled_videos(tmp_path, max_clips=3)
    assert len(few[0]) == 3 and few == labelled_videos(tmp_path, max_clips=3)  # drawn, and the same draw again
    (tmp_path / "dogs" / "d.mp4").unlink()
    with pytest.raises(ValueError, match=r"needs two sub-folders .* found cats \(2\), dogs \(1\)"):
        labelled_videos(tmp_path, max_clips=10)


def test_the_knn_probe_leaves_each_clip_out_and_the_floor_is_the_most_common_label():
    rng = np.random.default_rng(0)
    centres = {"a": np.array([5.0, 0, 0]), "b": np.array([0, 5.0, 0])}
    labels = ["a"] * 6 + ["b"] * 4
    embeddings = np.stack([centres[label] + rng.normal(0, 0.3, 3) for label in labels])
    assert leave_one_out_knn(embeddings, labels, k=3).all()  # two clean clusters
    # Every clip alone in its place, its twin label elsewhere: left out, its neighbours all say the other label
    assert not leave_one_out_knn(np.eye(4)[[0, 0, 1, 1]], ["a", "b", "a", "b"], k=1).any()
    assert most_common_label(labels).tolist() == [True] * 6 + [False] * 4
    assert most_common_label(["b", "a"]).tolist() == [False, True]  # a tie goes to the first alphabetically


def test_the_probe_from_the_command_line(tiny_checkpoint, tmp_path, capsys):
    for label, shade in (("dark", 30), ("light", 220)):
        for i in range(3):
            _write(tmp_path / "clips" / label / f"{i}.mp4", shade + 5 * i)
    (tmp_path / "clips" / "light" / "notes.mp4").write_text("not a video")
    argv = ["--folder", str(tmp_path / "clips"), "--checkpoint", str(tiny_checkpoint), "--json",
            str(tmp_path / "probe.json"), "--resamples", "50"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| label (clips) | tiny | random encoder | always the most common label |" in out
    assert "| dark (3) |" in out and "| light (3) |" in out and "Left out, cannot be read: 1 (first: notes.mp4" in out
    report = json.loads((tmp_path / "probe.json").read_text())
    assert report["clips"] == 6 and report["labels"] == {"dark": 3, "light": 3}
    assert set(report["accuracy"]) == {"tiny", "random encoder", "always the most common label"}
    assert report["accuracy"]["always the most common label"]["all"] == 0.5
    for scores in report["accuracy"].values():
        assert scores["all"] == pytest.approx((scores["dark"] + scores["light"]) / 2)
    low, high = report["vs_random"]["difference_ci"]
    assert low <= report["vs_random"]["difference"] <= high


def test_a_folder_without_two_labels_and_options_for_the_world_are_refused(tiny_checkpoint, tmp_path, capsys):
    for i in range(3):
        _write(tmp_path / "one" / "only" / f"{i}.mp4", 100)
    assert main(["--folder", str(tmp_path / "one"), "--checkpoint", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and err.endswith("two videos each; found only (3)")
    assert main(["--folder", str(tmp_path / "nothing"), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nothing'}: not a folder"
    with pytest.raises(SystemExit) as refused:
        main(["--folder", str(tmp_path / "one"), "--report", str(tmp_path / "r.md")])
    assert refused.value.code == 2 and "--report and --validation are for the world's suite" in capsys.readouterr().err
