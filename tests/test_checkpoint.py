import importlib
import json
import os
import pickle
import re
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from jepa_demo.checkpoint import (
    CheckpointError,
    atomic_write,
    build_model,
    clean_state_dict,
    resolve_checkpoint,
    save_checkpoint,
)
from jepa_demo.config import model_config_from_preset
from jepa_demo.inference import load_model
from jepa_demo.model import VideoJEPA
from jepa_demo.training_metrics import METRIC_FIELDS, read_metrics


@pytest.fixture
def saved(tmp_path, tiny_model, tiny_preprocess):
    folder = tmp_path / "ckpt"
    save_checkpoint(tiny_model, folder, tiny_preprocess, step=7, extra={"train": {"lr": 0.1}})
    return folder


def test_round_trip_is_exact(saved, tiny_model, tiny_preprocess):
    model, preprocess, config = build_model(saved)
    assert preprocess == tiny_preprocess and model.cfg == tiny_model.cfg
    assert config["step"] == 7 and config["train"] == {"lr": 0.1}
    for (name, a), (_, b) in zip(tiny_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name
    assert not any(p.suffix == ".tmp" for p in saved.iterdir())


def test_saved_files_get_the_usual_permissions(tmp_path, tiny_model, tiny_preprocess):
    """Atomic saves go through a temporary file; the result must still be readable by others (umask 022)."""
    old = os.umask(0o022)
    try:
        save_checkpoint(tiny_model, tmp_path / "ckpt", tiny_preprocess, step=1)
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ckpt").iterdir()} == {0o644}


def test_atomic_write_leaves_the_umask_alone(tmp_path, monkeypatch):
    """The umask is the whole process's: a writer that sets it, even to put it back, can make another thread's files
    world-writable (the app writes thumbnails from two request threads at once)."""
    def no_umask(mask):
        raise AssertionError("atomic_write set the umask")

    monkeypatch.setattr(os, "umask", no_umask)
    atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("a"))
    assert (tmp_path / "a.txt").read_text() == "a" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),  # a failed write or close: no name
                                   OSError(28, "No space left on device", "TMP")])  # one that names the temporary
def test_a_failed_atomic_write_names_the_file_not_its_temporary_one(tmp_path, error):
    def fails(tmp):
        if error.filename == "TMP":
            error.filename = tmp
        raise error

    with pytest.raises(OSError) as raised:
        atomic_write(tmp_path / "config.json", fails)
    assert raised.value.filename == str(tmp_path / "config.json") and not list(tmp_path.iterdir())


def test_atomic_write_takes_any_name_the_file_system_takes(tmp_path):
    """BUG: the temporary name added 18 bytes, so a name of 238 to 255 bytes failed ('File name too long') only
    after the work that made the file (an evaluation's --json, checked writable at the start)."""
    for name in ("a" * 255, "é" * 125 + ".json"):  # 255 bytes each; the second's cut would split a character
        path = tmp_path / name
        atomic_write(path, lambda tmp: Path(tmp).write_text("whole"))
        assert path.read_text() == "whole" and os.listdir(tmp_path) == [path.name]
        path.unlink()


def test_atomic_write_writes_a_pipe_as_a_stream_and_replaces_a_link_not_what_it_names(tmp_path):
    """BUG: the final rename replaced whatever the name was: `--json /dev/null` as root turned the machine's
    /dev/null into a JSON file (every process's writes to it then failed), and a named pipe became a file. A link is
    replaced, as before: the file it names may be shared (a Hugging Face cache's blob)."""
    import threading

    from jepa_demo.checkpoint import write_json

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    # a daemon: should the pipe be replaced, its reader waits for a writer that never comes
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()), daemon=True)
    reader.start()
    write_json(pipe, {"a": 1})
    reader.join(timeout=30)
    assert received == ['{\n  "a": 1\n}\n'] and stat.S_ISFIFO(os.stat(pipe).st_mode)
    record, link = tmp_path / "records" / "r.json", tmp_path / "r.json"
    record.parent.mkdir()
    record.write_text("{}")
    link.symlink_to(record)
    write_json(link, {"b": 2})
    assert not link.is_symlink() and json.loads(link.read_text()) == {"b": 2} and record.read_text() == "{}"
    import socket  # neither a stream nor a file: refused before the work, never replaced by a file

    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "socket"))
        with pytest.raises(OSError, match="not a regular file"):
            write_json(tmp_path / "socket", {"c": 3})
        assert stat.S_ISSOCK(os.stat(tmp_path / "socket").st_mode)


def test_dev_stdout_is_a_stream_to_a_pipe_and_refused_when_it_is_a_file(tmp_path):
    """BUG: with the output redirected to a file, /dev/stdout was taken for a file to replace (as root, the machine's
    /dev/stdout became a JSON file), then for a stream, reopened and emptied under the tables printed after it.
    Only the check is run here: a regression must not get to write in /dev."""
    script = ("import sys\nfrom jepa_demo.checkpoint import cannot_replace, is_stream\n"
              "print(is_stream('/dev/stdout'), cannot_replace('/dev/stdout'), file=sys.stderr)\n")
    with open(tmp_path / "out.json", "w") as redirected:
        to_file = subprocess.run([sys.executable, "-c", script], stdout=redirected, stderr=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parent.parent, timeout=120)
    to_pipe = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert to_file.stderr == ("False in /dev and not a device or pipe (output redirected to a file? give that file's "
                              "name)\n") and to_pipe.stderr == "True None\n"


