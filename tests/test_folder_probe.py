"""The kNN probe of a folder's sub-folder labels (`python -m jepa_demo.evaluate --folder`), on real encoded files."""

import json
import os
from collections import Counter

import numpy as np
import pytest
import torch

from jepa_demo.evaluate import main
from jepa_demo.folder_probe import draw, labelled_videos, leave_one_out_knn, most_common_label
from jepa_demo.video import list_videos, write_video


def _write(path, shade: int, frames: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    video = np.full((frames, 32, 32, 3), shade, np.uint8)
    video[:, 8:24, 8:24] = 255 - shade  # a square, so that the clip is not flat
    write_video(path, video)


def test_labels_are_the_first_sub_folder_and_loose_files_have_none(tmp_path):
    names = ["cats/a.mp4", "cats/deep/b.gif", *(f"cats/{i}.mp4" for i in range(6))]
    names += [f"dogs/{i}.mp4" for i in range(4)]
    for name in [*names, "e.mp4"]:
        _write(tmp_path / name, 40)
    paths, labels = labelled_videos(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == sorted(names)
    assert labels == [p.relative_to(tmp_path).parts[0] for p in paths] and labels.count("dogs") == 4
    # BUG: a link beside the labels to one of them ("latest.mp4") took its file out of its label, by the shorter path
    (tmp_path / "latest.mp4").symlink_to(tmp_path / "dogs" / "0.mp4")
    # BUG: a hard link (cp -al, rsync --link-dest) was a second video, under a second label
    os.link(tmp_path / "cats" / "0.mp4", tmp_path / "dogs" / "copy-of-cat.mp4")
    assert labelled_videos(tmp_path) == (paths, labels)
    (tmp_path / "latest.mp4").unlink()
    (tmp_path / "dogs" / "0.mp4").unlink()
    with pytest.raises(ValueError, match=r"at least 4 videos each; found cats \(8\), dogs \(3\); 1 lie directly in "
                                         r"the folder, where no sub-folder names their label$"):
        labelled_videos(tmp_path)


def test_the_draw_takes_each_label_in_proportion_but_at_least_four():
    labels = ["cats"] * 8 + ["dogs"] * 4 + ["eels"] * 2
    drawn = draw(labels, max_clips=10)  # 14 files: in proportion 5, 2 and 1, but at least 4 of those that have them
    assert {label: share for label, (_, share) in drawn.items()} == {"cats": 5, "dogs": 4, "eels": 2}
    assert all(sorted(order) == [i for i, name in enumerate(labels) if name == label]
               for label, (order, _) in drawn.items())  # every file of the label, to replace unreadable ones from
    assert drawn == draw(labels, max_clips=10) and drawn != draw(labels, max_clips=10, seed=1)
    assert {label: share for label, (_, share) in draw(labels, max_clips=14).items()} == Counter(labels)


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


def test_the_overall_accuracy_counts_clips_not_labels():
    from jepa_demo.folder_probe import _per_label

    scores = _per_label(np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool), ["a"] * 4 + ["b"] * 6)
    assert scores == {"per_label": {"a": 1.0, "b": 0.0}, "all": 0.4}  # 4 of 10 clips, not the labels' mean 0.5


def test_the_probe_from_the_command_line(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    for label, shade, count in (("dark", 30, 4), ("light", 220, 6), ("grey", 120, 3)):
        for i in range(count):
            _write(tmp_path / "clips" / label / f"{i}.mp4", shade + 5 * i)
    (tmp_path / "clips" / "light" / "notes.mp4").write_text("not a video")
    (tmp_path / "clips" / "grey" / "3.mp4").write_text("not a video either")  # leaves grey 3 readable videos
    # 15 files, at most 8: 4 of each label, read in a random order, an unreadable file replaced by another of its label
    argv = ["--folder", str(tmp_path / "clips"), "--checkpoint", str(tiny_checkpoint), "--json",
            str(tmp_path / "probe.json"), "--resamples", "50", "--max-clips", "8"]
    import jepa_demo.folder_probe as module

    listings = []
    monkeypatch.setattr(module, "list_videos", lambda root: listings.append(root) or list_videos(root))
    video = tmp_path / "clips" / "dark" / "0.mp4"
    before = video.read_bytes()
    with pytest.raises(SystemExit) as refused:  # BUG: the JSON replaced the video, exit status 0
        main([*argv[:4], "--json", str(video)])
    assert refused.value.code == 2 and f"--json {video}: a video the probe reads" in capsys.readouterr().err
    assert video.read_bytes() == before
    listings.clear()
    assert main(argv) == 0
    assert len(listings) == 1  # BUG: the folder was listed twice (a large network folder: minutes each)
    out = capsys.readouterr().out
    assert "| label (clips) | tiny | random encoder | always the most common label |" in out
    assert "| dark (4) |" in out and "| light (4) |" in out  # 4 of light's 6 readable videos
    assert "Left out, labels with fewer than 4 readable videos: grey (3)" in out
    report = json.loads((tmp_path / "probe.json").read_text())
    assert report["clips"] == 8 and report["labels"] == {"dark": 4, "light": 4} and report["too_few"] == {"grey": 3}
    assert f"Left out, cannot be read: {len(report['unreadable'])} (first: " in out
    assert set(report["accuracy"]) == {"tiny", "random encoder", "always the most common label"}
    assert report["accuracy"]["always the most common label"]["all"] == 0.5
    assert report["accuracy"]["random encoder"]["all"] >= 0.75  # dark and light clips: even random features differ
    low, high = report["vs_random"]["difference_ci"]
    assert low <= report["vs_random"]["difference"] <= high
    # BUG: an interval from 50 resamples of 8 clips was printed as any other (one resample: zero width, as if certain)
    assert "(from 50 resamples of 8 clips: too few for the interval to mean much)" in out


def test_an_unreadable_file_is_replaced_by_the_next_of_its_label(tiny_checkpoint, tmp_path):
    from jepa_demo.evaluate import random_twin
    from jepa_demo.folder_probe import _embed_drawn
    from jepa_demo.inference import load_model
    from jepa_demo.video import read_video

    paths = [tmp_path / f"{i}.mp4" for i in range(6)]
    for path in paths[1:]:
        _write(path, 100)
    paths[0].write_text("not a video")
    model = load_model(tiny_checkpoint, device="cpu")
    twin = random_twin(model)
    embeddings, unreadable = _embed_drawn(paths, {"a": ([0, 1, 2, 3, 4, 5], 4)}, {"tiny": model, "twin": twin})
    assert sorted(embeddings) == [1, 2, 3, 4] and len(unreadable) == 1
    assert unreadable[0].startswith(f"{paths[0]}: ") and "0.mp4" not in unreadable[0].removeprefix(str(paths[0]))
    # each scorer's column is its own model's embedding of that file
    clip = read_video(paths[1], num_frames=4, size=32)
    assert np.allclose(embeddings[1]["tiny"], model.embed(clip))
    assert np.allclose(embeddings[1]["twin"], twin.embed(clip))
    assert not np.allclose(embeddings[1]["tiny"], embeddings[1]["twin"])


def test_a_folder_without_two_labels_and_options_for_the_world_are_refused(tiny_checkpoint, tmp_path, capsys):
    for i in range(4):
        _write(tmp_path / "one" / "only" / f"{i}.mp4", 100)
        _write(tmp_path / "one" / "broken" / f"{i}.mp4", 100)
    (tmp_path / "one" / "broken" / "0.mp4").write_text("not a video")
    assert main(["--folder", str(tmp_path / "one"), "--checkpoint", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    # BUG: why the files were left out was not said, and with none readable "found no sub-folder holding videos"
    assert err.endswith("at least 4 readable videos each; found broken (3), only (4); 1 could not be read (first: "
                        f"{tmp_path / 'one' / 'broken' / '0.mp4'}: not a readable video (its contents are not a "
                        "video format ffmpeg knows))")
    for i in range(4):
        (tmp_path / "one" / "only" / f"{i}.mp4").write_text("not a video either")
        (tmp_path / "one" / "broken" / f"{i}.mp4").write_text("not a video either")
    assert main(["--folder", str(tmp_path / "one"), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "at least 4 readable videos each; found none; 8 could not be read (first: " in capsys.readouterr().err
    assert main(["--folder", str(tmp_path / "nothing"), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nothing'}: not a folder"
    (tmp_path / "one" / "only" / "gone\n.mp4").symlink_to(tmp_path / "unmounted.mp4")  # BUG: said in two lines
    assert main(["--folder", str(tmp_path / "one"), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'one'}: {tmp_path / 'one' / 'only'}/gone\\n.mp4 is a "
                                       f"link to {tmp_path / 'unmounted.mp4'} that cannot be followed (No such file "
                                       "or directory)\n")
    (tmp_path / "one" / "only" / "gone\n.mp4").unlink()
    # BUG: said only once every checkpoint had loaded, a Hub one downloaded first (this one cannot be)
    assert main(["--folder", str(tmp_path / "nothing"), "--checkpoint", "someone/not-in-the-cache"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nothing'}: not a folder"
    for option, value in (("--report", str(tmp_path / "r.md")), ("--pairs", "50"), ("--probe-clips", "50")):
        with pytest.raises(SystemExit) as refused:  # --pairs and --probe-clips were ignored without a word
            main(["--folder", str(tmp_path / "one"), option, value])
        assert refused.value.code == 2
        assert "--report, --validation, --pairs and --probe-clips are for the world's suite" in capsys.readouterr().err
    for option, value, message in (("--max-clips", "7", "--max-clips must be at least 8"),
                                   ("--resamples", "0", "--resamples must be at least 1")):
        with pytest.raises(SystemExit):
            main(["--folder", str(tmp_path / "one"), option, value])
        assert message in capsys.readouterr().err


def test_a_model_whose_outputs_overflow_is_refused_in_one_line(tiny_model, tiny_preprocess, tmp_path, capsys):
    """BUG: its NaN embeddings reached scikit-learn, whose message ran over two lines about imputers."""
    from jepa_demo.checkpoint import save_checkpoint

    for label, shade in (("dark", 30), ("light", 220)):
        for i in range(4):
            _write(tmp_path / "clips" / label / f"{i}.mp4", shade)
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.fill_(1e30)  # finite, so loaded; float32 overflows on any clip
    save_checkpoint(tiny_model, tmp_path / "huge", tiny_preprocess, step=1)
    assert main(["--folder", str(tmp_path / "clips"), "--checkpoint", str(tmp_path / "huge")]) == 2
    # BUG: without naming which model (the checkpoint, or its random twin)
    assert capsys.readouterr().err == "error: huge: the model's output is not a finite number (do its weights " \
                                      "overflow?)\n"


def test_models_of_other_input_sizes_read_the_same_files_their_own_way(tiny_checkpoint, tmp_path, capsys,
                                                                       monkeypatch):
    import jepa_demo.folder_probe as module
    from jepa_demo.checkpoint import save_checkpoint
    from jepa_demo.config import PreprocessConfig, model_config_from_preset
    from jepa_demo.model import VideoJEPA

    wide = model_config_from_preset("tiny", img_size=48)
    save_checkpoint(VideoJEPA(wide), tmp_path / "wide", PreprocessConfig(img_size=48, num_frames=4), step=1)
    for label, shade in (("dark", 30), ("light", 220)):
        for i in range(4):
            _write(tmp_path / "clips" / label / f"{i}.mp4", shade + 5 * i)
    reads, real = Counter(), module.read_video

    def counted(path, num_frames, size):
        reads[num_frames, size] += 1
        return real(path, num_frames=num_frames, size=size)

    monkeypatch.setattr(module, "read_video", counted)
    argv = ["--folder", str(tmp_path / "clips"), "--checkpoint", str(tiny_checkpoint), "--checkpoint",
            str(tmp_path / "wide"), "--resamples", "20"]
    assert main(argv) == 0
    assert "| label (clips) | tiny | wide | random encoder | always the most common label |" in capsys.readouterr().out
    assert reads == {(4, 32): 8, (4, 48): 8}  # each file once at each model's own input


def test_a_label_with_a_bar_or_a_newline_keeps_its_table_row_whole():
    """BUG: labels went into the table as they are: a sub-folder `a|b` split its row, putting every figure after it
    under the wrong model, and one with a newline broke the row in two."""
    from jepa_demo.evaluate import MAJORITY, RANDOM, paired_difference
    from jepa_demo.folder_probe import format_folder_report

    labels = {"a|b": 4, "c\nd": 4}
    accuracy = {"per_label": dict.fromkeys(labels, 0.5), "all": 0.5}
    report = {"folder": "clips", "k": 5, "clips": 8, "resamples": 100, "unreadable": [], "too_few": {},
              "labels": labels, "accuracy": dict.fromkeys(["tiny", RANDOM, MAJORITY], accuracy),
              "vs_random": paired_difference(np.ones(8, bool), np.zeros(8, bool), 100)}
    rows = [line for line in format_folder_report(report).splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(labels) + 1  # the header, its rule, a row per label and the total
    assert {row.replace("\\|", "").count("|") for row in rows} == {5}  # four cells each
    assert rows[2].startswith("| a\\|b (4) |") and rows[3].startswith("| c\\nd (4) |")
    # and the lines above the table, naming a file or a label left out
    report.update(unreadable=["clips/e\nf.mp4: not a readable video"], too_few={"g\nh": 3}, folder="my\nclips")
    lines = format_folder_report(report).splitlines()
    assert lines[0].startswith("### kNN probe (k=5, cosine, leave-one-out) of the sub-folder labels of my\\nclips: ")
    assert "Left out, cannot be read: 1 (first: clips/e\\nf.mp4: not a readable video)" in lines
    assert "Left out, labels with fewer than 4 readable videos: g\\nh (3)" in lines
