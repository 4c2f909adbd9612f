"""Training: schedules, config, a real CLI run, exact resume after SIGKILL, and 2-process DDP on CPU (gloo)."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from jepa_demo.hardware import cpu_model, usable_cpus
from jepa_demo.inference import load_model
from jepa_demo.model import clip_spread, embedding_std
from jepa_demo.training_metrics import read_metrics
from train.config import TrainConfig, load_config, parse_overrides
from train.loop import CtrlC, lr_at, momentum_at

from processes import kill_with_descendants, run_whole, run_with_its_reader_gone

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "train" / "configs" / "tiny.yaml")
CHECKPOINT_FILES = ["model.safetensors", "config.json", "README.md", "metrics.csv", "training_curves.png",
                    "train_config.json", "train_state.safetensors"]


def _train(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_schedules_are_pure_functions_of_the_step():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5, ema_start=0.99, ema_end=1.0)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[9] == pytest.approx(1e-3) and lrs[0] < lrs[5] < lrs[9]
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] == pytest.approx(1e-5, rel=0.1)
    moms = [momentum_at(s, cfg) for s in range(101)]
    assert moms[0] == pytest.approx(0.99) and moms[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(moms, moms[1:]))


def test_overrides_are_typed_and_unknown_keys_are_errors():
    assert parse_overrides(["lr=3e-4", "steps=7", "compile=true", "data=clips/"]) == {
        "lr": 3e-4, "steps": 7, "compile": True, "data": "clips/"}
    cfg = load_config(TINY, ["steps=3"])
    assert cfg.steps == 3 and cfg.model == "tiny"
    with pytest.raises(ValueError, match="unknown setting 'learning_rate'"):
        parse_overrides(["learning_rate=1"])
    with pytest.raises(ValueError, match="steps must be a whole number, got 'many'"):
        parse_overrides(["steps=many"])
    # BUG: the last of the two won without a word
    with pytest.raises(ValueError, match=r"out_dir is given twice \(out_dir=runs/a and out_dir=runs/b\); give it once"):
        parse_overrides(["out_dir=runs/a", "steps=3", "out_dir=runs/b"])
    with pytest.raises(ValueError, match=r"lr is given twice \(lr=3e-4 and lr=1e-3\)"):  # as typed, not 0.0003
        parse_overrides(["lr=3e-4", "lr=1e-3"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["steps"])
    with pytest.raises(ValueError, match="objective must be one of jepa, jepa-sigreg, pixel"):
        load_config(TINY, ["objective=diffusion"])
    for override, message in (
            ("grad_clip=-1", "grad_clip must be above 0"),  # would flip every gradient
            ("lr=nan", "lr must be above 0"), ("weight_decay=-0.1", "weight_decay must be at least 0"),
            ("future_steps=3", "future_steps must be between 1 and 1: model tiny sees 2 time steps, and "
                               r"future_steps is 3 \(set future_steps=1 or lower\)$"),
            ("out_dir=", "out_dir must name a folder"), ("seed=-1", r"seed must be between 0 and 2\*\*32 - 1"),
            ("seed=100", "seed=100 would train on the world clips the evaluation"),
            ("lr=inf", "lr must be a finite number"), ("weight_decay=inf", "weight_decay must be a finite number"),
            ("num_workers=-1", "num_workers must be at least 0"),
            # BUG: forked workers until memory ran out, and the run could not be stopped but by SIGKILL
            ("num_workers=100000", rf"num_workers 100000 is more .+ at most {4 * usable_cpus()}"),
            # BUG: "need 1 <= min_objects <= max_objects <= 7", min_objects being no training setting
            ("max_objects=0", r"max_objects must be between 1 and 7 \(one colour per object\), got 0"),
            ("max_objects=8", "max_objects must be between 1 and 7")):
        with pytest.raises(ValueError, match=message):
            load_config(TINY, [override])
    # BUG: "future_steps must be between 1 and 1" for `model=tiny` alone, naming no value the user had set
    with pytest.raises(ValueError, match=r"and future_steps is 2 \(set future_steps=1 or lower\)$"):
        load_config(None, ["model=tiny"])
    assert load_config(TINY, ["seed=99"]).seed == 99 and load_config(TINY, ["seed=100", "data=clips/"]).seed == 100
    # BUG: unused on a data folder, never checked there, and written as NaN into config.json and the card
    with pytest.raises(ValueError, match="noise_std is in units of full intensity: between 0 and 1, got nan"):
        load_config(TINY, ["noise_std=nan", "data=clips/"])


def test_a_recipe_can_come_through_a_pipe(tmp_path):
    """BUG: `--config <(sed 's/steps: .*/steps: 2/' train/configs/tiny.yaml)`, a /dev/fd path to a pipe, was
    "recipe /dev/fd/63 not found"."""
    read, write = os.pipe()
    with os.fdopen(write, "w") as recipe:
        recipe.write(Path(TINY).read_text() + "lr: 0.0123\n")
    try:
        assert load_config(f"/dev/fd/{read}", ["steps=2"]).lr == 0.0123
    finally:
        os.close(read)


def test_a_recipe_given_twice_is_refused(tmp_path, capsys):
    """BUG: --config a.yaml --config b.yaml trained with b.yaml without a word."""
    from train.__main__ import main

    with pytest.raises(SystemExit) as refused:  # out_dir: a regression trains there, not into the repo's runs/tiny
        main(["--config", TINY, "steps=3", "--config", TINY, f"out_dir={tmp_path / 'run'}"])
    assert refused.value.code == 2 and "--config is given twice; give it once" in capsys.readouterr().err


def test_a_recipe_reads_numbers_as_overrides_do(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: tiny\nfuture_steps: 1\nlr: 3e-4\nsteps: 7\n")  # PyYAML reads 3e-4 (no dot) as a string
    cfg = load_config(str(recipe), [])
    assert (cfg.lr, cfg.steps) == (3e-4, 7)
    recipe.write_text("model: tiny\nfuture_steps: 1\nlr: fast\n")
    with pytest.raises(ValueError, match="lr must be a number, got 'fast'"):
        load_config(str(recipe), [])
    # BUG: a quoted boolean was refused with "compile must be true or false, got 'true'"; compile=true is taken
    recipe.write_text('model: tiny\nfuture_steps: 1\ncompile: "true"\n')
    assert load_config(str(recipe), []).compile is True
    for written, read in (("1", True), ("0", False)):  # BUG: "compile must be true or false, got 1"; compile=1 is taken
        recipe.write_text(f"model: tiny\nfuture_steps: 1\ncompile: {written}\n")
        assert load_config(str(recipe), []).compile is read
    recipe.write_text("model: tiny\nfuture_steps: 1\nout_dir: 2024\n")  # out_dir=2024 is text; 1.50 would read 1.5
    with pytest.raises(ValueError, match=r"out_dir must be text, got 2024 \(quote it in the recipe: YAML read it as "):
        load_config(str(recipe), [])
    with pytest.raises(ValueError, match=f"^recipe {tmp_path} is a folder: give a recipe file in it"):
        load_config(str(tmp_path), [])  # BUG: "recipe ... not found", of a folder that is there
    # BUG: a key given twice trained at the last value without a word (the overrides refuse it)
    recipe.write_text("model: tiny\nlr: 0.001\nfuture_steps: 1\nlr: 0.01\n")
    with pytest.raises(ValueError, match=f"^recipe {recipe} is not valid YAML at line 4: 'lr' is given twice$"):
        load_config(str(recipe), [])
    # BUG: YAML 1.1 read seed: 010 as octal (8) and steps: 25:00 as base 60 (1500); seed=010 is 10
    recipe.write_text("model: tiny\nfuture_steps: 1\nseed: 010\nsteps: 1_000\n")
    assert (load_config(str(recipe), []).seed, load_config(str(recipe), []).steps) == (10, 1000)
    recipe.write_text("model: tiny\nfuture_steps: 1\nsteps: 25:00\n")
    with pytest.raises(ValueError, match="steps must be a whole number, got '25:00'"):
        load_config(str(recipe), [])
    recipe.write_text("model: tiny\nfuture_steps: 1\ngrad_clip: .inf\n")  # YAML's infinity, read as Python's
    # BUG: accepted, it was written as Infinity into config.json and the card, which JSON parsers refuse
    with pytest.raises(ValueError, match=r"^grad_clip must be a finite number, got inf \(a large one"):
        load_config(str(recipe), [])
    recipe.write_text("model: tiny\nfuture_steps: 1\nlr: 1:30.0\n")
    with pytest.raises(ValueError, match="lr must be a number, got '1:30.0'"):
        load_config(str(recipe), [])
    recipe.write_text("<<: {model: tiny, future_steps: 1}\nlr: 0.01\n")  # a YAML merge key still merges
    assert (load_config(str(recipe), []).model, load_config(str(recipe), []).lr) == ("tiny", 0.01)
    # BUG: an integer too large for a float (lr=1e400 from the command line is infinite, refused) was a traceback
    recipe.write_text(f"model: tiny\nfuture_steps: 1\nlr: 1{'0' * 400}\n")
    with pytest.raises(ValueError, match="^lr must be a finite number, got an integer of 401 digits$"):
        load_config(str(recipe), [])
    # BUG: "need warmup_steps >= 0 and min_lr <= lr", for a small fine-tuning lr below min_lr's default
    recipe.write_text("model: tiny\nfuture_steps: 1\nlr: 5e-6\n")
    with pytest.raises(ValueError, match=r"^min_lr \(1e-05\) must not be above lr \(5e-06\): set min_lr too$"):
        load_config(str(recipe), [])
    with pytest.raises(ValueError, match=r"^lr must be above 0, got 0.0$"):  # not told to set min_lr
        load_config(str(recipe), ["lr=0"])


def test_a_home_folder_in_out_dir_or_data_is_expanded_as_loading_expands_it(tmp_path, monkeypatch):
    """BUG: a recipe's out_dir: ~/runs/x (no shell expands it) trained into a folder named '~' in the working folder,
    where load_model('~/runs/x') then found nothing."""
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(None, ["model=tiny", "future_steps=1", "out_dir=~/runs/x", "data=~/videos"])
    assert (cfg.out_dir, cfg.data) == (str(tmp_path / "runs" / "x"), str(tmp_path / "videos"))
    # BUG: --config=~/r.yaml (no shell expands ~ after the =) was "not found"
    (tmp_path / "r.yaml").write_text("model: tiny\nfuture_steps: 1\nsteps: 9\n")
    assert load_config("~/r.yaml", []).steps == 9


def test_training_clips_stay_below_the_evaluations_seeds(monkeypatch):
    import train.data
    from jepa_demo.config import PreprocessConfig
    from jepa_demo.evaluate import HELD_OUT_SEED, VALIDATION_SEED
    from jepa_demo.world import render_clip
    from train.config import CLIP_SEED_STRIDE, EVALUATION_SEEDS_FROM
    from train.data import WorldBatches

    assert EVALUATION_SEEDS_FROM == HELD_OUT_SEED < VALIDATION_SEED
    recipe = str(ROOT / "train" / "configs" / "gpu.yaml")
    gpu = load_config(recipe, [])  # the recipe with the most clips: its last clip at its highest seed
    highest = (EVALUATION_SEEDS_FROM - gpu.steps * gpu.batch_size) // CLIP_SEED_STRIDE
    assert load_config(recipe, [f"seed={highest}"]).seed == highest
    # the clips WorldBatches renders at the run's last step, on the last of 2 processes, the highest seeds it draws
    drawn = []
    monkeypatch.setattr(train.data, "render_clip", lambda seed, cfg: drawn.append(seed) or render_clip(0, cfg))
    preprocess = PreprocessConfig(img_size=16, num_frames=4)
    batches = WorldBatches(preprocess, gpu.batch_size // 2, highest, 1, 2, 2, 0.5, 0.05)
    batches[gpu.steps - 1]
    assert max(drawn) == highest * CLIP_SEED_STRIDE + gpu.steps * gpu.batch_size - 1 < HELD_OUT_SEED
    with pytest.raises(ValueError, match=f"at most {highest}"):
        load_config(recipe, [f"seed={highest + 1}"])
    # The run's own clips count, not only its first seed: seed 99's block ends 9,998,119 clips short of them.
    assert load_config(TINY, ["seed=99", "steps=2499529", "batch_size=4"]).seed == 99
    with pytest.raises(ValueError, match="seed=99 would train on the world clips"):
        load_config(TINY, ["seed=99", "steps=2499530", "batch_size=4"])
    # More clips than any seed leaves room for: the message named a negative seed
    with pytest.raises(ValueError, match="steps x batch_size = 1_600_000_000 world clips, more than the 1_000_000_000"):
        load_config(TINY, ["steps=100000000", "batch_size=16"])


def test_the_help_names_the_push_command(capsys):
    """BUG: `push` is read before argparse, so --help listed training's options only: no word of uploading."""
    from train.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0 and "python -m train push --help" in capsys.readouterr().out