def test_a_failed_atomic_write_keeps_a_message_only_error_as_it_is(tmp_path):
    """An OSError of a message alone (video._check_written's 'ffmpeg wrote 0 of 16 frames') given a file name would
    print as '[Errno None] None: PATH'."""
    def fails(tmp):
        raise OSError("ffmpeg wrote 0 of 16 frames (is the disk full?)")

    with pytest.raises(OSError, match=r"^ffmpeg wrote 0 of 16 frames \(is the disk full\?\)$"):
        atomic_write(tmp_path / "clip.gif", fails)


@pytest.mark.parametrize("objective", ["pixel", "jepa-sigreg"])
def test_every_objective_round_trips(tmp_path, tiny_preprocess, objective):
    model = VideoJEPA(model_config_from_preset("tiny", objective=objective))
    save_checkpoint(model, tmp_path / objective, tiny_preprocess, step=3)
    loaded, _, config = build_model(tmp_path / objective)
    assert loaded.cfg.objective == objective == config["model"]["objective"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_load_model_returns_inference_object(saved):
    model = load_model(saved)
    assert model.info()["step"] == 7


def test_step_is_the_weights_own_when_a_save_stopped_before_its_config(saved, tiny_model, tiny_preprocess):
    """A save renames the weights into place, then the config: a run killed between the two leaves step 7's config
    beside step 8's weights, and the step reported must be the one of the weights that were loaded."""
    config_before = (saved / "config.json").read_bytes()
    save_checkpoint(tiny_model, saved, tiny_preprocess, step=8)
    (saved / "config.json").write_bytes(config_before)
    assert json.loads(config_before)["step"] == 7
    assert build_model(saved)[2]["step"] == 8 and load_model(saved).info()["step"] == 8


@pytest.mark.parametrize("step", ["\u00b2", "9" * 5000, "-3", ""])
def test_a_weights_step_that_is_no_count_leaves_the_configs(saved, step):
    """Hand-made or hostile metadata: "²" passes str.isdigit() but not int(), and int() refuses more than 4300
    digits; either escaped as a bare ValueError. The config's step stands."""
    from safetensors.torch import load_file, save_file

    save_file(load_file(saved / "model.safetensors"), saved / "model.safetensors", metadata={"step": step})
    assert build_model(saved)[2]["step"] == 7


def test_prefixes_from_ddp_and_compile_are_stripped():
    state = {"module.a.weight": 1, "_orig_mod.b": 2, "module._orig_mod.c.bias": 3, "d": 4}
    assert clean_state_dict(state) == {"a.weight": 1, "b": 2, "c.bias": 3, "d": 4}
    # BUG: two names of one weight: the one read last replaced the other without a word
    with pytest.raises(ValueError, match=r"^a.weight and module.a.weight are the same weight, a.weight$"):
        clean_state_dict({"a.weight": 1, "module.a.weight": 2})


def test_missing_files_are_named(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        build_model(saved)
    (saved / "model.safetensors").mkdir()  # BUG: a folder (or a pipe) of the name was called missing too
    with pytest.raises(CheckpointError, match=r"model.safetensors: not a regular file \(every checkpoint folder"):
        build_model(saved)
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        build_model(saved)
    os.mkfifo(saved / "config.json")
    with pytest.raises(CheckpointError, match="config.json: not a regular file"):
        build_model(saved)


def test_corrupt_weights_are_named_before_the_model_is_allocated(saved, monkeypatch):
    import jepa_demo.checkpoint as checkpoint

    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    monkeypatch.setattr(checkpoint, "VideoJEPA", lambda cfg: pytest.fail("allocated for a file it cannot read"))
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        build_model(saved)


def test_integer_weights_are_named_not_cast(saved):
    """BUG: load_state_dict cast a tensor of integers of the right shape into the weights without a word."""
    from safetensors.torch import load_file, save_file

    path = saved / "model.safetensors"
    tensors = load_file(path)
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].round().to(torch.int32)
    save_file(tensors, path, metadata={"step": "7"})
    with pytest.raises(CheckpointError, match=f"model.safetensors: {key} holds torch.int32 values, not floating"):
        build_model(saved)


def test_weights_that_are_not_finite_are_named(saved):
    """Training never saves a non-finite update, so NaN or inf in a file means damage: refused by name, not loaded
    to answer NaN for every clip."""
    from safetensors.torch import load_file, save_file

    path = saved / "model.safetensors"
    tensors = load_file(path)
    key = sorted(tensors)[-1]
    tensors[key].view(-1)[0] = float("inf")
    save_file(tensors, path, metadata={"step": "7"})
    with pytest.raises(CheckpointError, match=f"model.safetensors: {re.escape(key)} holds NaN or infinite values"):
        build_model(saved)
    # BUG: a float64 value beyond float32's range is finite in the file, and became inf in the model unchecked
    tensors[key] = tensors[key].double()
    tensors[key].view(-1)[0] = 1e300
    save_file(tensors, path, metadata={"step": "7"})
    with pytest.raises(CheckpointError, match=f"model.safetensors: {re.escape(key)} holds NaN or infinite values"):
        build_model(saved)


def test_pickle_disguised_as_checkpoint_is_never_unpickled(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (saved / "model.safetensors").write_bytes(pickle.dumps({"weights": Exploit()}))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        build_model(saved)
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    ({"depth": 3}, r"the file lacks 24 of its weights \(context_encoder.blocks.2.norm1.weight, .+, \.\.\.\)$"),
    ({"depth": 1}, r"the file holds 24 weights it has no place for \(context_encoder.blocks.1.attn.proj.bias, .+\)$"),
    ({"dim": 64, "heads": 4}, r"context_encoder.patch_embed.weight is \(32, 3, 2, 8, 8\) in the file, "
                              r"\(64, 3, 2, 8, 8\) in the model it makes$")])
