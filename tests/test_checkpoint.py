import json
import os
import pickle
import stat

import pytest
import torch

from jepa_demo.checkpoint import (
    CheckpointError,
    build_model,
    clean_state_dict,
    resolve_checkpoint,
    save_checkpoint,
)
from jepa_demo.inference import load_model


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
    """Atomic saves go through a private temporary file; the result must still be readable by others (umask 022)."""
    old = os.umask(0o022)
    try:
        save_checkpoint(tiny_model, tmp_path / "ckpt", tiny_preprocess, step=1)
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ckpt").iterdir()} == {0o644}


def test_load_model_returns_inference_object(saved):
    model = load_model(saved)
    assert model.info()["step"] == 7


def test_prefixes_from_ddp_and_compile_are_stripped():
    state = {"module.a.weight": 1, "_orig_mod.b": 2, "module._orig_mod.c.bias": 3, "d": 4}
    assert clean_state_dict(state) == {"a.weight": 1, "b": 2, "c.bias": 3, "d": 4}


def test_missing_files_are_named(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        build_model(saved)
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        build_model(saved)


def test_corrupt_weights_are_named(saved):
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
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


def test_weights_that_do_not_match_the_config(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model"]["depth"] = 3
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights do not match config.json"):
        build_model(saved)


@pytest.mark.parametrize("change, message", [
    ({"dim": 10**7}, "dim must be between"),
    ({"depth": "12"}, "depth must be a number"),
    ({"layers": 4}, "unknown keys"),
    ({"patch_size": 7}, "multiple of patch_size"),
])
def test_hostile_or_wrong_config_values_are_refused_before_allocation(saved, change, message):
    config = json.loads((saved / "config.json").read_text())
    config["model"].update(change)
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        build_model(saved)


def test_not_json_and_not_ours(saved):
    (saved / "config.json").write_text("{nope")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        build_model(saved)
    (saved / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not a jepa-lens checkpoint"):
        build_model(saved)


def test_missing_folder_and_unknown_hub_id_fail_fast(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        resolve_checkpoint(tmp_path / "nothing-here")
    with pytest.raises(CheckpointError, match="not in the local Hub cache"):
        resolve_checkpoint("someone/not-a-real-model")


def test_hub_repo_id_loads_from_the_local_hub_cache(saved, tmp_path, monkeypatch):
    """A repo id resolves through huggingface_hub's cache exactly as after a download (offline)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-jepa" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((saved / name).read_bytes())
    (cache / "models--someone--tiny-jepa" / "refs").mkdir()
    (cache / "models--someone--tiny-jepa" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    model = load_model("someone/tiny-jepa")
    assert model.info()["step"] == 7