def test_a_folder_holding_other_files_is_refused_and_left_as_it_was(tmp_path, monkeypatch, capsys):
    from train.__main__ import main

    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("the user's own")
    monkeypatch.chdir(project)
    assert main(["--config", TINY, "out_dir=."]) == 2  # a run writes its own README.md (the model card)
    assert "out_dir . already holds other files (README.md)" in capsys.readouterr().err
    assert [path.name for path in project.iterdir()] == ["README.md"]
    assert (project / "README.md").read_text() == "the user's own"
    (project / ".gitkeep").touch()  # hidden files do not count: an otherwise empty folder is fine
    (project / "README.md").unlink()
    assert main(["--config", TINY, "out_dir=.", "steps=2"]) == 0
    assert main(["--config", TINY, "out_dir=.", "steps=3"]) == 0  # an earlier run's folder may be trained again
    capsys.readouterr()


def test_a_closed_stderr_trains_as_any_run_does(tmp_path, monkeypatch, capsys):
    """BUG: `python -m train ... 2>&-` (Python then has no sys.stderr) failed the progress bar's first write: the run
    died at step 0 without a word, after clearing the earlier run's weights and card from its folder."""
    from train.__main__ import main

    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", "steps=1"]) == 0
    monkeypatch.setattr(sys, "stderr", None)
    assert main(["--config", TINY, f"out_dir={out}", "steps=2"]) == 0
    assert load_model(out).info()["step"] == 2
    capsys.readouterr()


@pytest.mark.parametrize("record", ['{"model": "resnet50", "steps": 90, "out_dir": "out", "epochs": 90}', "[]", "{"])
def test_another_tools_train_config_json_does_not_make_its_folder_a_run(tmp_path, monkeypatch, capsys, record):
    """The name alone made it an earlier run's folder, whose README.md, config.json and weights a new run deletes."""
    from train.__main__ import main

    theirs = {"train_config.json": record, "README.md": "their card", "config.json": "{}", "model.safetensors": "w"}
    for name, text in theirs.items():
        (tmp_path / name).write_text(text)
    assert main(["--config", TINY, f"out_dir={tmp_path}", "steps=1"]) == 2
    assert "already holds other files (README.md, config.json, model.safetensors, ...)" in capsys.readouterr().err
    assert {path.name: path.read_text() for path in tmp_path.iterdir()} == theirs


def _interrupt_after(monkeypatch, steps: int) -> None:
    """Make the next run in this process stop with Ctrl-C after `steps` training steps."""
    import train.loop

    step, calls = train.loop.train_step, []

    def counted(*args, **kwargs):
        if len(calls) == steps:
            raise KeyboardInterrupt
        calls.append(1)
        return step(*args, **kwargs)

    monkeypatch.setattr(train.loop, "train_step", counted)


def test_a_run_shorter_than_its_warm_up_says_so(tmp_path, capsys):
    from train.__main__ import main

    assert main(["--config", TINY, f"out_dir={tmp_path / 'a'}", "steps=1"]) == 0  # tiny.yaml warms up for 2 steps
    assert ("note: warmup_steps=2 is more than steps=1: the learning rate rises only to 0.0005, short of lr=0.001, "
            "and never decays") in capsys.readouterr().err
    assert main(["--config", TINY, f"out_dir={tmp_path / 'b'}", "steps=2"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_resume_in_a_checkpoint_folder_without_a_training_state_replaces_its_model(tmp_path, monkeypatch, capsys):
    """BUG: --resume in a folder holding a checkpoint but no training state (as shipped) started from step 0 and left
    the old model, config and card in place: stopped before its first save, the folder loaded as the old model beside
    the new run's metrics."""
    from train.__main__ import main

    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", "steps=2"]) == 0
    (out / "train_state.safetensors").unlink()  # what a shipped checkpoint folder holds
    _interrupt_after(monkeypatch, 1)
    assert main(["--config", TINY, f"out_dir={out}", "steps=6", "save_every=4", "--resume"]) == 130
    assert "no train_state.safetensors" in capsys.readouterr().err
    assert not (out / "model.safetensors").exists() and not (out / "README.md").exists()


def test_a_new_run_keeps_an_unfinished_run_and_replaces_a_finished_one(tmp_path, monkeypatch, capsys):
    from train.__main__ import main

    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2"]) == 0  # finished
    # the app's galleries built for the finished run's weights (gallery --ship, as the shipped checkpoints have)
    galleries = [out / f"gallery-{'0' * 16}-300clips-seed1-v7.npz", out / f"threshold-{'0' * 16}-seed1-v7.json"]
    for path in galleries:
        path.write_text("x")
    # A new run stopped before its first save: its --resume starts it from step 0. It had continued the finished
    # run's weights and step under the new run's settings.
    _interrupt_after(monkeypatch, 1)
    assert main(["--config", TINY, f"out_dir={out}", "steps=6", "save_every=2", "lr=0.002"]) == 130
    monkeypatch.undo()
    # nor does the finished run's model stay, to load as if this run had made it
    written_at_start = ("metrics.csv", "train_config.json")
    assert not any((out / name).exists() for name in CHECKPOINT_FILES if name not in written_at_start)
    # BUG: nor its galleries, which `train push` then uploaded beside the new weights
    assert not any(path.exists() for path in galleries)
    _interrupt_after(monkeypatch, 3)  # this time it stops after its save at step 2
    assert main(["--config", TINY, f"out_dir={out}", "steps=6", "save_every=2", "lr=0.002", "--resume"]) == 130
    assert "no train_state.safetensors" in capsys.readouterr().err
    monkeypatch.undo()
    unfinished = (out / "train_state.safetensors").read_bytes()
    assert main(["--config", TINY, f"out_dir={out}", "steps=6"]) == 2
    assert "holds an unfinished run (saved at step 2 of 6): add --resume" in capsys.readouterr().err
    assert (out / "train_state.safetensors").read_bytes() == unfinished
    for path in galleries:  # shipped for the save at step 2
        path.write_text("x")
    assert main(["--config", TINY, f"out_dir={out}", "steps=6", "save_every=2", "lr=0.002", "--resume"]) == 0
    # BUG: the resumed run's saves replaced the weights and left the galleries, which `train push` uploaded
    assert not any(path.exists() for path in galleries)
    for path in galleries:  # shipped for the finished run: a --resume that only exports it again keeps them
        path.write_text("x")
    assert main(["--config", TINY, f"out_dir={out}", "steps=6", "save_every=2", "lr=0.002", "--resume"]) == 0
    assert all(path.exists() for path in galleries)
    capsys.readouterr()


def test_a_run_that_diverges_says_what_to_change_and_what_stands(tmp_path, monkeypatch, capsys):
    """BUG: it said 'the last complete save stands' when nothing was saved, and offered nothing that could help:
    --resume replays the same steps into the same NaN, and refuses another lr."""
    import train.loop
    from train.__main__ import main

    real_step = train.loop.train_step

    def nan_at_step_3(model, forward, optimizer, batch, step, *rest):
        if step == 3:
            def forward(*args, _forward=forward, **kwargs):
                out = _forward(*args, **kwargs)
                return {**out, "loss": out["loss"] * float("nan")}
        return real_step(model, forward, optimizer, batch, step, *rest)

    monkeypatch.setattr(train.loop, "train_step", nan_at_step_3)
    diverged = ("error: the loss is nan and the gradient norm nan at step 3: training diverged; a lower lr may help, "
                "as a new run (in another out_dir if this one saved); ")
    for save_every, stands in ((4, "nothing was saved yet"), (2, f"the last complete save in {tmp_path} stands")):
        assert main(["--config", TINY, f"out_dir={tmp_path}", "steps=6", f"save_every={save_every}"]) == 1
        assert capsys.readouterr().err.splitlines()[-1] == diverged + stands  # under the progress bar


def test_a_stdout_that_fails_after_the_run_says_so_in_one_line(tmp_path):
    """`... > /dev/full`: 'checkpoint written to' sat in stdout's buffer until exit, whose failed flush Python reported
    as 'Exception ignored' with status 120."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "train", "--config", TINY, f"out_dir={tmp_path / 'run'}",
                                 "steps=2"], cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == ("error: could not print the result: No space left on device (the "
                                              "checkpoint is written)")
    assert load_model(tmp_path / "run").info()["step"] == 2


def test_a_reader_of_the_progress_bar_that_goes_away_does_not_stop_the_run(tmp_path):
    """BUG: `python -m train ... 2>&1 | tee log`, tee gone (the same Ctrl-C): the bar's write raised BrokenPipeError
    before the step's due save, and the error line after it raised again, a traceback with status 1. The run is on
    disk, not in its log: it goes on and says nothing more on stderr."""
    status, stdout = run_with_its_reader_gone([sys.executable, "-m", "train", "--config", TINY,
                                               f"out_dir={tmp_path / 'run'}", "steps=3"], "stderr", 300, cwd=ROOT,
                                              text=True)
    assert status == 0 and stdout == f"checkpoint written to {tmp_path / 'run'}\n"
    assert load_model(tmp_path / "run").info()["step"] == 3


def test_the_result_line_is_one_line_whatever_the_folder_is_called(tmp_path, capsys):
    from train.__main__ import main

    assert main(["--config", TINY, f"out_dir={tmp_path / 'a'}\nb", "steps=1"]) == 0
    assert capsys.readouterr().out == f"checkpoint written to {tmp_path / 'a'}\\nb\n"  # escaped, as the CLI's
    assert load_model(f"{tmp_path / 'a'}\nb").info()["step"] == 1


def test_running_out_of_memory_is_one_line_and_what_to_change(tmp_path, monkeypatch, capsys):
    import train.loop
    from train.__main__ import main

    real_step = train.loop.train_step
    raised = [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nOf the allocated memory ...")]

    def too_big(*args, **kwargs):
        raise raised[0]

    monkeypatch.setattr(train.loop, "train_step", too_big)
    assert main(["--config", TINY, f"out_dir={tmp_path / 'run'}", "steps=4"]) == 1
    err = capsys.readouterr().err.splitlines()[-1]  # under the progress bar
    assert err == ("error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB.); a smaller batch_size or "
                   "model needs less, as a new run (in another out_dir if this one saved); nothing was saved yet")
    steps_run = []

    def too_big_after_a_save(*args, **kwargs):  # step 2 runs out of memory, after step 1's save
        steps_run.append(1)
        return real_step(*args, **kwargs) if len(steps_run) < 3 else too_big()

    monkeypatch.setattr(train.loop, "train_step", too_big_after_a_save)
    assert main(["--config", TINY, f"out_dir={tmp_path / 'saved'}", "steps=4", "save_every=2"]) == 1
    # BUG: it said "rerun the same command with --resume", which runs out of memory again on the same batch
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"as a new run (in another out_dir if this one saved); the last complete save in {tmp_path / 'saved'} stands; "
        "--resume replays the same batches, so it fits only once more memory is free (another process gone) or with "
        "device=cpu")
    steps_run.clear()  # the CPU's allocator raises a plain RuntimeError: device=cpu is no way out of it
    raised[0] = RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 9 GB.")
    assert main(["--config", TINY, f"out_dir={tmp_path / 'cpu'}", "steps=4", "save_every=2"]) == 1
    assert capsys.readouterr().err.splitlines()[-1].endswith("once more memory is free (another process gone)")
    monkeypatch.setattr(train.loop, "train_step", lambda *a, **k: torch.zeros(2) @ torch.zeros(3))
    with pytest.raises(RuntimeError, match="inconsistent tensor size"):  # another is a bug: its traceback
        main(["--config", TINY, f"out_dir={tmp_path / 'other'}", "steps=4"])


def test_a_data_worker_killed_midway_is_one_line(tmp_path, monkeypatch, capsys):
    """As the kernel's OOM killer ends one: torch raises a RuntimeError that is no out-of-memory error of its own."""
    from train.__main__ import main
    from train.data import WorldBatches

    def killed(self, step):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(WorldBatches, "__getitem__", killed)  # the worker is forked: it runs this
    assert main(["--config", TINY, f"out_dir={tmp_path / 'run'}", "steps=2", "num_workers=1"]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: DataLoader worker (pid")
    assert "killed by signal" in err or "exited unexpectedly" in err  # which torch sees first
    # BUG: it offered a smaller batch_size beside --resume, which refuses one
    assert err.endswith("fewer num_workers (which --resume takes) or a smaller batch_size (a new run, in another "
                        "out_dir if this one saved) needs less; nothing was saved yet")


class _SigintHandlers(torch.utils.data.Dataset):
    """Each item: whether the process that makes it ignores SIGINT and SIGHUP and holds SIGTERM back (for the thread
    that stops it only when the training process sends one)."""

    def __getitem__(self, step):
        return torch.tensor([signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
                             signal.getsignal(signal.SIGHUP) is signal.SIG_IGN,
                             signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])])


class _Pids(torch.utils.data.Dataset):
    def __getitem__(self, step):
        return torch.tensor(os.getpid())


def test_data_workers_leave_ctrl_c_to_the_training_process():
    """A terminal's Ctrl-C reaches the data workers too. BUG: a worker started by spawn or forkserver (macOS's and
    Python 3.14's default) kept Python's handler and died of a first Ctrl-C, which training takes between steps: the
    run ended as if a worker had run out of memory. Here a forked worker, which would have kept the suite's handler."""
    from train.data import make_loader

    saved = signal.signal(signal.SIGINT, signal.default_int_handler)  # a suite started in the background ignores it
    try:
        assert [bool(item.all()) for item in make_loader(_SigintHandlers(), 0, 3, num_workers=1,
                                                         pin_memory=False)] == [True] * 3
    finally:
        signal.signal(signal.SIGINT, saved)


def test_a_sigterm_sent_to_every_process_leaves_the_data_workers_to_the_training_process():
    """`pkill -f "python -m train"`, a Slurm job's end or preemption, `systemctl stop`: every process gets SIGTERM.
    BUG: a worker died of it (torch's handler stops a worker only when its parent sends it) and the run ended as if it
    had run out of memory, its step and due save lost, where the training process stops after the step."""
    from train.data import make_loader

    batches = iter(make_loader(_Pids(), 0, 8, num_workers=1, pin_memory=False))
    worker = int(next(batches))
    # sent by another process than the training one
    subprocess.run([sys.executable, "-c", f"import os, signal; os.kill({worker}, signal.SIGTERM)"], check=True)
    time.sleep(0.5)  # delivered before the rest is asked for
    assert [int(pid) for pid in batches] == [worker] * 7


def test_a_data_worker_left_behind_by_a_killed_training_process_ends_on_any_sigterm():
    """The training process killed (kill -9, the OOM killer) while a worker waits on a hung read: the worker stays.
    A later SIGTERM from anyone must end it, even while the dead process is not yet reaped (here: this test holds it
    as a zombie, as a parent stuck reading the pipes the worker holds would)."""
    script = ("import os, sys, time, torch\n"
              "from train.data import make_loader\n"
              "class Hung(torch.utils.data.Dataset):\n"
              "    def __getitem__(self, step):\n"
              "        if step > 0:\n"
              "            time.sleep(600)\n"
              "        return torch.tensor(os.getpid())\n"
              "batches = iter(make_loader(Hung(), 0, 3, num_workers=1, pin_memory=False))\n"
              "print(int(next(batches)), flush=True)\n"
              "time.sleep(0.5)  # the worker is in its hung read\n"
              "os.kill(os.getpid(), 9)\n")
    trainer = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(trainer.stdout.readline())
        deadline = time.monotonic() + 30
        while _state(trainer.pid) != "Z":  # killed, not reaped
            assert time.monotonic() < deadline, "the training process did not end"
            time.sleep(0.05)
        while _state(worker) not in ("Z", None) and time.monotonic() < deadline:  # ended (reaped or not by init)
            # from this process, not the training process; again until it ends: the killed process's threads are
            # still going for a moment after it shows as a zombie, and a SIGTERM in that moment is dropped
            os.kill(worker, signal.SIGTERM)
            time.sleep(0.5)
        assert _state(worker) in ("Z", None), "the worker outlived a SIGTERM after its training process died"
    finally:
        with contextlib.suppress(NameError, ProcessLookupError):
            os.kill(worker, signal.SIGKILL)  # no longer below the training process: out of kill_with_descendants' reach
        kill_with_descendants(trainer.pid)
        trainer.wait()


def _state(pid: int) -> str | None:
    """A process's state letter (R, S, Z, ...) from /proc, None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def test_a_worker_sees_the_training_process_end_whatever_number_its_descriptor_has():
    """BUG: select.select refuses a descriptor numbered 1024 or more: a worker that inherited many open files (a
    few hundred workers, or a launcher's) had its SIGTERM thread die of a ValueError traceback."""
    import resource

    from train.data import _watch_for_the_end_of

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1100:
        pytest.skip("this machine allows fewer than 1100 open files")
    taken = [os.open(os.devnull, os.O_RDONLY) for _ in range(1050)]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = _watch_for_the_end_of(child.pid)
        assert not gone()
        child.kill()
        child.wait()
        assert gone()
    finally:
        child.kill()
        for fd in taken:
            os.close(fd)


def test_a_data_worker_busy_on_a_hung_read_does_not_keep_the_run_from_ending():
    """BUG: workers ignored SIGTERM, which the loader's shutdown sends one that does not stop within 5 s: a run that
    stopped while a worker waited on a lost network drive never exited."""
    script = ("import time, torch\n"
              "from train.data import make_loader\n"
              "class Hung(torch.utils.data.Dataset):\n"
              "    def __getitem__(self, step):\n"
              "        if step > 0:\n"
              "            time.sleep(600)  # the next batch, fetched ahead, from a drive that no longer answers\n"
              "        return torch.zeros(1)\n"
              "next(iter(make_loader(Hung(), 0, 3, num_workers=1, pin_memory=False)))\n")
    # the worker sleeps 600 s: a run that waits for it is stopped at the timeout, and the test fails
    result = run_whole([sys.executable, "-c", script], timeout=120, cwd=ROOT)  # the worker too, should it hang
    assert result.returncode == 0, result.stderr


def test_each_save_puts_the_logged_rows_on_disk_before_the_training_state(tmp_path, monkeypatch):
    """BUG: rows were appended without a sync: a power cut soon after a save could lose the last ones, never logged
    again by the resumed run, which starts after them (a hole in the curves and in the card's minimum)."""
    import train.loop as loop
    from train.__main__ import main

    done, flush, save_state = [], loop.flush_to_disk, loop.save_training_state
    monkeypatch.setattr(loop, "flush_to_disk", lambda path: done.append(Path(path).name) or flush(path))
    monkeypatch.setattr(loop, "save_training_state", lambda *args: done.append("state") or save_state(*args))
    assert main(["--config", TINY, f"out_dir={tmp_path / 'run'}", "steps=2", "save_every=1"]) == 0
    assert done == ["metrics.csv", "state"] * 2


def test_a_run_in_the_working_folder_names_its_card_after_it(tmp_path, monkeypatch):
    """BUG: out_dir=. titled the card "# JEPA Lens checkpoint ``" (Path('.').name is empty)."""
    from train.__main__ import main

    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    assert main(["--config", TINY, "out_dir=.", "steps=1"]) == 0
    assert "\n# JEPA Lens checkpoint `run`\n" in (tmp_path / "run" / "README.md").read_text()


def test_resume_without_a_save_says_it_starts_over_on_stderr(tmp_path, capsys):
    """BUG: on stdout, among the results: `> train.log` (or a mistyped out_dir) hid that nothing was continued."""
    from train.__main__ import main

    assert main(["--config", TINY, f"out_dir={tmp_path / 'run'}", "steps=1", "--resume"]) == 0
    out, err = capsys.readouterr()
    assert f"--resume: no train_state.safetensors in {tmp_path / 'run'}, starting from step 0\n" in err
    assert "starting from step 0" not in out


def test_resume_refuses_settings_that_would_change_the_run(tmp_path, capsys):
    from train.__main__ import main

    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2"]) == 0
    capsys.readouterr()
    # key=value pairs on both sides of --resume (argparse's plain parse_args refused the ones after it)
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "--resume", "model=small", "lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model=small (the run has tiny), lr=0.5 (the run has 0.001)" in err
    assert main(["--config", TINY, f"out_dir={out}", "--resume", "steps=4", "log_every=1"]) == 0  # logging may change
    record = (out / "train_config.json").read_text()
    (out / "train_config.json").unlink()
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "--resume"]) == 2
    assert "so the run's settings are unknown" in capsys.readouterr().err
    (out / "train_config.json").write_text("[]")  # BUG: JSON but not a record: an AttributeError's traceback
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "--resume"]) == 2
    assert "so the run's settings are unknown" in capsys.readouterr().err
    # BUG: a state file whose header records no step (another tool's): a KeyError's traceback, with or without --resume
    from jepa_demo.checkpoint import save_tensors

    (out / "train_config.json").write_text(record)
    save_tensors(out / "train_state.safetensors", {"x": torch.zeros(1)}, {"world_size": 1})
    for resume in ([], ["--resume"]):
        assert main(["--config", TINY, f"out_dir={out}", "steps=4", *resume]) == 2
        err = capsys.readouterr().err
        assert err.endswith("train_state.safetensors: not a training state this program wrote (it records no step)\n")
        assert err.count("\n") == 1

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_device_cuda_without_a_gpu_is_one_line(capsys):
    from train.__main__ import main

    assert main(["--config", TINY, "device=cuda"]) == 2
    err = capsys.readouterr().err
    assert err == "error: device=cuda, but this torch sees no CUDA GPU; use device=auto or device=cpu\n"