def test_weights_that_do_not_match_the_config_are_refused_before_the_model_is_built(saved, change, message,
                                                                                    monkeypatch):
    """BUG: the model config.json describes was built, weights and all, before its shapes were compared with the
    file's: one 4096 wide took gigabytes (or the process) to be refused."""
    import jepa_demo.checkpoint as checkpoint_module

    config = json.loads((saved / "config.json").read_text())
    config["model"].update(change)
    (saved / "config.json").write_text(json.dumps(config))
    built, real = [], checkpoint_module.VideoJEPA
    monkeypatch.setattr(checkpoint_module, "VideoJEPA", lambda cfg: built.append(torch.get_default_device().type)
                        or real(cfg))
    reads, read = [], checkpoint_module.read_weights
    monkeypatch.setattr(checkpoint_module, "read_weights", lambda folder, contents="tensors": reads.append(contents)
                        or read(folder, contents))
    with pytest.raises(CheckpointError, match=r"model.safetensors: weights do not match config.json: " + message):
        build_model(saved)
    assert built == ["meta"] and reads == ["shapes"]  # a model without memory, and the file's header alone


def test_weights_too_large_to_map_are_a_checkpoint_error(saved, monkeypatch):
    """BUG: a 6 GB file where memory is short: torch's 'unable to mmap' RuntimeError, as a traceback."""
    import jepa_demo.checkpoint as checkpoint_module

    def unmappable(*args, **kwargs):
        raise RuntimeError("unable to mmap 6000000144 bytes from file: Cannot allocate memory (12)")

    monkeypatch.setattr(checkpoint_module, "safe_open", unmappable)
    with pytest.raises(CheckpointError, match=r"model.safetensors: cannot be read into memory \(unable to mmap 6"):
        build_model(saved)


@pytest.mark.parametrize("section, change, message", [
    ("preprocess", {"std": [0.2, float("nan"), 0.2]}, "std finite and positive"),
    ("preprocess", {"mean": [float("inf"), 0.4, 0.4]}, "mean must be finite"),
    # finite in Python, not in float32, where preprocessing normalises: every pixel came out inf, blamed on weights
    ("preprocess", {"std": [0.2, 1e-50, 0.2]}, r"std within float32's range"),
    ("preprocess", {"mean": [1e39, 0.4, 0.4], "std": [1e30, 0.2, 0.2]}, r"std within float32's range"),
    ("preprocess", {"std": [0.2, 1e39, 0.2]}, r"std within float32's range"),  # every pixel 0 in float32
    ("preprocess", {"mean": [None, 0.4, 0.4]}, "must be numbers"),
    ("train", None, "\"train\" must be an object"),
    ("train", {"future_steps": "2"}, "train.future_steps must be an integer between 1 and 1"),
    ("train", {"future_steps": 2}, "train.future_steps must be an integer between 1 and 1 .the model sees 2")])
def test_preprocessing_and_training_records_are_checked(saved, section, change, message):
    config = json.loads((saved / "config.json").read_text())
    config[section] = None if change is None else {**config.get(section, {}), **change}
    (saved / "config.json").write_text(json.dumps(config))  # json writes NaN and Infinity, and reads them back
    with pytest.raises(CheckpointError, match=message):
        build_model(saved)


@pytest.mark.parametrize("change, message", [
    ({"dim": 10**7}, "dim must be between"),
    ({"depth": "12"}, "depth must be a number"),
    ({"layers": 4}, "unknown keys"),
    ({"patch_size": 7}, "multiple of patch_size"),
    ({"objective": "diffusion"}, "objective must be one of"),
    ({"objective": 3}, "objective must be a string"),
    ({"dim": 4096, "depth": 64, "heads": 64}, "billion parameters, more than the limit"),  # each in range, not all
    ({"img_size": 1024, "patch_size": 1}, "tokens per clip is more than the limit"),
    # 8 tokens of 64 frames x 256 x 256 pixels: 103 billion weights in the two tubelet embeddings, one block each
    ({"img_size": 512, "patch_size": 256, "num_frames": 128, "tubelet": 64, "dim": 4096, "heads": 64, "depth": 1,
      "pred_dim": 8, "pred_heads": 1}, "billion parameters, more than the limit"),
    ({"patch_size": 32}, "the token grid is 2 x 1 x 1"),
    ({"mlp_ratio": 10**400}, "model: int too large to convert to float"),
    ({"mlp_ratio": [4]}, "mlp_ratio"),
])
def test_hostile_or_wrong_config_values_are_refused_before_allocation(saved, change, message):
    config = json.loads((saved / "config.json").read_text())
    config["model"].update(change)
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        build_model(saved)


def test_a_model_smaller_than_the_smallest_synthetic_world_is_refused(tmp_path):
    """BUG: 8 px models loaded, and the app and the CLI's neighbours then failed building their gallery, on "size must
    be between 16 and 1024 pixels": the world's size, which a user reads as their clip's."""
    from jepa_demo.config import PreprocessConfig

    cfg = model_config_from_preset("tiny", img_size=16, patch_size=4)
    object.__setattr__(cfg, "img_size", 8)  # as a config.json written by hand, or by a version that allowed it
    save_checkpoint(VideoJEPA(cfg), tmp_path / "small", PreprocessConfig(img_size=8, num_frames=cfg.num_frames), step=1)
    with pytest.raises(CheckpointError, match="img_size must be between 16 and 1024, got 8"):
        build_model(tmp_path / "small")


@pytest.mark.parametrize("key, value", [("img_size", 48), ("num_frames", 8)])
def test_preprocessing_that_does_not_fit_the_model_is_refused(saved, key, value):
    config = json.loads((saved / "config.json").read_text())
    config["preprocess"][key] = value
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="\"preprocess\" makes clips of .* but the model takes 4 frames of 32 px"):
        build_model(saved)


def test_not_json_and_not_ours(saved):
    (saved / "config.json").write_text("{nope")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        build_model(saved)
    for hostile in ("[" * 100_000, "1" * 5000):  # nested past the recursion limit; past Python's 4300 digits
        (saved / "config.json").write_text(hostile)
        with pytest.raises(CheckpointError, match=r"config.json: not a config this reader takes \((Recursion|Value)"):
            build_model(saved)
    (saved / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not a jepa-lens checkpoint"):
        build_model(saved)


def test_missing_folder_and_unknown_hub_id_fail_fast(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        resolve_checkpoint(tmp_path / "nothing-here")
    for not_a_repo_id in ("runs/lr3e-4--bs32", "out/ckpt-", "out/run.git"):  # the Hub's validator refuses these
        with pytest.raises(CheckpointError, match="no checkpoint folder"):
            resolve_checkpoint(not_a_repo_id)
    with pytest.raises(CheckpointError, match="cannot be read .File name too long"):
        resolve_checkpoint(tmp_path / ("x" * 300))
    with pytest.raises(CheckpointError, match="^someone/not-a-real-model: no checkpoint folder there, and as a Hub "
                                              "repo id: not in the local Hub cache"):
        resolve_checkpoint("someone/not-a-real-model")


def test_a_mistyped_local_folder_is_not_reported_as_a_hub_model_only(tmp_path, monkeypatch):
    """`--checkpoint checkpoints/pixel_baseline` (for pixel-baseline) is a valid Hub id as well: say the folder is
    missing first, where the Hub's answer alone read as if a Hub model had been asked for."""
    (tmp_path / "checkpoints").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"^checkpoints/pixel_baseline: no checkpoint folder there, and as a "
                                              r"Hub repo id: not in the local Hub cache"):
        resolve_checkpoint("checkpoints/pixel_baseline")
    # another refusal of the Hub's (a failed download), for a name whose folder exists: local first too
    import jepa_demo.checkpoint as checkpoint_module

    def download_failed(repo_id):
        raise CheckpointError(f"{repo_id}: download failed (ConnectError: refused)")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module, "_download_from_hub", download_failed)
        with pytest.raises(CheckpointError, match=r"^checkpoints/pixel_baseline: no checkpoint folder there, and as a "
                                                  r"Hub repo id: download failed \(ConnectError: refused\)$"):
            resolve_checkpoint("checkpoints/pixel_baseline")
        with pytest.raises(CheckpointError, match=r"^someone/model: download failed"):  # no such folder: the Hub's
            resolve_checkpoint("someone/model")
    # BUG: named from another working folder (no checkpoints/ here), it read as a Hub model only
    monkeypatch.chdir(tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match=r"^checkpoints/default: no checkpoint folder there, and as a "
                                              r"Hub repo id: not in the local Hub cache"):
        resolve_checkpoint("checkpoints/default")