def test_a_bad_setting_under_torchrun_is_said_by_the_first_process_alone(monkeypatch, capsys):
    """BUG: each of torchrun's processes printed the same line (eight on eight GPUs)."""
    from train.__main__ import main

    for rank, said in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        assert main(["--config", TINY, "colour=blue"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: unknown setting 'colour'") if said else err == "", (rank, err)


def test_bad_settings_exit_with_one_line(tmp_path, capsys):
    from train.__main__ import main

    # a real process: no traceback on the way out either (out_dir: a regression trains there, not into runs/tiny)
    result = _train("--config", TINY, "colour=blue", f"out_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown setting 'colour'" in result.stderr
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--config", TINY, f"out_dir={blocker}/run"]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err
    assert main(["--config", TINY, f"out_dir={blocker}"]) == 2  # BUG: "cannot write to output folder ...: File exists"
    assert capsys.readouterr().err == f"error: out_dir {blocker} is a file, not a folder: choose a new or empty " \
                                      "folder\n"
    # BUG: a path that cannot even be looked up (as a folder one may not enter) raised from Path.exists and again
    # while the error was reported: a traceback; a recipe or data folder of that kind was "could not write" it
    too_long = tmp_path / ("a" * 300)
    for args, message in ([f"out_dir={too_long}"], f"cannot write to output folder {too_long}: File name too long"), \
            ([f"data={too_long}"], f"data={too_long}: cannot read it (File name too long)"):
        assert main(["--config", TINY, *args]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {message}\n"
    assert main(["--config", str(too_long)]) == 2
    assert capsys.readouterr().err == f"error: cannot read recipe {too_long}: File name too long\n"
    not_yaml = tmp_path / "notes.yaml"
    not_yaml.write_text("---\ntitle: a model card\n---\n# notes\n")  # two YAML documents, as a model card has
    assert main(["--config", str(not_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"recipe {not_yaml} is not valid YAML at line" in err
    not_yaml.write_text("steps: 5\x07\n")  # PyYAML's ReaderError: no mark, two lines of its own
    assert main(["--config", str(not_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not valid YAML: unacceptable character #x0007" in err
    not_yaml.write_text("lr: " + "[" * 5000 + "]" * 5000 + "\n")  # BUG: PyYAML's RecursionError, a traceback
    assert main(["--config", str(not_yaml)]) == 2
    assert capsys.readouterr().err == f"error: recipe {not_yaml} is not valid YAML: nested too deeply\n"
    not_yaml.write_bytes(b"\0" * (3 * 2**20))  # --config clip.mp4: it was read whole first
    assert main(["--config", str(not_yaml)]) == 2
    assert capsys.readouterr().err == (f"error: recipe {not_yaml} is more than 1 MB, not a recipe (a few lines of "
                                       "key: value)\n")
    assert main(["--config", "/dev/zero"]) == 2  # a device: read up to the limit, not forever
    assert "is more than 1 MB, not a recipe" in capsys.readouterr().err
    # BUG: an empty recipe (a pipe whose sed failed, /dev/null, a file of comments) trained the defaults
    for empty in ("/dev/null", tmp_path / "comments.yaml"):
        (tmp_path / "comments.yaml").write_text("# lr: 0.001\n")
        assert main(["--config", str(empty), f"out_dir={tmp_path / 'run'}"]) == 2
        assert capsys.readouterr().err == f"error: recipe {empty} holds no settings (an empty file, or comments only)\n"
    assert not (tmp_path / "run").exists()
    assert main(["--config", " ", f"out_dir={tmp_path / 'run'}"]) == 2  # --config "$RECIPE" with RECIPE unset
    assert "--config is empty" in capsys.readouterr().err
    assert main(["--config", TINY, f"data={tmp_path / 'no-videos'}", f"out_dir={tmp_path / 'run'}"]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "gone\n.mp4").symlink_to(tmp_path / "unmounted.mp4")  # BUG: said in two lines
    assert main(["--config", TINY, f"data={tmp_path / 'videos'}", f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("/gone\\n.mp4 is a link to " f"{tmp_path / 'unmounted.mp4'} that "
                                                  "cannot be followed (No such file or directory)\n")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_too_little_disk_space_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import shutil

    from train.__main__ import main

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    assert main(["--config", TINY, f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not enough disk space" in err and "1 MB free" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # BUG: /proc and /sys have no size: out_dir=/proc/x was refused for want of space ('0 MB free'), not as unwritable
    monkeypatch.undo()
    assert main(["--config", TINY, "out_dir=/proc/jepa-lens-run"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot write to output folder /proc/jepa-lens-run: ")


def test_a_resumed_run_needs_free_space_for_its_saves_less_the_files_they_replace(tmp_path, monkeypatch, capsys):
    """BUG: the check asked the same free space of a resumed run as of a new one, counting the state and checkpoint
    its saves replace as if they were to be written beside them: a run that started with room was refused its
    --resume after its first save, with nothing else on the disk changed."""
    import shutil

    import train.loop
    from train.__main__ import main

    out, fresh = tmp_path / "run", tmp_path / "fresh"
    _interrupt_after(monkeypatch, 2)
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2"]) == 130
    monkeypatch.undo()
    model = load_model(out).net
    saved = sum((out / name).stat().st_size for name in ("train_state.safetensors", "model.safetensors"))
    needed = train.loop.disk_space_needed(out, model)
    assert needed == train.loop.disk_space_needed(fresh, model) - saved
    real = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real._replace(free=needed))
    capsys.readouterr()
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2", "--resume"]) == 0, \
        capsys.readouterr().err
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real._replace(free=needed - 1))
    assert main(["--config", TINY, f"out_dir={fresh}", "steps=4", "save_every=2"]) == 2
    assert "not enough disk space" in capsys.readouterr().err


def test_disk_full_during_a_save_is_one_line_and_the_last_save_stands(tmp_path, monkeypatch, capsys):
    """safetensors reports a full disk as its own SafetensorError, with this message (0.8.0 on a full tmpfs), not as an
    OSError: a test raising OSError here passed while a real full disk ended the run in a traceback."""
    from safetensors import SafetensorError

    import jepa_demo.checkpoint as checkpoint
    from train.__main__ import main

    real_save, calls = checkpoint.save_file, []

    def disk_fills_at_the_second_save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 3:  # saves write the training state, then the weights: this is step 20's state
            Path(path).write_bytes(b"\0" * 100)  # part of the file, then the disk is full
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", disk_fills_at_the_second_save)
    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", "steps=30", "save_every=10"]) == 1
    err = capsys.readouterr().err.strip()  # the progress bar, closed, then one line
    assert err.splitlines()[-1].startswith("error: ") and err.count("error") == 1
    assert f"could not write {out / 'train_state.safetensors'}: No space left on device" in err and "--resume" in err
    assert load_model(out).info()["step"] == 10
    assert not list(out.glob(".*.tmp")), "the partial file was left behind"


def test_resume_finishes_a_final_save_that_stopped_after_the_training_state(tmp_path, monkeypatch, capsys):
    """The training state is written first: a run stopped between it and the weights at its last step has nothing
    left to train, and --resume must still write the checkpoint, not report the step-2 one as done."""
    import errno

    import train.loop as loop
    from train.__main__ import main

    real_save = loop.save_checkpoint

    def disk_full_at_the_last_step(model, out, preprocess, step, **kwargs):
        if step == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "model.safetensors"))
        real_save(model, out, preprocess, step, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", disk_full_at_the_last_step)
    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2"]) == 1
    assert load_model(out).info()["step"] == 2
    # its own state, saved at its last step: what --resume finishes (not an earlier run's, finished)
    assert capsys.readouterr().err.rstrip().endswith("rerun the same command with --resume to continue")
    monkeypatch.undo()
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2", "--resume"]) == 0
    assert load_model(out).info()["step"] == 4 and "Steps**: 4 of 4" in (out / "README.md").read_text()
    assert len(read_metrics(out / "metrics.csv")) == 4
    capsys.readouterr()


def test_resume_drops_a_metrics_row_cut_short(tmp_path):
    """metrics.csv is appended without an fsync; a power cut just after a save can leave the row before it half
    written. Kept, its empty fields failed every later plot of the curves (float(''))."""
    from jepa_demo.training_metrics import METRIC_FIELDS
    from train.loop import MetricsLog
    from train.report import plot_curves

    path = tmp_path / "metrics.csv"
    full = "{step},0.4,0.001,0.996,0.5,0.3,12.0,20.0,future"
    path.write_text(",".join(METRIC_FIELDS) + "\n" + full.format(step=0) + "\n" + full.format(step=1) + "\n2,0.41,0.0")
    log = MetricsLog(path, start_step=3)  # the save at step 3 came after row 2 was (half) written
    log.write({"step": 3, "loss": 0.39, "lr": 0.001, "momentum": 0.996, "target_std": 0.5, "clip_std": 0.3,
               "rankme": 12.0, "clips_per_s": 20.0, "mask": "multiblock"})
    assert [row["step"] for row in read_metrics(path)] == [0, 1, 3]
    plot_curves(path, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_the_curves_of_a_run_logged_before_the_spread_across_clips_do_not_promise_its_line(tmp_path, monkeypatch):
    """BUG: the spread panel's title spoke of a dashed line across clips, which a run logged before that column
    (the shipped checkpoints) does not have."""
    from jepa_demo.training_metrics import METRIC_FIELDS
    from train.report import plot_curves

    figures = []
    monkeypatch.setattr("train.report.plt.close", figures.append)  # the curves' figure, kept to read its titles
    path = tmp_path / "metrics.csv"
    older = [field for field in METRIC_FIELDS if field != "clip_std"]
    rows = ["0,0.4,0.001,0.996,0.5,12.0,20.0,future", "1,0.3,0.001,0.996,0.6,12.0,20.0,tube"]
    path.write_text("\n".join([",".join(older), *rows, ""]))
    plot_curves(path, tmp_path / "curves.png")
    spread = figures[0].axes[1]
    assert spread.get_title() == "target-embedding std" and len(spread.get_lines()) == 1


def test_the_curves_of_a_run_of_one_logged_step_show_it(tmp_path):
    """BUG: `steps=1` logs one row; a line through one point draws nothing, so every panel was empty."""
    from matplotlib.image import imread

    from jepa_demo.training_metrics import METRIC_FIELDS
    from train.report import plot_curves

    path = tmp_path / "metrics.csv"
    path.write_text(",".join(METRIC_FIELDS) + "\n0,0.4,0.001,0.996,0.5,0.3,12.0,20.0,future\n")
    plot_curves(path, tmp_path / "curves.png")
    picture = imread(tmp_path / "curves.png")[..., :3] * 255
    drawn = np.abs(picture - [31, 119, 180]).sum(-1) < 60  # matplotlib's first line colour
    rows, columns = np.array_split(np.arange(drawn.shape[0]), 2), np.array_split(np.arange(drawn.shape[1]), 3)
    dots = [int(drawn[np.ix_(r, c)].sum()) for r in rows for c in columns]  # the 2 x 3 panels: a dot in each
    assert min(dots) > 10, dots


def test_a_run_logged_before_the_across_clips_monitor_resumes_with_its_history(tmp_path):
    """Its metrics.csv has no clip_std column: its rows are read with NaN there, kept on resume, and the card and the
    alarm leave the monitor out for them."""
    from train.loop import MetricsLog
    from train.report import CollapseAlarm, summarize

    path = tmp_path / "metrics.csv"
    old = ["step", "loss", "lr", "momentum", "target_std", "rankme", "clips_per_s", "mask"]
    path.write_text(",".join(old) + "\n0,0.4,0.001,0.996,0.5,12.0,20.0,future\n1,0.3,0.001,0.996,0.5,12.0,20.0,tube\n")
    log = MetricsLog(path, start_step=2)
    log.write({"step": 2, "loss": 0.39, "lr": 0.001, "momentum": 0.996, "target_std": 0.5, "clip_std": 0.3,
               "rankme": 12.0, "clips_per_s": 20.0, "mask": "multiblock"})
    rows = read_metrics(path)
    assert [row["step"] for row in rows] == [0, 1, 2] and np.isnan(rows[0]["clip_std"]) and rows[2]["clip_std"] == 0.3
    assert summarize(rows)["min_clip_std"] == 0.3 and summarize(rows[:2])["min_clip_std"] is None
    assert CollapseAlarm("jepa").warnings(rows[0]) == []


def test_the_cards_throughput_is_not_pulled_down_by_a_row_that_timed_a_start_up():
    """The first row a process logs (step 0, or the first after --resume) holds the workers' start and the first batch:
    in a short or resumed run, the mean of the last rows fell with it."""
    from train.report import summarize

    def row(step, speed):
        return {"step": step, "loss": 0.5, "target_std": 0.4, "clip_std": 0.3, "rankme": 10.0, "clips_per_s": speed}

    assert summarize([row(0, 1.0), row(10, 100.0), row(20, 110.0)])["final"]["clips_per_s"] == 105.0
    assert summarize([row(0, 1.0), row(10, 100.0)])["final"]["clips_per_s"] == 100.0  # a short run's two rows
    resumed = [row(step, 100.0) for step in range(0, 90, 10)] + [row(90, 2.0), row(100, 104.0)]
    assert summarize(resumed)["final"]["clips_per_s"] == 100.0


def test_the_collapse_alarm_speaks_once_per_monitor_and_never_for_the_pixel_baseline():
    from train.report import CollapseAlarm

    def row(step, std, rank, across_clips=0.3):
        return {"step": step, "target_std": std, "clip_std": across_clips, "rankme": rank}

    alarm = CollapseAlarm("jepa")
    assert alarm.warnings(row(0, 0.45, 130.0)) == [] and alarm.warnings(row(10, 0.1, 5.0, 0.1)) == []  # at the floors
    [rank] = alarm.warnings(row(560, 0.41, 4.3))
    assert rank.startswith("warning: step 560: effective rank (RankMe) 4.3 is below its collapse floor 5")
    [std] = alarm.warnings(row(570, 0.08, 3.9))  # the rank was said already
    assert "target-embedding std 0.08 is below its collapse floor 0.1" in std
    [clips] = alarm.warnings(row(575, 0.5, 30.0, 0.02))  # spread over tokens, the same for every clip
    assert "std across clips 0.02 is below its collapse floor 0.1: the clips get nearly the same" in clips
    assert alarm.warnings(row(580, 0.01, 1.0, 0.0)) == []
    assert CollapseAlarm("pixel").warnings(row(0, 0.01, 1.0, 0.0)) == []  # pixels cannot collapse
    # BUG: a value just below its floor was printed rounded up to it: "RankMe 5 is below its collapse floor 5"
    [rank, std] = CollapseAlarm("jepa").warnings(row(0, 0.09996, 4.996))
    assert "(RankMe) 4.996 is below its collapse floor 5" in rank
    assert "std 0.09996 is below its collapse floor 0.1" in std
    from train.report import monitor_text  # and the card's minimum, as it rounds: to one decimal, more where needed

    assert [monitor_text(rank, "rankme", 1, "f") for rank in (4.97, 5.04, 12.23)] == ["4.97", "5.0", "12.2"]


@pytest.mark.parametrize("objective", ["jepa", "pixel"])
def test_a_run_that_falls_below_a_collapse_floor_says_so_and_its_card_too(tmp_path, monkeypatch, capsys, objective):
    import train.loop as loop
    from train.__main__ import main

    monkeypatch.setattr(loop, "effective_rank", lambda embeddings: 2.0)  # as a collapsing run logs it
    figures = []
    monkeypatch.setattr("train.report.plt.close", figures.append)  # the curves' figure, kept to read its titles
    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", "steps=3", f"objective={objective}"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "collapse floor" in line]
    card = (out / "README.md").read_text()
    loss = "loss (smooth-L1, hidden pixels)" if objective == "pixel" else "loss (smooth-L1, hidden tokens)"
    titles = [ax.get_title() for ax in figures[-1].axes if ax.axison]
    assert titles[0] == loss and f"- {loss}: " in card
    # BUG: "target-embedding std" for the pixel baseline too, whose targets are pixels: it watches its encoder's tokens
    spread = "encoder-token std" if objective == "pixel" else "target-embedding std"
    assert titles[1] == f"{spread} (dashed: across clips)" and f"- {spread}: " in card
    assert ("EMA momentum" in titles) == (objective == "jepa")  # the pixel baseline has no teacher
    if objective == "pixel":
        assert warnings == [] and "collapse floor" not in card
    else:
        assert len(warnings) == 1 and warnings[0].startswith("warning: step 0: effective rank (RankMe) 2 is below")
        assert "(minimum over the run 2.0, below its collapse floor of 5)" in card
        assert "std" not in warnings[0] and card.count("collapse floor") == 1


def test_a_loss_that_is_not_finite_stops_before_the_update(tiny_model):
    from train.loop import Runtime, TrainingDiverged, build_optimizer, train_step

    cfg = TrainConfig(model="tiny", steps=10, future_steps=1)
    optimizer = build_optimizer(tiny_model, cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}

    def diverged(*args, **kwargs):
        out = tiny_model(*args, **kwargs)
        return {**out, "loss": out["loss"] * float("nan")}

    batch = torch.randn(2, 3, tiny_model.cfg.num_frames, tiny_model.cfg.img_size, tiny_model.cfg.img_size)
    with pytest.raises(TrainingDiverged, match="the loss is nan and the gradient norm nan at step 3: training"):
        train_step(tiny_model, diverged, optimizer, batch, 3, cfg, Runtime(torch.device("cpu")))
    # A finite loss whose gradients are not (under DDP: another process's NaN, averaged into these)
    tiny_model.predictor.mask_token.register_hook(lambda grad: torch.full_like(grad, float("nan")))
    with pytest.raises(TrainingDiverged, match=r"the loss is [0-9.e-]+ and the gradient norm nan at step 4"):
        train_step(tiny_model, tiny_model, optimizer, batch, 4, cfg, Runtime(torch.device("cpu")))
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())


def test_a_learning_rate_that_overflows_the_optimisers_step_is_a_diverged_run(tiny_model):
    """BUG: lr=1e38 is finite, but AdamW's first step size (lr over its bias correction, 0.1) is past float32's range:
    a RuntimeError traceback where lr=1e37 said, in one line, that training diverged."""
    from train.loop import Runtime, TrainingDiverged, build_optimizer, train_step

    cfg = TrainConfig(model="tiny", steps=10, future_steps=1, lr=1e38, warmup_steps=0)
    optimizer = build_optimizer(tiny_model, cfg, torch.device("cpu"))
    batch = torch.randn(2, 3, tiny_model.cfg.num_frames, tiny_model.cfg.img_size, tiny_model.cfg.img_size)
    with pytest.raises(TrainingDiverged, match=r"the optimiser's step overflowed at step 0 \(lr=1e\+38\); a lower"):
        train_step(tiny_model, tiny_model, optimizer, batch, 0, cfg, Runtime(torch.device("cpu")))


def test_a_training_step_moves_the_teacher_towards_the_updated_student_by_the_steps_momentum(tiny_model):
    """The ghost teacher is the step's EMA of the student after its update: no other test would notice a training
    loop that never updated it (or used 1 - momentum), since a frozen teacher passes every other training check."""
    from train.loop import Runtime, build_optimizer, momentum_at, train_step

    assert tiny_model.cfg.objective == "jepa"
    cfg = TrainConfig(model="tiny", steps=10, future_steps=1, ema_start=0.5, ema_end=0.9)
    optimizer = build_optimizer(tiny_model, cfg, torch.device("cpu"))
    teacher = [p.detach().clone() for p in tiny_model.target_encoder.parameters()]
    batch = torch.randn(2, 3, tiny_model.cfg.num_frames, tiny_model.cfg.img_size, tiny_model.cfg.img_size)
    train_step(tiny_model, tiny_model, optimizer, batch, 4, cfg, Runtime(torch.device("cpu")))
    momentum = momentum_at(4, cfg)
    assert 0.5 < momentum < 0.9  # mid-schedule: the step's own momentum, not either end's
    for before, after, student in zip(teacher, tiny_model.target_encoder.parameters(),
                                      tiny_model.context_encoder.parameters(), strict=True):
        torch.testing.assert_close(after, momentum * before + (1 - momentum) * student.detach())
    assert not all(torch.equal(a, b) for a, b in zip(teacher, tiny_model.target_encoder.parameters()))


def test_resume_refuses_another_number_of_processes(tmp_path, tiny_model):
    from train.loop import build_optimizer, load_training_state, save_training_state

    cfg = TrainConfig(model="tiny", future_steps=1)
    optimizer = build_optimizer(tiny_model, cfg, torch.device("cpu"))
    save_training_state(tmp_path, tiny_model, optimizer, 5, cfg, 1.0, world_size=2)
    with pytest.raises(ValueError, match="it ran as 2 process\\(es\\), not 1"):
        load_training_state(tmp_path, tiny_model, optimizer, world_size=1)
    assert load_training_state(tmp_path, tiny_model, optimizer, world_size=2) == (5, 1.0)
    from jepa_demo.checkpoint import load_tensors, save_tensors

    tensors, meta = load_tensors(tmp_path / "train_state.safetensors")
    del meta["world_size"]  # a state saved before the number of processes was recorded: not refused
    save_tensors(tmp_path / "train_state.safetensors", tensors, meta)
    assert load_training_state(tmp_path, tiny_model, optimizer, world_size=2) == (5, 1.0)


def test_resume_from_a_state_that_does_not_fit_the_model_is_one_error(tmp_path, tiny_model):
    """BUG: a state another version of the model saved (a weight gone, or the optimiser's moments of another shape)
    was a RuntimeError traceback, at the load or at the first step."""
    from jepa_demo.checkpoint import load_tensors, save_tensors
    from train.loop import build_optimizer, load_training_state, save_training_state

    cfg = TrainConfig(model="tiny", future_steps=1)
    optimizer = build_optimizer(tiny_model, cfg, torch.device("cpu"))
    sum(param.sum() for param in tiny_model.parameters() if param.requires_grad).backward()
    optimizer.step()  # the moments exist from the first step on
    save_training_state(tmp_path, tiny_model, optimizer, 1, cfg, 1.0, world_size=1)
    state = tmp_path / "train_state.safetensors"
    tensors, meta = load_tensors(state)
    name = "model.target_encoder.patch_embed.weight"
    save_tensors(state, {key: value for key, value in tensors.items() if key != name}, meta)
    with pytest.raises(ValueError, match=r"train_state.safetensors: does not fit the model this code makes \(Missing "
                                         r"key.*target_encoder.patch_embed.weight.*\); saved by another version"):
        load_training_state(tmp_path, tiny_model, optimizer, world_size=1)
    moment = next(key for key in tensors if key.startswith("optim.") and key.endswith(".exp_avg"))
    save_tensors(state, {**tensors, moment: tensors[moment].flatten()[:3].clone()}, meta)
    with pytest.raises(ValueError, match=rf"does not fit .+ \(the optimiser's exp_avg of parameter "
                                         rf"{moment.split('.')[1]} is \(3,\), the model's \("):
        load_training_state(tmp_path, tiny_model, optimizer, world_size=1)


def _file_store(folder: Path) -> str:
    """Where two spawned gloo processes meet: a file, not a TCP port found free a moment earlier, which the other
    test worker's processes could take in between."""
    return f"file://{folder / 'gloo-store'}"


def _start_from(rank: int, starts: list, records: list, store: str) -> None:
    import torch.distributed as dist

    from train.loop import Runtime, check_processes_resume_together, check_processes_see_the_same_files

    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=len(starts))
    try:
        runtime = Runtime(torch.device("cpu"), rank, len(starts))
        check_processes_see_the_same_files(records[rank], runtime)
        check_processes_resume_together(starts[rank], runtime)
    finally:
        dist.destroy_process_group()


def _save_with_weights(rank: int, nudged: bool, store: str) -> None:
    import torch.distributed as dist

    from jepa_demo.config import model_config_from_preset
    from jepa_demo.model import VideoJEPA
    from train.loop import Runtime, check_processes_agree

    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = VideoJEPA(model_config_from_preset("tiny"))
        if nudged and rank == 1:  # a process that drifted: a module outside DDP, a collective it missed
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] += 1e-3
        check_processes_agree(model, 30, Runtime(torch.device("cpu"), rank, 2))
    finally:
        dist.destroy_process_group()


def test_a_save_is_refused_when_the_processes_hold_different_weights(tmp_path):
    """The check made at each save under DDP (only the main process saves): it had run only where weights agree."""
    import torch.multiprocessing as mp

    (tmp_path / "same").mkdir()
    mp.spawn(_save_with_weights, args=(False, _file_store(tmp_path / "same")), nprocs=2)
    with pytest.raises(Exception, match=r"at step 30 the 2 processes hold different weights \(checksums"):
        mp.spawn(_save_with_weights, args=(True, _file_store(tmp_path)), nprocs=2)


def _stop_when_one_asks(rank: int, store: str) -> None:
    import torch.distributed as dist

    from train.loop import Runtime, stop_together

    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    try:
        runtime = Runtime(torch.device("cpu"), rank, 2)
        assert stop_together(rank == 1, runtime), rank  # Ctrl-C reached process 1 first: both stop
        assert not stop_together(False, runtime), rank
    finally:
        dist.destroy_process_group()


def test_under_ddp_every_process_stops_after_the_step_in_which_one_was_asked_to(tmp_path):
    """BUG: torchrun hands Ctrl-C to each process at its own moment; one that had just passed the check went on
    into the next step alone, and waited in its collectives until torchrun killed it 30 s later."""
    import torch.multiprocessing as mp

    mp.spawn(_stop_when_one_asks, args=(_file_store(tmp_path),), nprocs=2)


@pytest.mark.parametrize("starts", [[250, 250], [250, 0]])
def test_processes_that_would_resume_from_different_steps_stop_instead_of_waiting(starts, tmp_path):
    """One process that cannot see the training state (out_dir not shared between machines) started from step 0
    while the others resumed: their collectives then waited on each other."""
    import torch.multiprocessing as mp

    records = [{"data": "world"}] * 2
    if starts[0] == starts[1]:
        mp.spawn(_start_from, args=(starts, records, _file_store(tmp_path)), nprocs=2)
        return
    with pytest.raises(Exception, match=r"would start from different steps \(\[250, 0\]\): out_dir must be on a"):
        mp.spawn(_start_from, args=(starts, records, _file_store(tmp_path)), nprocs=2)


def test_processes_that_see_different_files_in_the_data_folder_stop_before_training(tmp_path):
    """BUG: each process lists data=FOLDER's files itself and only the main one's list was recorded: one that could
    not read a file (or another machine's copy of the folder) trained on batches the record did not describe."""
    import torch.multiprocessing as mp

    seen = {"data": "clips", "data_files": "3 files, sha256 ab", "data_sizes": "sha256 cd"}
    one_short = {**seen, "data_files": "2 files, sha256 ef"}
    with pytest.raises(Exception, match=r"the 2 processes see different files in data=clips \(a file one of them"):
        mp.spawn(_start_from, args=([0, 0], [seen, one_short], _file_store(tmp_path)), nprocs=2)
    (tmp_path / "same").mkdir()
    mp.spawn(_start_from, args=([0, 0], [seen, dict(seen)], _file_store(tmp_path / "same")), nprocs=2)


def _refuse_on_the_main_process(rank: int, store: str, folder: Path) -> None:
    import torch.distributed as dist

    from train.loop import Runtime, refused_by_main

    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    try:
        runtime, checked = Runtime(torch.device("cpu"), rank, 2), []

        def check():
            checked.append(rank)
            raise ValueError("out_dir runs/x already holds other files (README.md)")
        try:
            refused_by_main(runtime, check)
        except ValueError as err:
            (folder / f"{rank}.txt").write_text(f"{type(err).__name__}: {err}; checked by {checked}")
        refused_by_main(runtime, lambda: None)  # nothing refused: both go on, together
    finally:
        dist.destroy_process_group()


def test_a_refusal_only_the_main_process_checks_stops_every_process_and_is_said_once(tmp_path, monkeypatch, capsys):
    """BUG: out_dir is checked on the main process alone; under torchrun its refusal ("already holds other files",
    "holds an unfinished run") was one line from it and a gloo traceback from the others, which had gone on to the
    next collective (under NCCL they would have waited there). A refusal every process raises is said once."""
    import torch.multiprocessing as mp

    import train.__main__
    from train.loop import SaidByTheMainProcess

    mp.spawn(_refuse_on_the_main_process, args=(_file_store(tmp_path), tmp_path), nprocs=2)
    assert (tmp_path / "0.txt").read_text() == ("ValueError: out_dir runs/x already holds other files (README.md); "
                                                "checked by [0]")
    assert (tmp_path / "1.txt").read_text() == ("SaidByTheMainProcess: out_dir runs/x already holds other files "
                                                "(README.md); checked by []")

    def refused(*args, **kwargs):
        raise SaidByTheMainProcess("out_dir runs/x already holds other files (README.md)")
    monkeypatch.setattr(train.__main__, "run", refused)
    monkeypatch.setenv("RANK", "1")
    assert train.__main__.main(["--config", TINY, f"out_dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err == ""


def test_a_resumed_optimizer_steps_as_its_own_device_does_and_keeps_the_saved_run_settings(tmp_path, tiny_model):
    """BUG: load_state_dict copies every saved group setting, so a run begun on the CPU and resumed on a GPU kept the
    CPU's unfused update (and a GPU run resumed on the CPU asked for a fused one)."""
    from train.loop import load_optimizer, optimizer_tensors

    params = [p for p in tiny_model.parameters() if p.requires_grad]
    begun = torch.optim.AdamW(params, lr=0.01, betas=(0.9, 0.95), foreach=False)
    begun.param_groups[0]["lr"] = 0.003  # where the schedule had got to
    tensors, meta = optimizer_tensors(begun)
    resumed = torch.optim.AdamW(params, lr=0.01, betas=(0.9, 0.95), foreach=True)  # another device's choice
    load_optimizer(resumed, tensors, meta)
    assert resumed.param_groups[0]["foreach"] is True and resumed.param_groups[0]["lr"] == 0.003
    fused = torch.optim.AdamW(params, lr=0.01, betas=(0.9, 0.95), fused=True)  # a GPU's (fused AdamW runs on CPUs too)
    load_optimizer(fused, tensors, meta)  # the setting the bug was about, which the run begun here saved as None
    assert fused.param_groups[0]["fused"] is True and fused.param_groups[0]["lr"] == 0.003


@pytest.mark.slow
def test_sigkill_during_a_save_keeps_the_previous_one_and_resume_goes_back_one_interval(tmp_path):
    """A real SIGKILL in the middle of writing step 20's training state (half a file on disk)."""
    out = tmp_path / "run"
    killer = (
        "import os, signal, sys\n"
        "import jepa_demo.checkpoint as checkpoint\n"
        "real_save, calls = checkpoint.save_file, []\n"
        "def save_file(tensors, path, metadata=None):\n"
        "    calls.append(path)\n"
        "    if len(calls) == 3:\n"
        "        open(path, 'wb').write(b'half a file')\n"
        "        open(os.path.join(os.path.dirname(path), '.tmpAb12Cd'), 'wb').write(b'half')  # safetensors' own\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real_save(tensors, path, metadata=metadata)\n"
        "checkpoint.save_file = save_file\n"
        "from train.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    settings = ["--config", TINY, f"out_dir={out}", "steps=30", "save_every=10"]
    killed = subprocess.run([sys.executable, "-c", killer, *settings], cwd=ROOT, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert [p.name.split(".")[1] for p in out.glob(".*.tmp")] == ["train_state"]  # killed mid-write
    assert load_model(out).info()["step"] == 10  # the previous save, whole

    (out / ".notes.tmp").write_text("mine")  # BUG: a user's own hidden .tmp file was removed with the leftovers
    result = _train(*settings, "--resume")
    assert result.returncode == 0, result.stderr
    assert "| 10/30 " in result.stderr and "| 0/30 " not in result.stderr  # it went on from step 10, not from 0
    assert [p.name for p in out.glob(".*.tmp")] == [".notes.tmp"]
    # BUG: safetensors' save_file writes a .tmpXXXXXX file first, beside ours: a kill left it for good (gigabytes of
    # training state at larger sizes)
    assert not (out / ".tmpAb12Cd").exists()
    assert load_model(out).info()["step"] == 30
    steps = [int(row["step"]) for row in read_metrics(out / "metrics.csv")]
    assert steps == list(range(30))  # steps 10-19 redone once, not logged twice


def test_a_second_run_in_a_folder_a_run_holds_is_refused_and_leaves_its_save_in_progress(tmp_path, capsys):
    """BUG: nothing stopped two runs in one out_dir: the second rewrote metrics.csv under the first, both saved over
    each other's files, and a second command, even one then refused, deleted the first's save in progress as a
    killed save's leftover."""
    import multiprocessing
    import time

    from train.__main__ import main
    from train.loop import only_run_in

    out = tmp_path / "run"
    out.mkdir()
    saving = out / ".train_state.safetensors.0123456789ab.tmp"
    saving.write_bytes(b"the running run's save in progress")
    with only_run_in(out):  # as another process's run holds it (a lock on a second descriptor conflicts the same)
        assert main(["--config", TINY, f"out_dir={out}", "steps=2"]) == 2
        assert saving.exists() and sorted(p.name for p in out.iterdir()) == [saving.name]
        # a data worker forked during the run must not hold the folder after it
        worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        worker.start()
    try:
        assert capsys.readouterr().err.endswith(f"out_dir {out} is in use by another training run, still running; "
                                                "wait for it to end, or choose another out_dir\n")
        assert main(["--config", TINY, f"out_dir={out}", "steps=2", "save_every=1"]) == 0  # free once it ended
        assert not saving.exists()  # a killed save's leftover, now that no run holds the folder
    finally:
        worker.kill()
        worker.join()


def test_compile_asked_for_on_the_cpu_and_a_folder_named_world_are_said(tmp_path, capsys, monkeypatch):
    """BUG: compile=true on the CPU ran eager without a word, recorded in config.json and the card as compiled; and
    data=world beside a folder of videos named world trained on the synthetic world without a word."""
    from train.__main__ import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "world" / "cats").mkdir(parents=True)
    assert main(["--config", TINY, f"out_dir={tmp_path / 'run'}", "steps=1", "compile=true", "device=cpu",
                 "data=world"]) == 0
    err = capsys.readouterr().err
    assert "note: compile=true is for CUDA (on the CPU, compiled training ran slower than eager): this run on cpu " \
           "runs eager\n" in err
    assert "note: data=world is the synthetic world; to train on the folder world here, give data=./world\n" in err


def test_cli_run_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    result = _train("--config", TINY, f"out_dir={out}", "steps=12", "save_every=6")
    assert result.returncode == 0, result.stderr
    assert "train:" in result.stderr and "12/12" in result.stderr  # tqdm progress bar
    for name in CHECKPOINT_FILES:
        assert (out / name).is_file(), name
    model = load_model(out)
    assert model.info()["step"] == 12
    rows = read_metrics(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(12))
    assert all(r["rankme"] >= 1 and r["target_std"] > 0 and r["clip_std"] > 0 and r["clips_per_s"] > 0 for r in rows)
    card = (out / "README.md").read_text()
    assert "python -m train --config" in card and f"CPU threads ({cpu_model()})" in card  # the wall time's CPU
    assert f"its spread across clips at each token: minimum over the run {min(r['clip_std'] for r in rows):.3f}" in card


@pytest.mark.parametrize("objective", ["pixel", "jepa-sigreg"])
def test_other_objectives_train_from_the_cli(tmp_path, objective):
    out = tmp_path / objective
    result = _train("--config", TINY, f"out_dir={out}", "steps=4", "save_every=4", f"objective={objective}")
    assert result.returncode == 0, result.stderr
    model = load_model(out)
    assert model.objective == objective and model.info()["step"] == 4
    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and all(r["rankme"] >= 1 and r["target_std"] > 0 for r in rows)
    assert ("pixel-prediction baseline" if objective == "pixel" else "SIGReg") in (out / "README.md").read_text()


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    # device=cpu: the claim is bit-identical weights, which CUDA's attention backward does not promise
    settings = ["steps=40", "save_every=10", "device=cpu"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _train("--config", TINY, f"out_dir={reference}", *settings).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "train", "--config", TINY, f"out_dir={killed}", *settings],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # early: from step 12 the run has 28 steps and two saves to go, time enough for this process to kill it
        # on a busy machine (the first save, at step 10, is written before the row of step 10)
        _wait_for_step(killed / "metrics.csv", 12, proc)
    finally:  # killed whether the step came or the wait timed out: a run left going would hold a core
        proc.kill()  # SIGKILL; nothing when it has ended (the wait says so)
        proc.wait()
    assert 10 <= load_model(killed).info()["step"] < 40  # whatever the kill interrupted, the last export loads
    # --resume goes on from the training state, which each save writes before the export: a kill between the two
    # leaves the export a save behind (reading the step from it made this test fail now and then)
    from jepa_demo.checkpoint import load_tensors
    from train.loop import STATE_NAME

    interrupted_at = int(load_tensors(killed / STATE_NAME, metadata_only=True)[1]["step"])
    assert 10 <= interrupted_at < 40

    result = _train("--config", TINY, f"out_dir={killed}", *settings, "--resume")
    assert result.returncode == 0, result.stderr
    # went on from the last save (a run trained again from step 0 would end with the same weights: it is deterministic)
    assert f"| {interrupted_at}/40 " in result.stderr and "| 0/40 " not in result.stderr
    assert not list(killed.glob(".*.tmp")), "a save interrupted by the kill left its temporary file behind"
    assert load_model(killed).info()["step"] == 40
    ref_rows, res_rows = read_metrics(reference / "metrics.csv"), read_metrics(killed / "metrics.csv")
    assert [r["step"] for r in res_rows] == [r["step"] for r in ref_rows]
    for a, b in zip(ref_rows, res_rows):
        assert (a["loss"], a["lr"], a["momentum"]) == (b["loss"], b["lr"], b["momentum"]), a["step"]
    _assert_same_weights(reference, killed)


def _assert_same_weights(expected: Path, resumed: Path) -> None:
    """The two runs' exported weights are bit for bit the same, tensor for tensor (none missing or extra)."""
    expected, resumed = load_file(expected / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == resumed.keys() and all(torch.equal(expected[k], resumed[k]) for k in expected)


@pytest.mark.parametrize("objective", ["jepa-sigreg", "pixel"])
def test_a_stopped_and_resumed_run_of_each_objective_ends_as_an_uninterrupted_one(objective, tmp_path, monkeypatch,
                                                                                    capsys):
    """The SIGKILL test above runs the default objective; the others take more from the step (SIGReg its random
    directions, the pixel baseline its own targets), and --resume must replay them the same."""
    from train.__main__ import main

    settings = ["--config", TINY, f"objective={objective}", "steps=6", "save_every=2", "device=cpu"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main([*settings, f"out_dir={whole}"]) == 0
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 3)  # stopped in its fourth step: the save after the second stands
        assert main([*settings, f"out_dir={stopped}"]) == 130
    capsys.readouterr()
    assert main([*settings, f"out_dir={stopped}", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "| 2/6 " in err and "| 0/6 " not in err  # went on from the save, not from step 0
    assert [r["loss"] for r in read_metrics(stopped / "metrics.csv")] == \
        [r["loss"] for r in read_metrics(whole / "metrics.csv")]
    _assert_same_weights(whole, stopped)


class _PressedDuringTheFirstStep(CtrlC):
    """Ctrl-C as if pressed during the run's first step: it stops after it (and its save, if one is due)."""

    def __init__(self):
        super().__init__()
        self.requested = True


def _segment(command: str) -> dict:
    """One command's part of a run, as train.loop.RunHistory records it for the card."""
    return {"command": command, "hardware": "CPU", "steps": [0, 3], "seconds": 1.0}


def test_a_resumed_run_counts_the_time_it_trained_before_it_stopped(tmp_path, monkeypatch):
    """The card's wall time is the run's, across its stops: the state's record of the time before is carried on."""
    import train.loop
    from jepa_demo.checkpoint import load_tensors, save_tensors
    from train.__main__ import main

    settings = ["--config", TINY, f"out_dir={tmp_path / 'run'}", "steps=3", "save_every=1"]
    with monkeypatch.context() as patch:
        patch.setattr(train.loop, "CtrlC", _PressedDuringTheFirstStep)
        patch.setattr(train.loop, "describe_hardware", lambda *args: "an H200")  # begun on a GPU, say
        assert main(settings) == 130  # stopped after its first step, saved
    state = tmp_path / "run" / train.loop.STATE_NAME
    tensors, meta = load_tensors(state)
    save_tensors(state, tensors, {**meta, "wall_seconds": 6000.0})  # as if that step had taken 100 minutes
    assert main([*settings, "--resume"]) == 0
    card = (tmp_path / "run" / "README.md").read_text()
    assert re.search(r"\*\*Wall time\*\*: 100\.[0-9] min", card)
    # BUG: the card named only the last command (a bare --resume) and its hardware, for the whole run's time
    assert re.search(r"\*\*Command\*\*: `python -m train [^`]*save_every=1`; resumed at step 1 with `python -m train "
                     r"[^`]*--resume`\n", card), card
    assert re.search(r"100\.[0-9] min \(steps 0-1: [0-9.]+ s on an H200; steps 1-3: [0-9.]+ s on [0-9]+ CPU threads ",
                     card), card
    # BUG: a run under 3 s (the tiny recipe's) was "0.0 min", as if not timed: under a minute, seconds
    assert main(["--config", TINY, f"out_dir={tmp_path / 'short'}", "steps=1"]) == 0
    assert re.search(r"\*\*Wall time\*\*: [0-9]+\.[0-9] s on ", (tmp_path / "short" / "README.md").read_text())


def test_ctrl_c_during_the_last_step_leaves_a_finished_run(tmp_path, monkeypatch, capsys):
    """BUG: the last step's saves and export were written, and then the run stopped anyway: status 130 and 'rerun
    the same command with --resume to continue', for a run with nothing left to do."""
    import train.loop
    from train.__main__ import main

    monkeypatch.setattr(train.loop, "CtrlC", _PressedDuringTheFirstStep)
    assert main(["--config", TINY, f"out_dir={tmp_path / 'run'}", "steps=1"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"checkpoint written to {tmp_path / 'run'}")
    assert main(["--config", TINY, f"out_dir={tmp_path / 'longer'}", "steps=3", "save_every=1"]) == 130  # it stops
    assert load_model(tmp_path / "longer").info()["step"] == 1


@pytest.mark.parametrize("stop, workers", [(signal.SIGINT, 0), (signal.SIGTERM, 0), (signal.SIGTERM, 1)])
def test_ctrl_c_stops_training_in_one_line_and_the_last_save_stands(tmp_path, stop, workers):
    """SIGTERM (`kill`, `timeout`, a scheduler's preemption) too. BUG: it ended the run at once, no line said what
    stands, and a save cut off left its temporary file. With a data worker, the signal goes to every process (a
    Slurm job's end, `timeout`, `systemctl stop`). BUG: the worker died of it, a crash said as out of memory."""
    out = tmp_path / "run"
    # As a terminal's foreground job: a suite started in the background inherits SIGINT ignored (Python then never
    # installs its KeyboardInterrupt handler), which made this test time out in such a run.
    # -X faulthandler: if it does not stop, SIGABRT makes it print where each thread is, for the failure message
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "train", "--config", TINY, f"out_dir={out}",
                             "steps=1000", "save_every=5", f"num_workers={workers}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_step(out / "metrics.csv", 10, proc)  # inside: a run that never gets there must not go on training
        kill_with_descendants(proc.pid, stop)  # as pkill does, to the worker too where there is one
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        lines = [line for line in err.replace("\r", "\n").splitlines() if not line.startswith("train:")]
        pytest.fail(f"still running 60 s after {stop.name}; its stderr, progress bar left out:\n"
                    + "\n".join(lines[-80:]))
    finally:
        proc.kill()  # never left training on a failure
    assert proc.returncode == 130 and "Traceback" not in err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last == (f"interrupted: the last complete save in {out} stands; rerun the same command with --resume to "
                    "continue")
    assert load_model(out).info()["step"] >= 5 and not list(out.glob(".*.tmp"))


def test_a_new_run_stopped_before_replacing_an_earlier_one_does_not_offer_to_resume_it(tmp_path, monkeypatch,
                                                                                          capsys):
    """Ctrl-C while a new run checks its videos, before it replaces the earlier run in its out_dir: it said "rerun the
    same command with --resume", which continues nothing of this run (refused as its settings differ; a finished
    earlier run only exported again)."""
    import train.loop
    from train.__main__ import main

    out = tmp_path / "run"
    step, build = train.loop.train_step, train.loop.build_dataset
    _interrupt_after(monkeypatch, 2)
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2"]) == 130  # saved at step 2 of 4
    capsys.readouterr()

    def pressed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.loop, "build_dataset", pressed)
    earlier = f"nothing of this run was saved; the earlier run's save in {out} is as it was\n"
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2", "lr=0.005"]) == 130
    assert capsys.readouterr().err.endswith(earlier)
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=1"]) == 130  # a setting resume may change
    assert "rerun the same command with --resume" in capsys.readouterr().err
    monkeypatch.setattr(train.loop, "train_step", step)
    monkeypatch.setattr(train.loop, "build_dataset", build)
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2", "--resume"]) == 0  # now finished
    capsys.readouterr()
    monkeypatch.setattr(train.loop, "build_dataset", pressed)
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2"]) == 130
    assert capsys.readouterr().err.endswith(earlier)
    # BUG: a --resume of a finished run's state (one whose export failed: --resume redoes it) stopped before writing
    # called that run "the earlier run" and offered nothing
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "save_every=2", "--resume"]) == 130
    assert capsys.readouterr().err.endswith(f"the last complete save in {out} stands; rerun the same command with "
                                            "--resume to continue\n")


def test_ctrl_c_is_not_lost_when_it_lands_in_a_finaliser(tmp_path):
    """Python raises KeyboardInterrupt wherever SIGINT lands; inside a finaliser (a __del__ or a weakref callback,
    which a training step's tensors and a save's figures run often) it is printed as 'Exception ignored' and lost,
    and the run went on (once in a suite run, this test's sibling above timed out so). Here the signal arrives inside
    a __del__ during step 3: the run must stop after that step, at its save."""
    out = tmp_path / "run"
    script = f"""
import os, signal, sys
import train.loop as loop
from train.__main__ import main

real_step = loop.train_step

class Finaliser:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100_000))  # Python runs the signal's handler in here

def train_step(model, forward, optimizer, batch, step, cfg, runtime):
    if step == 3:
        Finaliser()  # dropped at once: its __del__ runs now
    return real_step(model, forward, optimizer, batch, step, cfg, runtime)

loop.train_step = train_step
sys.exit(main(["--config", {TINY!r}, "out_dir={out}", "steps=40", "save_every=2"]))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.replace("\r", "\n").strip().splitlines()[-1].startswith("interrupted: the last complete save")
    assert load_model(out).info()["step"] == 4  # step 3 finished, and its save (every 2 steps) with it


def _wait_for_step(metrics: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if metrics.is_file() and any(int(r["step"]) >= step for r in read_metrics(metrics)):
                return
        except ValueError:  # a row read while it was being appended
            pass
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_writes_one_checkpoint(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "train",
           "--config", TINY, f"out_dir={out}", "steps=6", "save_every=3", "batch_size=4", "device=cpu"]
    result = run_whole(cmd, timeout=300, cwd=ROOT)  # should it time out, its workers go too
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("checkpoint written to") == 1  # BUG: once per process
    assert load_model(out).info()["step"] == 6
    assert len(read_metrics(out / "metrics.csv")) == 6  # only rank 0 logs
    assert "**Command**: `torchrun --nproc_per_node 2 -m train --config" in (out / "README.md").read_text()
    assert len(list(out.glob("*.safetensors"))) == 2  # one checkpoint + its training state, no per-rank copies
    # The logged loss and spread are the whole batch's: step 0's, recomputed here from each process's share (rank 0's
    # alone had been logged, the curves of a batch half the size the run trains on)
    cfg = load_config(TINY, ["batch_size=4"])
    shares = [_first_step(cfg, rank, world_size=2) for rank in (0, 1)]
    assert not torch.equal(shares[0][1], shares[1][1])  # each process its own clips: else the averages prove nothing
    logged = read_metrics(out / "metrics.csv")[0]
    assert logged["loss"] == pytest.approx(np.mean([loss for loss, _ in shares]), rel=1e-5)
    assert logged["target_std"] == pytest.approx(embedding_std(torch.cat([e for _, e in shares])), rel=1e-4)
    assert logged["clip_std"] == pytest.approx(clip_spread(torch.cat([e for _, e in shares])), rel=1e-4)


def _first_step(cfg: TrainConfig, rank: int, world_size: int) -> tuple[float, torch.Tensor]:
    """Step 0's loss and target embeddings on one process's share of the batch, as train.loop computes them."""
    from jepa_demo.config import PreprocessConfig, model_config_from_preset
    from jepa_demo.masks import mask_to_indices
    from jepa_demo.model import VideoJEPA
    from train.data import WorldBatches
    from train.loop import mask_for_step

    model_cfg = model_config_from_preset(cfg.model, objective=cfg.objective)
    preprocess = PreprocessConfig(img_size=model_cfg.img_size, num_frames=model_cfg.num_frames)
    batch = WorldBatches(preprocess, cfg.batch_size // world_size, cfg.seed, rank, world_size, cfg.max_objects,
                         cfg.detail_prob, cfg.noise_std)[0]
    torch.manual_seed(cfg.seed)
    model = VideoJEPA(model_cfg)
    _, mask = mask_for_step(0, cfg, model_cfg.grid)
    context, target = mask_to_indices(mask, len(batch))
    with torch.no_grad():
        out = model(batch, context, target, sigreg_weight=cfg.sigreg_weight, seed=cfg.seed * 1_000_003)
    return out["loss"].item(), out["embeddings"]


def test_training_on_a_folder_of_videos(tmp_path, capsys, monkeypatch):
    """data=FOLDER: real mp4/gif files in sub-folders, decoded and preprocessed like any user clip."""
    from jepa_demo.video import write_video
    from jepa_demo.world import WorldConfig, render_clip
    from train.__main__ import main
    from train.report import write_model_card

    for i, (label, suffix) in enumerate([("bouncing", ".mp4"), ("bouncing", ".gif"), ("falling", ".mp4")]):
        (tmp_path / "clips" / label).mkdir(parents=True, exist_ok=True)
        clip = render_clip(i, WorldConfig(size=40, num_frames=10))
        write_video(tmp_path / "clips" / label / f"{i}{suffix}", clip.frames)
    (tmp_path / "clips" / "falling" / "notes.mp4").write_text("not a video")  # one broken file among them
    out = tmp_path / "run"
    result = _train("--config", TINY, f"out_dir={out}", f"data={tmp_path / 'clips'}", "steps=3", "save_every=3")
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "clips" / "falling" / "notes.mp4"  # named by its path: another label may hold a notes.mp4
    assert f"leaving out 1 of 4 video files that cannot be read (first: {broken}: not a readable video" in result.stderr
    assert load_model(out).info()["step"] == 3
    # the sub-folders are the files' labels: recorded, and the card says how to probe them
    assert json.loads((out / "train_config.json").read_text())["data_labels"] == {"bouncing": 2, "falling": 1}
    card = (out / "README.md").read_text()
    assert f"3 video files under `{tmp_path / 'clips'}`; its sub-folders label them: bouncing (2), falling (1)" in card
    assert "falling (1) (too few to probe: that needs two labels of at least 4 videos)" in card
    assert "jepa_demo.evaluate --folder" not in card  # it would refuse the folder
    enough = tmp_path / "enough run"  # a run whose labels hold enough videos: its card gives the command
    enough.mkdir()
    (enough / "metrics.csv").write_bytes((out / "metrics.csv").read_bytes())
    record = json.loads((out / "train_config.json").read_text())
    (enough / "train_config.json").write_text(json.dumps({**record, "data_labels": {"bouncing": 4, "falling": 5}}))
    folder_run = load_config(TINY, [f"data={tmp_path / 'clips'}"])
    write_model_card(enough, folder_run, {"dim": 8}, 3, [_segment("python -m train")], 1.0)
    assert f"falling (5). How well the embeddings tell them apart: `python -m jepa_demo.evaluate --folder " \
           f"{tmp_path / 'clips'} --checkpoint '{enough}'`" in (enough / "README.md").read_text()  # BUG: unquoted
    # --resume draws the same batches only from the same files: one added since is refused, by name of the setting
    extra = tmp_path / "clips" / "falling" / "3.mp4"
    write_video(extra, render_clip(3, WorldConfig(size=40, num_frames=10)).frames)
    resume = ["--config", TINY, f"out_dir={out}", f"data={tmp_path / 'clips'}", "steps=3", "save_every=3", "--resume"]
    assert main(resume) == 2
    err = capsys.readouterr().err
    assert "but data_files=4 files, sha256 " in err and "fewer files" not in err  # one more: no file unread
    extra.unlink()
    unreadable = tmp_path / "clips" / "falling" / "2.mp4"
    kept_bytes = unreadable.read_bytes()
    unreadable.write_bytes(b"a copy under way")  # BUG: told to start a new run, though the user changed nothing
    assert main(resume) == 2
    assert "but data_files=2 files, sha256 " in (err := capsys.readouterr().err)
    assert ("fewer files than the run had: if the folder's report above left one out as unreadable, make it "
            "readable again and rerun)") in err
    assert main([*resume[:3], *resume[4:]]) == 2  # the folder run resumed on the synthetic world: no file to read
    assert "but data=world" in (err := capsys.readouterr().err) and "fewer files" not in err
    unreadable.write_bytes(kept_bytes)
    (tmp_path / "clips" / "falling" / "2.mp4").rename(tmp_path / "clips" / "falling" / "2b.mp4")  # as many files
    assert main(resume) == 2
    assert "but data_files=3 files, sha256 " in capsys.readouterr().err
    (tmp_path / "clips" / "falling" / "2b.mp4").rename(tmp_path / "clips" / "falling" / "2.mp4")
    first = tmp_path / "clips" / "bouncing" / "0.mp4"
    kept = first.read_bytes()
    write_video(first, render_clip(7, WorldConfig(size=40, num_frames=12)).frames)  # re-encoded under its name
    assert main(resume) == 2
    assert "but data_sizes=sha256 " in capsys.readouterr().err
    first.write_bytes(kept)
    spelled_otherwise = [f"data={tmp_path / 'clips'}/./" if a.startswith("data=") else a for a in resume]
    assert main(spelled_otherwise) == 0, capsys.readouterr().err  # the same folder (it was refused as another)
    monkeypatch.chdir(tmp_path)  # BUG: and relative to where the run resumes, it was refused as another setting
    assert main([a if not a.startswith("data=") else "data=clips" for a in resume]) == 0, capsys.readouterr().err
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # and back from another folder: the record now says "clips"
    assert main(resume) == 0, capsys.readouterr().err
    copy = shutil.copytree(tmp_path / "clips", tmp_path / "elsewhere" / "copy")  # a copy, the same files
    assert main([a if not a.startswith("data=") else f"data={copy}" for a in resume]) == 0, capsys.readouterr().err
    assert main(resume) == 0, capsys.readouterr().err  # the record names the original again, for what follows
    record = json.loads((out / "train_config.json").read_text())
    for left_out in (("data_sizes", "data_labels"), ("data_files", "data_sizes", "data_labels")):  # older records
        (out / "train_config.json").write_text(json.dumps({k: v for k, v in record.items() if k not in left_out}))
        if "data_files" in left_out:
            write_video(extra, render_clip(3, WorldConfig(size=40, num_frames=10)).frames)
        assert main(resume) == 0, left_out  # not refused on what was not recorded (each run records all again)
    capsys.readouterr()
    result = _train("--config", TINY, f"out_dir={tmp_path / 'run2'}", f"data={tmp_path / 'nothing'}")
    assert result.returncode == 2 and "not a folder" in result.stderr
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "notes.mp4").write_text("not a video")
    assert main(["--config", TINY, f"out_dir={tmp_path / 'run3'}", f"data={only_broken}"]) == 2
    assert f"none of the 1 video files can be read ({only_broken / 'notes.mp4'}: " in capsys.readouterr().err
    assert not (tmp_path / "run3").exists()


def test_an_error_in_a_data_worker_is_one_line(tmp_path, monkeypatch, capsys):
    """torch re-raises a worker's error with the worker's whole traceback in its message."""
    import train.data as data
    from jepa_demo.video import VideoError, write_video
    from train.__main__ import main

    (tmp_path / "clips").mkdir()
    for name in ("a", "b", "c"):
        write_video(tmp_path / "clips" / f"{name}.mp4", np.full((12, 32, 32, 3), 90, np.uint8))

    reads, read_video = [], data.read_video

    def unmounted_after_two_steps(path, **kwargs):  # past the start check, as a drive unmounted mid-run
        reads.append(path)  # in the worker, forked from this process with the patch
        if len(reads) > 2 * 4:  # tiny.yaml: 4 clips a batch
            raise VideoError(f"{path.name}: invalid data found when processing input")
        return read_video(path, **kwargs)

    monkeypatch.setattr(data, "read_video", unmounted_after_two_steps)
    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", f"data={tmp_path / 'clips'}", "num_workers=1", "steps=6",
                 "save_every=1"]) == 1
    err = capsys.readouterr().err
    # BUG: said as a bad setting (status 2), without what stands: the save a --resume continues once the files are back
    clips = re.escape(str(tmp_path / "clips"))
    assert re.fullmatch(rf"error: data: none of the 3 video files can be read any more \(first: {clips}/[abc]\.mp4: "
                        rf"invalid data found when processing input\); the last complete save in {re.escape(str(out))} "
                        r"stands; rerun the same command with --resume to continue", err.splitlines()[-1])
    assert "Traceback" not in err and "DataLoader worker" not in err  # torch's "Caught ValueError in DataLoader ..."


def test_a_data_workers_message_is_found_at_the_end_of_its_traceback():
    from torch._utils import ExceptionWrapper

    from jepa_demo.video import VideoError
    from train.__main__ import own_message

    cases = ((ValueError("data: gone"), "data: gone"), (VideoError("a.mp4: bad\nsee b"), "a.mp4: bad\nsee b"),
             (ValueError("plain: not from a worker"), None))
    for error, message in cases:
        try:
            raise error
        except ValueError:
            wrapped = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 0")
        if message is None:
            assert own_message(error) == str(error)
            continue
        with pytest.raises(ValueError) as raised:
            wrapped.reraise()
        assert "Original Traceback" in str(raised.value) and own_message(raised.value) == message
    from jepa_demo.checkpoint import first_line

    # the tools' one line of it: an empty message gives the error's name (.strip().splitlines()[0] raised IndexError)
    assert first_line(raised.value, message=own_message(raised.value)) == "a.mp4: bad"
    assert first_line(ValueError(""), message=own_message(ValueError(""))) == "ValueError"


def test_tensorboard_hides_what_a_resumed_run_redoes_and_gets_every_event(tmp_path, monkeypatch):
    """SummaryWriter's purge_step: events from the step a run starts at on are dropped, as metrics.csv's rows are.
    And the writer is closed when a run ends, finished or not: it holds events in memory for up to two minutes."""
    import types

    from train.__main__ import main
    from train.loop import MetricsLog

    made = []

    class Writer:
        def __init__(self, folder, purge_step):
            self.purge_step, self.steps, self.closed = purge_step, [], False
            made.append(self)

        def add_scalar(self, key, value, step):
            self.steps.append(step)

        def close(self):
            self.closed = True

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    MetricsLog(tmp_path / "metrics.csv", start_step=0)
    MetricsLog(tmp_path / "metrics.csv", start_step=30)
    assert [writer.purge_step for writer in made] == [0, 30]
    out = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={out}", "steps=4", "log_every=1"]) == 0
    assert made[-1].closed and sorted(set(made[-1].steps)) == [0, 1, 2, 3]
    _interrupt_after(monkeypatch, 2)
    assert main(["--config", TINY, f"out_dir={tmp_path / 'stopped'}", "steps=4", "log_every=1"]) == 130
    assert made[-1].closed and sorted(set(made[-1].steps)) == [0, 1]


def test_blank_data_and_out_of_range_seeds_are_refused(tmp_path, capsys):
    from train.__main__ import main

    for setting, message in (("data=", "data must be world or name a folder of video files"),
                             ("seed=4294967296", "seed must be between 0 and 2**32 - 1, got 4294967296")):
        assert main(["--config", TINY, setting, f"out_dir={tmp_path / 'run'}"]) == 2
        assert capsys.readouterr().err.strip() == f"error: {message}"


def test_a_card_names_folders_that_are_not_utf8(tmp_path):
    """BUG: a Latin-1 folder name (surrogate escapes in Python) made every save fail writing the card, so a run on
    such a folder never finished (each --resume failed again at its next save)."""
    from jepa_demo.training_metrics import METRIC_FIELDS
    from train.report import write_model_card

    data = os.fsdecode(bytes(tmp_path / "clips") + b"/caf\xe9")  # as os.walk and sys.argv give it
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text(",".join(METRIC_FIELDS) + "\n")
    record = {"data_files": "9 files, sha256 0", "data_labels": {os.fsdecode(b"caf\xe9"): 4, "tea": 5}}
    (folder / "train_config.json").write_text(json.dumps(record))
    write_model_card(folder, load_config(TINY, [f"data={data}"]), {"dim": 8}, 3,
                     [_segment(f"python -m train data={data}")], 1.0)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "/clips/caf\\udce9`; its sub-folders label them: caf\\udce9 (4), tea (5)" in card
    assert f"- **Command**: `python -m train data={tmp_path}/clips/caf\\udce9`" in card


def test_folder_batches_draw_other_stretches_of_a_file_and_repeat_at_the_same_step(tmp_path):
    from jepa_demo.config import PreprocessConfig
    from jepa_demo.video import write_video
    from train.data import FolderBatches

    video = np.zeros((40, 48, 64, 3), np.uint8)
    for t in range(40):
        video[t, :, t:t + 8] = 255  # a bar sliding right: every frame differs
    write_video(tmp_path / "bar.mp4", video)
    batches = FolderBatches(str(tmp_path), PreprocessConfig(img_size=32, num_frames=4), batch_size=8, seed=0, rank=0)
    batch = batches[0]
    assert batch.shape == (8, 3, 4, 32, 32) and torch.equal(batch, batches[0])
    assert len({clip.numpy().tobytes() for clip in batch}) == 8  # one file, eight different clips of it
    other_rank = FolderBatches(str(tmp_path), PreprocessConfig(img_size=32, num_frames=4), batch_size=8, seed=0, rank=1)
    assert not torch.equal(other_rank[0], batch)  # under torchrun each process trains on its own clips


def test_a_file_name_holding_a_line_break_keeps_the_data_lines_one_line_each(tmp_path, capsys):
    """BUG: the 'leaving out' line (and the others naming files) printed a name's newline as it is, over two lines."""
    from jepa_demo.video import write_video
    from train.data import readable_videos

    write_video(tmp_path / "good.mp4", np.zeros((8, 32, 32, 3), np.uint8))
    (tmp_path / "bad\nname.mp4").write_bytes(b"not a video")
    assert readable_videos(str(tmp_path)) == [tmp_path / "good.mp4"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad\\nname.mp4" in err
    (tmp_path / "good.mp4").unlink()
    with pytest.raises(ValueError, match="none of the 1 video files") as refused:
        readable_videos(str(tmp_path))
    assert "\n" not in str(refused.value)


def test_a_still_picture_in_the_data_folder_is_named(tmp_path, capsys):
    """BUG: a one-frame GIF (a still picture) was trained on as clips that never move, without a word."""
    from jepa_demo.video import write_video
    from train.data import readable_videos

    write_video(tmp_path / "moving.mp4", np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), np.uint8))
    write_video(tmp_path / "still.gif", np.zeros((1, 32, 32, 3), np.uint8))
    assert readable_videos(str(tmp_path)) == [tmp_path / "moving.mp4", tmp_path / "still.gif"]
    assert capsys.readouterr().err == (f"note: data={tmp_path}: 1 of 2 video files is a still picture (a single "
                                       f"frame), trained on as clips that never move (first: {tmp_path / 'still.gif'})"
                                       "\n")


def test_folder_batches_label_the_sub_folders_beside_files_in_the_root(tmp_path):
    """BUG: a file in the root (label None) beside a sub-folder's ('cats') failed the sort of the labels, a
    TypeError traceback at the start of training."""
    from jepa_demo.config import PreprocessConfig
    from jepa_demo.video import write_video
    from train.data import FolderBatches

    (tmp_path / "cats").mkdir()
    for path in (tmp_path / "intro.mp4", tmp_path / "cats" / "a.mp4", tmp_path / "cats" / "b.mp4"):
        write_video(path, np.zeros((8, 32, 32, 3), np.uint8))
    batches = FolderBatches(str(tmp_path), PreprocessConfig(img_size=32, num_frames=4), batch_size=2, seed=0, rank=0)
    assert batches.label_counts == {"cats": 2} and len(batches.files) == 3


def test_folder_batches_skip_a_file_that_fails_past_the_start_check(tmp_path, monkeypatch, capsys):
    """The start check decodes each file's first frame only; a stream damaged further in must not stop the run, and
    the batches stay a function of the step: a file damaged near its end still gives its earlier stretches, to this
    process and to a resumed one alike."""
    import train.data as data
    from jepa_demo.config import PreprocessConfig
    from jepa_demo.video import VideoError, write_video

    for name, shade in (("a.mp4", 60), ("b.mp4", 200)):
        write_video(tmp_path / name, np.full((12, 32, 32, 3), shade, np.uint8))

    def batches():
        return data.FolderBatches(str(tmp_path), PreprocessConfig(img_size=32, num_frames=4), batch_size=8, seed=0,
                                  rank=0)
    read = data.read_video

    def damaged_end_of_a(path, span, **kwargs):
        if path.name == "a.mp4" and span[1] > 0.9:
            raise VideoError("a.mp4: invalid data found when processing input")
        return read(path, span=span, **kwargs)

    monkeypatch.setattr(data, "read_video", damaged_end_of_a)
    running = batches()
    seen = [running[step] for step in range(6)]
    assert all(batch.shape == (8, 3, 4, 32, 32) for batch in seen)
    shades = {round(float(clip.mean()), 3) for batch in seen for clip in batch}
    assert len(shades) == 2  # a's readable stretches are still drawn
    err = capsys.readouterr().err  # once, however often it fails
    assert err.count("skipping") == 1 and f"skipping {tmp_path / 'a.mp4'} where it cannot be read" in err
    assert torch.equal(batches()[5], seen[5]) and torch.equal(running[0], seen[0])  # as a resumed run draws them

    def unmounted(path, span, **kwargs):
        raise VideoError(f"{path.name}: file not found")

    monkeypatch.setattr(data, "read_video", unmounted)
    capsys.readouterr()  # the lines of the batches above
    with pytest.raises(data.DataLost, match=r"^data: none of the 2 video files can be read any more \(first: "
                                             rf"{re.escape(str(tmp_path))}/[ab]\.mp4: file not found\)$"):
        batches()[0]
    # BUG: a line for every file of a lost drive before that error (5000 lines for 5000 clips)
    assert "skipping" not in capsys.readouterr().err


def test_a_resume_from_a_copy_of_the_data_stopped_before_its_first_save_offers_to_resume_again(tmp_path, monkeypatch,
                                                                                                 capsys):
    """BUG: the save's own record of the settings holds no data files, so the copy was taken for another folder:
    'nothing of this run was saved; the earlier run's save is as it was', though that --resume is accepted."""
    from jepa_demo.video import write_video
    from jepa_demo.world import WorldConfig, render_clip
    from train.__main__ import main

    for i in range(2):
        (tmp_path / "clips").mkdir(exist_ok=True)
        write_video(tmp_path / "clips" / f"{i}.mp4", render_clip(i, WorldConfig(size=40, num_frames=10)).frames)
    copy = shutil.copytree(tmp_path / "clips", tmp_path / "copy")
    out = tmp_path / "run"
    _interrupt_after(monkeypatch, 2)
    assert main(["--config", TINY, f"out_dir={out}", f"data={tmp_path / 'clips'}", "steps=4", "save_every=2"]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    _interrupt_after(monkeypatch, 0)  # stopped before its first step, and so before any save
    assert main(["--config", TINY, f"out_dir={out}", f"data={copy}", "steps=4", "save_every=2", "--resume"]) == 130
    assert capsys.readouterr().err.endswith(f"the last complete save in {out} stands; rerun the same command with "
                                            "--resume to continue\n")


def test_a_label_folder_lost_mid_run_spreads_its_share_and_is_said_in_a_few_lines(tmp_path, monkeypatch, capsys):
    """BUG: a failed pick fell back to the next file in sorted order: a label's folder lost mid-run (its linked drive
    unmounted) gave all its share to the one file after it, 5 times its own here; each lost file had its own line."""
    import train.data as data
    from jepa_demo.config import PreprocessConfig
    from jepa_demo.video import VideoError, write_video

    for name, shade in (("keep/x.mp4", 60), ("keep/y.mp4", 200), *((f"lost/{i}.mp4", 120) for i in range(8))):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        write_video(tmp_path / name, np.full((8, 32, 32, 3), shade, np.uint8))
    batches = data.FolderBatches(str(tmp_path), PreprocessConfig(img_size=32, num_frames=4), batch_size=10, seed=0,
                                 rank=0)
    read = data.read_video

    def lost(path, **kwargs):
        if path.parent.name == "lost":
            raise VideoError(f"{path.name}: file not found")
        return read(path, **kwargs)

    monkeypatch.setattr(data, "read_video", lost)
    clips = torch.cat([batches[step] for step in range(20)])
    shades = torch.tensor([float(clip.mean()) for clip in clips])
    from_x = int((shades < (shades.min() + shades.max()) / 2).sum())  # x is the darker of the two that read
    assert 0.35 < from_x / len(clips) < 0.65  # x's share and y's alike, each about half
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[-1].endswith("; 8 files skipped so far")  # the 1st, 2nd, 4th and 8th