COMMIT = "0" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty local Hub cache, where huggingface_hub looks (offline, it answers from there alone)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """`repo_id` at commit COMMIT, laid out in the cache exactly as a download leaves it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    for name, data in files.items():
        (repo / "snapshots" / COMMIT / name).write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture
def hub_requests(monkeypatch):
    """What is asked of the Hub client, in order: ("file", name) and ("snapshot", revision, allow_patterns); the
    calls go through to the real functions."""
    import huggingface_hub

    requests = []
    download_file, download_snapshot = huggingface_hub.hf_hub_download, huggingface_hub.snapshot_download

    def file(repo_id, filename, **kwargs):
        requests.append(("file", filename))
        return download_file(repo_id, filename, **kwargs)

    def snapshot(repo_id, **kwargs):
        requests.append(("snapshot", kwargs.get("revision"), kwargs.get("allow_patterns")))
        return download_snapshot(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", file)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    return requests


def test_atomic_write_puts_the_file_on_disk_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    """Else a power cut soon after the rename can leave an empty file under the real name, or the old one back."""
    import jepa_demo.checkpoint as checkpoint

    done, flush, replace = [], checkpoint.flush_to_disk, os.replace
    monkeypatch.setattr(checkpoint, "flush_to_disk", lambda path: done.append(("flush", Path(path))) or flush(path))
    monkeypatch.setattr(checkpoint.os, "replace", lambda a, b: done.append(("replace", Path(b))) or replace(a, b))
    target = tmp_path / "model.json"
    checkpoint.atomic_write(target, lambda tmp: Path(tmp).write_text("{}"))
    assert [step for step, _ in done] == ["flush", "replace", "flush"]
    assert done[0][1].parent == tmp_path and done[0][1] != target and done[1:] == [("replace", target),
                                                                                 ("flush", tmp_path)]


def test_hub_repo_id_loads_from_the_local_hub_cache(saved, hub_cache, hub_requests):
    """A repo id resolves through huggingface_hub's cache exactly as after a download (offline): its config.json
    first, then our files of the commit that config came from, not V-JEPA 2's shards or processor files."""
    _cache_repo(hub_cache, "someone/tiny-jepa", {name: (saved / name).read_bytes()
                                                  for name in ("config.json", "model.safetensors")})
    model = load_model("someone/tiny-jepa")
    assert model.info()["step"] == 7 and model.folder.name == COMMIT
    (_, fetched), (_, revision, patterns) = hub_requests
    assert fetched == "config.json" and revision == COMMIT
    assert "model.safetensors" in patterns and "model-*.safetensors" not in patterns
    # what a push uploads besides the weights, so that a pulled checkpoint starts as fast (offline, the cache answers
    # whatever is asked: a pull of the weights alone passed every other test)
    assert {"gallery-*.npz", "threshold-*.json", "README.md", "metrics.csv", "training_curves.png"} <= set(patterns)


def test_a_hub_download_without_weights_says_why_not_blame_a_missing_file(saved, hub_cache):
    """BUG: a snapshot holding config.json alone (a download that failed before the Hub listed the files: offline, the
    client hands the folder back as it is) was reported as 'model.safetensors: missing (every checkpoint folder needs
    model.safetensors)', blaming the checkpoint."""
    _cache_repo(hub_cache, "someone/tiny-jepa", {"config.json": (saved / "config.json").read_bytes()})
    with pytest.raises(CheckpointError, match=r"^someone/tiny-jepa: no safetensors weights came with its config.json: "
                                              r"the repo has none .*, or the download was cut short \(run it again "
                                              r"online\)$"):
        load_model("someone/tiny-jepa")


@pytest.mark.parametrize("config, message", [
    ({"model_type": "qwen2"}, "not a jepa-lens checkpoint config"),
    ({"model_type": "vjepa2", "pred_mlp_ratio": 2000}, r"pred_mlp_ratio must be a number in \[0.5, 16\]"),
    ({"format": "jepa-lens", "format_version": 1, "model": {"dim": 10**7}}, "model: dim must be between")])
def test_a_hub_repo_whose_config_is_refused_never_has_its_weights_requested(hub_cache, hub_requests, config,
                                                                              message):
    """BUG: every Hub id was fetched with its weights (model.safetensors and model-*.safetensors match nearly every
    transformers repo) and only then found not to be ours: `--checkpoint Qwen/Qwen2.5-7B` downloaded ~15 GB."""
    _cache_repo(hub_cache, "Qwen/Qwen2.5-7B", {"config.json": json.dumps(config).encode(),
                                              "model.safetensors": b"weights never to be fetched"})
    with pytest.raises(CheckpointError, match=rf"/{COMMIT}/config.json: .*{message}"):
        build_model("Qwen/Qwen2.5-7B")
    assert hub_requests == [("file", "config.json")]


@pytest.mark.parametrize("error, message", [
    # The Hub answers 404 for its config.json: a repo that is no checkpoint, not a download to retry
    ("EntryNotFoundError", r"no config.json in this Hub repo \(every checkpoint folder needs config.json\)$"),
    # BUG: a gated repo (GatedRepoError is a RepositoryNotFoundError) was called missing, not behind its terms
    ("GatedRepoError", r"a gated model on the Hugging Face Hub: accept its terms on its page, then log in"),
    # it may have meant a local folder, named from another working folder
    ("RepositoryNotFoundError", r"no checkpoint folder there, and as a Hub repo id: no such model on the Hugging Face "
                                r"Hub \(or it is private\)$"),
    # BUG: a Hub error's message runs over several lines (status, blank line, the server's words), and so did ours
    ("HfHubHTTPError", r"download failed \(HfHubHTTPError: 4xx Client Error for url: .*config.json.\)$")])
def test_the_hubs_refusals_are_named_as_such(monkeypatch, error, message):
    import huggingface_hub
    import huggingface_hub.errors

    def refused(repo_id, filename, **kwargs):
        reason = f"4xx Client Error for url: {repo_id}/resolve/main/{filename}.\n\nForbidden: rate limited"
        if error == "EntryNotFoundError":
            raise huggingface_hub.errors.EntryNotFoundError(reason)
        http = importlib.import_module(huggingface_hub.errors.Response.__module__)  # its HTTP client (httpx2 in 2.4)
        response = http.Response(403, request=http.Request("GET", "https://huggingface.co"))
        raise getattr(huggingface_hub.errors, error)(reason, response=response)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refused)
    with pytest.raises(CheckpointError, match=rf"^someone/gguf: {message}"):
        resolve_checkpoint("someone/gguf")


def _cache_file_list(cache: Path, repo_id: str, names: list[str]) -> None:
    """The commit's file list as huggingface_hub (2.4) caches it at the start of every snapshot_download, online."""
    tree_cache = pytest.importorskip("huggingface_hub._tree_cache", reason="huggingface_hub before 2.4 caches none")
    TreeCacheEntry, write_tree_cache = tree_cache.TreeCacheEntry, tree_cache.write_tree_cache  # noqa: N806

    folder = cache / f"models--{repo_id.replace('/', '--')}"
    write_tree_cache(str(folder), COMMIT, {name: TreeCacheEntry(size=1, blob_id=f"{i:040x}")
                                           for i, name in enumerate(names)})


def test_a_download_cut_short_is_not_called_missing_from_the_cache(saved, hub_cache):
    """BUG: a snapshot whose config.json came, not its weights, was reported offline as 'not in the local Hub cache'
    (the client asks for each file of the cached file list, and the weights' request fails)."""
    _cache_repo(hub_cache, "someone/tiny", {"config.json": (saved / "config.json").read_bytes()})
    _cache_file_list(hub_cache, "someone/tiny", ["config.json", "model.safetensors"])
    with pytest.raises(CheckpointError, match=r"^someone/tiny: only part of it is in the local Hub cache, and the "
                                              r"Hub cannot be reached now to complete it"):
        resolve_checkpoint("someone/tiny")


def test_a_cached_model_loads_offline_without_the_optional_files_its_repo_lists(saved, hub_cache):
    """BUG: with the commit's file list cached, offline, the client asked for each file it lists: a cache holding the
    config and weights but not the model card or a gallery (fetched by `hf download REPO config.json
    model.safetensors`, or by an older JEPA Lens) refused the whole model as 'not in the local Hub cache'."""
    _cache_repo(hub_cache, "someone/tiny", {name: (saved / name).read_bytes()
                                            for name in ("config.json", "model.safetensors")})
    _cache_file_list(hub_cache, "someone/tiny", ["config.json", "model.safetensors", "README.md", "metrics.csv"])
    assert load_model("someone/tiny").info()["step"] == 7


class FolderHub:
    """Stands in for `huggingface_hub.HfApi`: an upload lands in a local Hub cache laid out exactly as a download
    would leave it, so `load_model(repo_id)` then reads it offline like any user's machine."""

    def __init__(self, cache):
        self.cache, self.calls, self.private = cache, [], {}

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        self.private.setdefault(repo_id, bool(private))  # an existing repo keeps its visibility, as on the Hub
        return f"https://huggingface.co/{repo_id}"

    def repo_info(self, repo_id):
        return types.SimpleNamespace(private=self.private[repo_id])

    def update_repo_settings(self, repo_id, private=None):
        self.calls.append(("update_repo_settings", repo_id, private))
        self.private[repo_id] = private

    def upload_folder(self, repo_id, folder_path, allow_patterns, commit_message, delete_patterns=()):
        import fnmatch

        self.calls.append(("upload_folder", repo_id, commit_message))
        repo = self.cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / ("1" * 40)
        snapshot.mkdir(parents=True, exist_ok=True)
        added = [path for path in sorted(folder_path.iterdir())
                 if any(fnmatch.fnmatch(path.name, pattern) for pattern in allow_patterns)]
        for old in snapshot.iterdir():  # as HfApi: remote files matching delete_patterns go, unless uploaded again
            if any(fnmatch.fnmatch(old.name, pattern) for pattern in delete_patterns):
                old.unlink()
        for path in added:
            (snapshot / path.name).write_bytes(path.read_bytes())
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text("1" * 40)


def test_push_then_pull_round_trip_through_a_local_hub(tmp_path, tiny_model, tiny_preprocess, monkeypatch):
    from huggingface_hub import constants

    from jepa_demo.checkpoint import push_to_hub

    folder = tmp_path / "mine"
    save_checkpoint(tiny_model, folder, tiny_preprocess, step=5)
    (folder / "README.md").write_text("# card")
    (folder / "train_state.safetensors").write_bytes(b"optimizer moments: never uploaded")
    carried = ["gallery-0123456789abcdef-300clips-seed1-v3.npz", "threshold-0123456789abcdef-seed1-v3.json"]
    for name in carried:  # what `python -m jepa_demo.gallery --ship` leaves beside the weights
        (folder / name).write_bytes(b"prebuilt")
    hub = FolderHub(tmp_path / "hub")
    url = push_to_hub(folder, "someone/mine", private=True, api=hub)
    assert url == "https://huggingface.co/someone/mine"
    assert hub.calls[0] == ("create_repo", "someone/mine", True, True) and "step 5" in hub.calls[1][2]
    uploaded = {p.name for p in (tmp_path / "hub").rglob("*") if p.is_file() and "snapshots" in p.parts}
    assert uploaded == {"config.json", "model.safetensors", "README.md", *carried}

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    pulled = load_model("someone/mine")
    original = load_model(folder)
    assert pulled.info()["step"] == 5 and original.folder == folder
    assert all((pulled.folder / name).read_bytes() == b"prebuilt" for name in carried)  # where galleries are looked for
    assert all(torch.equal(a, b) for a, b in zip(original.net.state_dict().values(), pulled.net.state_dict().values()))

    # BUG: a second push (the model retrained: new gallery fingerprints, a run without metrics) left the first's
    # galleries and metrics in the repo, two stale files more at each retrain
    for name in carried:
        (folder / name).unlink()
    (folder / "README.md").unlink()
    (folder / "gallery-fedcba9876543210-300clips-seed1-v3.npz").write_bytes(b"retrained")
    remote = tmp_path / "hub" / "models--someone--mine" / "snapshots" / ("1" * 40)
    (remote / "metrics.csv").write_text("step,loss\n")
    (remote / "model-fp16.safetensors").write_bytes(b"the owner's own")  # not a shard: kept
    hub.calls.clear()
    push_to_hub(folder, "someone/mine", api=hub)
    assert hub.calls[0] == ("create_repo", "someone/mine", None, True)  # BUG: False made a new repo public
    uploaded = {p.name for p in (tmp_path / "hub").rglob("*") if p.is_file() and "snapshots" in p.parts}
    assert uploaded == {"config.json", "model.safetensors", "README.md",  # a README may be the owner's: it stays
                        "gallery-fedcba9876543210-300clips-seed1-v3.npz", "model-fp16.safetensors"}
    monkeypatch.chdir(folder)  # BUG: `python -m train push .` committed "JEPA Lens checkpoint  (step 5)"
    push_to_hub(".", "someone/mine", api=hub)
    assert hub.calls[-1] == ("upload_folder", "someone/mine", "JEPA Lens checkpoint mine (step 5)")
    # BUG: a run stopped between saves (or training in the folder) logged steps its saved weights never took, and
    # the repo's metrics.csv went past its weights, card and curves; the folder's own file is left as it is
    row = "{},0.4,0.001,0.996,0.5,0.3,12.0,20.0,future\n"
    logged = ",".join(METRIC_FIELDS) + "\n" + "".join(map(row.format, range(7))) + "7,0."  # the last row cut short
    (folder / "metrics.csv").write_text(logged)
    push_to_hub(folder, "someone/mine", api=hub)
    assert [row["step"] for row in read_metrics(remote / "metrics.csv")] == [0, 1, 2, 3, 4]
    # BUG: a power cut can leave half of a row logged before a save that reached the disk (appends are not synced):
    # pushed, it failed every reading of the repo's curves
    logged = logged.replace(row.format(3), "3,0.4,0.0\n")
    (folder / "metrics.csv").write_text(logged)
    push_to_hub(folder, "someone/mine", api=hub)
    assert [row["step"] for row in read_metrics(remote / "metrics.csv")] == [0, 1, 2, 4]
    assert (folder / "metrics.csv").read_text() == logged and (remote / "model.safetensors").read_bytes() == \
        (folder / "model.safetensors").read_bytes()


def test_push_refuses_a_metrics_log_that_is_not_text_naming_it(tmp_path, tiny_model, tiny_preprocess):
    """BUG: a metrics.csv that is not UTF-8 text (a disk error, a file copied over it) ended the push in a
    UnicodeDecodeError traceback."""
    from jepa_demo.checkpoint import push_to_hub

    folder = tmp_path / "mine"
    save_checkpoint(tiny_model, folder, tiny_preprocess, step=5)
    (folder / "metrics.csv").write_bytes(b"step,loss\n\xff\xfe\x00garbage\n")
    hub = FolderHub(tmp_path / "hub")
    with pytest.raises(CheckpointError, match=r"metrics\.csv: not a metrics log"):
        push_to_hub(folder, "someone/mine", api=hub)
    assert hub.calls == []  # refused before the Hub was asked anything


def test_push_private_makes_an_existing_public_repo_private_before_uploading(tmp_path, tiny_model, tiny_preprocess):
    """BUG: create_repo(exist_ok=True) leaves a repo as it is: --private uploaded into a public one."""
    from jepa_demo.checkpoint import push_to_hub

    folder = tmp_path / "mine"
    save_checkpoint(tiny_model, folder, tiny_preprocess, step=5)
    hub = FolderHub(tmp_path / "hub")
    push_to_hub(folder, "someone/mine", api=hub)
    assert hub.private["someone/mine"] is False and hub.calls[0] == ("create_repo", "someone/mine", None, True)
    hub.calls.clear()
    push_to_hub(folder, "someone/mine", private=True, api=hub)
    assert [call[0] for call in hub.calls] == ["create_repo", "update_repo_settings", "upload_folder"]
    hub.calls.clear()
    push_to_hub(folder, "someone/mine", private=True, api=hub)  # private already: its settings are left alone
    assert [call[0] for call in hub.calls] == ["create_repo", "upload_folder"]


def test_push_refuses_broken_checkpoints_and_bad_ids_before_any_upload(saved, tmp_path):
    from jepa_demo.checkpoint import push_to_hub

    hub = FolderHub(tmp_path / "hub")
    with pytest.raises(CheckpointError, match="not a Hub repo id"):
        push_to_hub(saved, "no-slash", api=hub)
    with pytest.raises(CheckpointError, match="no such folder"):
        push_to_hub(tmp_path / "someone" / "elsewhere", "someone/elsewhere", api=hub)
    (saved / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        push_to_hub(saved, "someone/broken", api=hub)
    assert hub.calls == []


def test_push_cli_offline_is_one_line_and_exit_2(saved, capsys):
    from train.__main__ import main

    assert main(["push", str(saved), "--repo-id", "someone/offline"]) == 2  # HF_HUB_OFFLINE=1 in conftest
    err = capsys.readouterr().err
    assert err.startswith("error: someone/offline: upload failed") and err.count("\n") == 1
    too_long = saved / ("x" * 300)  # BUG: Path.is_dir raised ENAMETOOLONG: a traceback
    assert main(["push", str(too_long), "--repo-id", "someone/offline"]) == 2
    assert capsys.readouterr().err == f"error: {too_long}: cannot be read (File name too long)\n"
    # BUG: `push "$(ls -d runs/*)"`: the refusal came on two lines, the name's halves; and with `ls -d runs/*/`, the
    # message naming the folder as Path writes it (no trailing slash), its first half alone
    for two in (f"{saved}\n{saved}", f"{saved}/\n{saved}/"):
        assert main(["push", two, "--repo-id", "someone/offline"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {Path(two)}".replace("\n", "\\n") + ": no such folder") and err.count("\n") == 1


def test_push_cli_takes_one_repo_id_and_its_closing_line_follows_the_tools_rules(saved, monkeypatch, capsys):
    """BUG: `--repo-id me/scratch --repo-id me/public` pushed to the last without a word (a line edited from the
    shell's history); the closing line, printed bare, failed at exit on a reader gone (`| true`) with status 120."""
    from test_cli import GoneReader

    import train.__main__
    from train.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(["push", str(saved), "--repo-id", "me/scratch", "--repo-id", "me/public"])
    assert stopped.value.code == 2 and "--repo-id is given twice; give it once" in capsys.readouterr().err
    pushed = []
    monkeypatch.setattr(train.__main__, "push_to_hub", lambda folder, repo_id, private: pushed.append(repo_id)
                        or f"https://huggingface.co/{repo_id}")

    with monkeypatch.context() as patch:  # put back before capsys ends: not its closed stream, at the end of the test
        patch.setattr(sys, "stdout", GoneReader())
        assert main(["push", str(saved), "--repo-id", "me/public"]) == 141 and pushed == ["me/public"]
    assert capsys.readouterr().err == ""


def test_an_unreachable_hub_is_one_line_and_exit_2(saved):
    """Online, but nothing answers (no network, a firewall): the Hub client raises its HTTP library's ConnectError,
    which is not an OSError. HF_ENDPOINT points at a closed local port, so nothing leaves this machine."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # free, and nothing listens once the socket is closed
    env = {"PATH": "/usr/bin:/bin", "HF_TOKEN": "hf_not_a_token", "HF_ENDPOINT": f"http://127.0.0.1:{closed}",
           "HF_HOME": str(saved.parent / "hf-home")}
    result = subprocess.run([sys.executable, "-m", "train", "push", str(saved), "--repo-id", "someone/nowhere"],
                            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: someone/nowhere: upload failed (ConnectError")
    assert result.stderr.count("\n") == 1
