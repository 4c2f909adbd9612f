"""The reference gallery: fingerprint, disk cache, search, map placement, re-rendered clips, CLI.

One UMAP fit for the whole module (the first fit on a machine compiles numba code for ~10 s): `built` makes a gallery
of `CLIPS` clips through `load_or_build_gallery`; the cache tests that need another build get a stand-in instead.
"""

import dataclasses
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import jepa_demo.gallery as gallery_module
from jepa_demo import cli
from jepa_demo.checkpoint import save_checkpoint
from jepa_demo.config import PreprocessConfig, model_config_from_preset
from jepa_demo.evaluate import HELD_OUT_SEED
from jepa_demo.gallery import (
    DEFAULT_CLIPS,
    EXAMPLE_SEED,
    GALLERY_FORMAT,
    GALLERY_SEED,
    MIN_CLIPS,
    build_gallery,
    cache_folder,
    cached_surprise_threshold,
    gallery_cache_path,
    gallery_clip,
    label_names,
    load_or_build_gallery,
    model_fingerprint,
    nearest,
    place_on_map,
    ship,
    surprise_threshold,
)
from jepa_demo.inference import JEPAModel, load_model
from jepa_demo.model import VideoJEPA
from jepa_demo.world import VIOLATIONS, WorldConfig, make_pair, render_clip

CLIPS = 30
ROOT = Path(__file__).resolve().parent.parent


def _tiny_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    cfg = model_config_from_preset("tiny")
    save_checkpoint(VideoJEPA(cfg), folder, PreprocessConfig(img_size=cfg.img_size, num_frames=cfg.num_frames), step=1)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def built(model, tmp_path_factory):
    """(gallery, its cache dir, the progress calls made while building it)."""
    cache_dir = tmp_path_factory.mktemp("cache")
    calls = []
    gallery = load_or_build_gallery(model, cache_dir, num_clips=CLIPS, progress=lambda f, m: calls.append((f, m)))
    return gallery, cache_dir, calls


@pytest.fixture
def gallery(built):
    return built[0]


def _stand_in_build(gallery, calls):
    """A `build_gallery` that returns the module's gallery and counts its calls: cache tests without UMAP fits."""
    def build(model, num_clips, progress=None):
        calls.append(num_clips)
        return gallery
    return build


def _refuse_to_build(model, num_clips, progress=None):
    raise AssertionError("built again although a valid cache file was there")


# ----------------------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_across_loads_and_changes_with_any_weight_or_setting(checkpoint, tmp_path):
    first, second = load_model(checkpoint, device="cpu"), load_model(checkpoint, device="cpu")
    fingerprint = model_fingerprint(first)
    assert fingerprint == model_fingerprint(second) and len(fingerprint) == 16
    assert model_fingerprint(load_model(_tiny_checkpoint(tmp_path / "again"), device="cpu")) == fingerprint
    with torch.no_grad():
        next(second.net.parameters()).view(-1)[3] += 1e-4
    assert model_fingerprint(second) != fingerprint
    first.config = {**first.config, "step": 2}
    assert model_fingerprint(first) != fingerprint
    # settings the record does not hold: the same network and record under another preprocessing or frame count
    third = load_model(checkpoint, device="cpu")
    third.preprocess = dataclasses.replace(third.preprocess, resize=third.preprocess.img_size + 8)
    assert model_fingerprint(third) != fingerprint
    fourth = load_model(checkpoint, device="cpu")
    fourth.cfg = dataclasses.replace(fourth.cfg, num_frames=2 * fourth.cfg.num_frames)
    assert model_fingerprint(fourth) != fingerprint


def test_a_gallery_embedded_in_float32_is_not_found_for_a_model_computing_in_bfloat16(checkpoint):
    """On CUDA the forward passes run under bfloat16 autocast; the shipped galleries were embedded in float32 on a
    CPU, and similarities measured from the gallery's mean are small enough for bfloat16's rounding to reorder them."""
    model = load_model(checkpoint, device="cpu")
    on_cpu = model_fingerprint(model)
    model.device = torch.device("cuda")  # only what the fingerprint reads: no GPU is needed to see it change
    assert model.compute_dtype == torch.bfloat16 and model_fingerprint(model) != on_cpu


def test_gallery_seeds_do_not_collide_with_training_or_evaluation():
    from jepa_demo.evaluate import SEED_BLOCK, TRACKING_SEEDS, VALIDATION_SEED
    from jepa_demo.world import DERIVED_SEED_STEP
    from train.config import EVALUATION_SEEDS_FROM

    assert EVALUATION_SEEDS_FROM <= HELD_OUT_SEED  # training stays below (tests/test_train.py checks the rest)
    assert HELD_OUT_SEED + TRACKING_SEEDS + SEED_BLOCK <= VALIDATION_SEED  # the last held-out block, then validation's
    assert VALIDATION_SEED + TRACKING_SEEDS + SEED_BLOCK <= GALLERY_SEED  # validation's last block, then the gallery's
    assert GALLERY_SEED + DEFAULT_CLIPS <= EXAMPLE_SEED  # the gallery, then the app's examples
    assert EXAMPLE_SEED < HELD_OUT_SEED + DERIVED_SEED_STEP  # the first derived pair starts above
    # the app's examples are one scene: every kind of violation fits its own start (no derived seed)
    examples = WorldConfig(size=128, num_frames=32)
    assert all(make_pair(EXAMPLE_SEED, kind, examples)[1].labels["seed"] == EXAMPLE_SEED for kind in VIOLATIONS)


# -------------------------------------------------------------------------------------------------------- building


def test_built_gallery_holds_centred_unit_embeddings_of_the_seeded_clips(gallery, model, built):
    assert gallery.seeds.dtype == np.int64 and gallery.seeds.tolist() == list(range(GALLERY_SEED, GALLERY_SEED + CLIPS))
    assert [labels["seed"] for labels in gallery.labels] == gallery.seeds.tolist()
    assert gallery.embeddings.shape == (CLIPS, model.embed_dim) and gallery.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(gallery.embeddings, axis=1), 1, atol=1e-5)
    assert gallery.coords.shape == (CLIPS, 2) and gallery.coords.dtype == np.float32
    assert np.isfinite(gallery.coords).all() and len(np.unique(gallery.coords.round(3), axis=0)) == CLIPS
    assert gallery.fingerprint == model_fingerprint(model)
    direct = model.embed(render_clip(GALLERY_SEED + 7, WorldConfig(size=32, num_frames=4)).frames)
    centered = direct / np.linalg.norm(direct) - gallery.center  # similarities are measured from the gallery's mean
    assert np.allclose(gallery.embeddings[7], centered / np.linalg.norm(centered), atol=1e-5)
    fractions = [fraction for fraction, _ in built[2]]
    assert fractions[0] == 0 and fractions[-1] == 1 and fractions == sorted(fractions) and len(fractions) >= 3


def test_the_maps_compiled_code_is_kept_for_the_next_process(built):
    """umap-learn keeps its numba code in memory only: every process that built a gallery compiled it anew (~11 s
    on one core). The functions a fit compiles are now in numba's disk cache, where the next process finds them (a
    few that umap compiles for fixed types when it is imported are not: they cost the import, cache or not)."""
    import umap

    for module, name in (("umap_", "smooth_knn_dist"), ("umap_", "compute_membership_strengths"),
                         ("layouts", "_nb_optimize_layout_euclidean_single_epoch"), ("utils", "fast_knn_indices"),
                         ("distances", "cosine")):
        function = getattr(getattr(umap, module), name)
        assert function.signatures, f"{name}: the fit no longer compiles it"  # else this test checks nothing
        cache = function.stats.cache_path
        assert cache is not None, f"{name}: compiled, not kept"
        # numba's index file, named module.function-line
        assert list(Path(cache).glob(f"{module}.{function.py_func.__qualname__}-*.nbi")), name


def test_where_numba_may_write_no_cache_the_map_is_compiled_as_before(monkeypatch):
    import umap  # noqa: F401  (its functions are the ones looked for)
    from numba.core.registry import CPUDispatcher

    def nowhere(function):
        raise RuntimeError(f"cannot cache function {function.__name__!r}: no locator available for file")

    monkeypatch.setattr(CPUDispatcher, "enable_caching", nowhere)
    gallery_module._keep_umaps_compiled_code.__wrapped__()  # said nothing: the fit goes on, compiling


def test_build_refuses_too_few_clips(model):
    for bad in (MIN_CLIPS - 1, 0, 12.5, True):
        with pytest.raises(ValueError, match="num_clips"):
            build_gallery(model, num_clips=bad)


# ----------------------------------------------------------------------------------------------------------- cache


def test_second_call_reads_the_cache_file_and_nothing_else_is_left(built, model, monkeypatch):
    gallery, cache_dir, _ = built
    path = gallery_cache_path(model, cache_dir, CLIPS)
    assert [p.name for p in cache_dir.iterdir()] == [path.name] and gallery.fingerprint in path.name
    monkeypatch.setattr(gallery_module, "build_gallery", _refuse_to_build)
    again = load_or_build_gallery(model, cache_dir, num_clips=CLIPS)
    for field in ("seeds", "embeddings", "coords"):
        assert np.array_equal(getattr(again, field), getattr(gallery, field))
        assert getattr(again, field).dtype == getattr(gallery, field).dtype
    assert again.labels == gallery.labels and again.fingerprint == gallery.fingerprint
    assert [p.name for p in cache_dir.iterdir()] == [path.name]


def test_cache_file_name_depends_on_checkpoint_and_settings(model, checkpoint, tmp_path):
    path = gallery_cache_path(model, tmp_path, CLIPS)
    assert gallery_cache_path(load_model(checkpoint, device="cpu"), tmp_path, CLIPS) == path
    assert gallery_cache_path(model, tmp_path, CLIPS + 1) != path
    other = load_model(checkpoint, device="cpu")
    with torch.no_grad():
        next(other.net.parameters()).view(-1)[0] *= 2
    assert gallery_cache_path(other, tmp_path, CLIPS) != path
    assert str(GALLERY_SEED) in path.name and path.parent == tmp_path


def test_cache_folder_follows_the_environment_and_expands_the_home(monkeypatch, tmp_path):
    monkeypatch.setenv("JEPA_LENS_CACHE", str(tmp_path / "here"))
    assert cache_folder() == tmp_path / "here" and cache_folder(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv("JEPA_LENS_CACHE", "~/jl")  # as a docker or systemd environment sets it: no shell expands it
    assert cache_folder() == Path.home() / "jl"
    monkeypatch.delenv("JEPA_LENS_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_folder() == Path.home() / ".cache" / "jepa-lens"
    # BUG: the user's cache folder, where the XDG spec (and the Hub's cache) puts it, was ignored
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "jepa-lens"
    for ignored in ("relative/cache", ""):  # the spec: a relative one is ignored, as is an empty one
        monkeypatch.setenv("XDG_CACHE_HOME", ignored)
        assert cache_folder() == Path.home() / ".cache" / "jepa-lens"


def test_a_cache_folder_under_an_unknown_users_home_is_one_line(built, model, monkeypatch, capsys):
    """BUG: ~nosuchuser raised Python's RuntimeError 'Could not determine home directory', a traceback once the
    model had loaded (and from the app, at start)."""
    import app

    assert gallery_module.main(["--clips", str(CLIPS), "--cache-dir", "~nobody-has-this-name/cache"]) == 2
    assert capsys.readouterr().err == ("error: cache folder ~nobody-has-this-name/cache: no home folder to expand ~ "
                                       "to\n")
    monkeypatch.setenv("JEPA_LENS_CACHE", "~nobody-has-this-name/cache")
    with pytest.raises(SystemExit, match="^JEPA Lens cannot use cache folder ~nobody-has-this-name/cache: no home "
                                         "folder to expand ~ to; set JEPA_LENS_CACHE to a folder it can write$"):
        app.check_cache_folder()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other_model", "no_threshold"])
def test_damaged_cache_file_is_rebuilt_and_overwritten(built, model, tmp_path, monkeypatch, damage):
    gallery, cache_dir, _ = built
    path = gallery_cache_path(model, tmp_path, CLIPS)
    good = gallery_cache_path(model, cache_dir, CLIPS).read_bytes()
    if damage == "other_model":  # a readable file whose contents say it belongs to another model
        gallery_module._write(path, dataclasses.replace(gallery, fingerprint="0" * 16))
    elif damage == "no_threshold":  # every view divides by it
        gallery_module._write(path, dataclasses.replace(gallery, surprise_threshold=float("nan")))
    else:
        path.write_bytes({"garbage": b"not a zip file at all" * 10, "truncated": good[: len(good) // 2],
                          "empty": b""}[damage])
    calls = []
    monkeypatch.setattr(gallery_module, "build_gallery", _stand_in_build(gallery, calls))
    with pytest.warns(UserWarning, match="unreadable gallery file"):
        rebuilt = load_or_build_gallery(model, tmp_path, num_clips=CLIPS)
    assert calls == [CLIPS] and rebuilt is gallery
    monkeypatch.setattr(gallery_module, "build_gallery", _refuse_to_build)
    assert np.array_equal(load_or_build_gallery(model, tmp_path, num_clips=CLIPS).coords, gallery.coords)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_building_into_the_cache_removes_files_of_older_formats_only(built, model, tmp_path, monkeypatch):
    """A format change (a new fingerprint, a new world) leaves the old files where nothing reads them again."""
    monkeypatch.setattr(gallery_module, "build_gallery", _stand_in_build(built[0], []))
    older = [tmp_path / f"gallery-{'0' * 16}-{CLIPS}clips-seed{GALLERY_SEED}-v{GALLERY_FORMAT - 1}.npz",
             tmp_path / f"threshold-{'0' * 16}-seed{GALLERY_SEED}-v{GALLERY_FORMAT - 1}.json"]
    another_checkpoints = [tmp_path / f"gallery-{'1' * 16}-{CLIPS}clips-seed{GALLERY_SEED}-v{GALLERY_FORMAT}.npz",
                           tmp_path / f"threshold-{'1' * 16}-seed{GALLERY_SEED}-v{GALLERY_FORMAT}.json",
                           # BUG: a newer install's went too, and each install rebuilt its own at every start
                           tmp_path / f"gallery-{'0' * 16}-{CLIPS}clips-seed{GALLERY_SEED}-v{GALLERY_FORMAT + 1}.npz",
                           tmp_path / f"threshold-{'0' * 16}-seed{GALLERY_SEED}-v{GALLERY_FORMAT + 1}.json",
                           tmp_path / "notes.txt",
                           # BUG: another program's files in a shared cache folder ($JEPA_LENS_CACHE=~/.cache) matched
                           # gallery-*.npz or threshold-*.json and went too
                           tmp_path / "threshold-tuning.json", tmp_path / "gallery-of-photos.npz"]
    for path in (*older, *another_checkpoints):
        path.write_text("x")
    load_or_build_gallery(model, tmp_path, num_clips=CLIPS)
    assert sorted(tmp_path.iterdir()) == sorted([*another_checkpoints, gallery_cache_path(model, tmp_path, CLIPS)])


def test_files_of_older_formats_are_removed_when_an_explorer_starts(built, model, tmp_path, monkeypatch):
    """BUG: a format change left the old thumbnails (up to one GIF per gallery clip, per checkpoint) forever, and the
    old galleries and thresholds until a gallery was built: never, for an app reading shipped or cached ones."""
    from jepa_demo.explore import Explorer

    monkeypatch.setattr(gallery_module, "build_gallery", _stand_in_build(built[0], []))
    load_or_build_gallery(model, tmp_path, num_clips=CLIPS)  # the Explorer reads it, building nothing
    monkeypatch.setattr(gallery_module, "build_gallery", _refuse_to_build)
    older_files = [tmp_path / f"gallery-{'0' * 16}-{CLIPS}clips-seed{GALLERY_SEED}-v{GALLERY_FORMAT - 1}.npz",
                   tmp_path / f"threshold-{'0' * 16}-seed{GALLERY_SEED}-v{GALLERY_FORMAT - 1}.json"]
    newer_file = tmp_path / f"threshold-{'0' * 16}-seed{GALLERY_SEED}-v{GALLERY_FORMAT + 1}.json"
    for path in (*older_files, newer_file):
        path.write_text("x")
    served = gallery_module.served_folder(tmp_path)
    older = served / f"thumbnails-{'0' * 16}-seed{GALLERY_SEED}-v{GALLERY_FORMAT - 1}"
    current = served / f"thumbnails-{'1' * 16}-seed{GALLERY_SEED}-v{GALLERY_FORMAT}"  # another checkpoint's
    newer = served / f"thumbnails-{'1' * 16}-seed{GALLERY_SEED}-v{GALLERY_FORMAT + 1}"  # a newer install's
    not_ours = served / "thumbnails-of-my-holiday"
    for folder in (older, current, newer, not_ours):
        folder.mkdir(parents=True)
        (folder / "0.gif").write_text("x")
    Explorer(model, cache_dir=tmp_path, num_clips=CLIPS)
    assert sorted(served.iterdir()) == sorted([current, newer, not_ours])
    assert newer_file.exists() and not any(path.exists() for path in older_files)


def test_missing_cache_dir_is_created(built, model, tmp_path, monkeypatch):
    monkeypatch.setattr(gallery_module, "build_gallery", _stand_in_build(built[0], []))
    monkeypatch.setenv("JEPA_LENS_CACHE", str(tmp_path / "a" / "b"))
    load_or_build_gallery(model, num_clips=CLIPS)
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == [gallery_cache_path(model, None, CLIPS).name]


def test_an_unwritable_cache_folder_is_named_once_the_library_builds_and_the_command_refuses(
        built, model, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")  # mkdir below it fails even for root, unlike a chmod-ed folder
    monkeypatch.setattr(gallery_module, "build_gallery", _stand_in_build(built[0], calls := []))
    with pytest.warns(UserWarning, match=f"cannot cache the gallery in {blocker}/cache"):
        assert load_or_build_gallery(model, blocker / "cache", num_clips=CLIPS) is built[0]
    assert calls == [CLIPS]
    monkeypatch.setattr(cli, "load_model", lambda path, device=None: model)
    # BUG: the command built for minutes (an hour for V-JEPA 2), then said "built, not cached" and exited 0
    assert gallery_module.main(["--clips", str(CLIPS), "--cache-dir", str(blocker / "cache")]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: cannot write the cache folder {blocker / 'cache'} (Not a directory); "
                              "--cache-dir or JEPA_LENS_CACHE can name one it can write\n")
    assert calls == [CLIPS]  # refused before the build
    assert [p.name for p in tmp_path.iterdir()] == ["a file"]


def test_the_command_says_so_when_its_gallery_could_not_be_written_after_the_build(built, model, tmp_path,
                                                                                    monkeypatch, capsys):
    def disk_full(path, gallery):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(gallery_module, "build_gallery", _stand_in_build(built[0], calls := []))
    monkeypatch.setattr(gallery_module, "_write", disk_full)
    monkeypatch.setattr(cli, "load_model", lambda path, device=None: model)
    assert gallery_module.main(["--clips", str(CLIPS), "--cache-dir", str(tmp_path / "cache")]) == 1
    out, err = capsys.readouterr()
    # BUG: one warning line, then "built, not cached" and exit 0, as if the command had done its work
    assert out == "" and err.splitlines()[-1] == (f"error: the gallery was built but could not be cached in "
                                                  f"{tmp_path / 'cache'} (No space left on device)")
    assert "warning" not in err  # the one line says it all, under `python -W ignore` too
    assert calls == [CLIPS] and not any((tmp_path / "cache").iterdir())


def test_plausible_clips_exceed_the_surprise_threshold_5_percent_of_the_time(model):
    """What the app and the README say the threshold is: the per-step surprise plausible gallery clips (no violation)
    exceed only 5 % of the time. Counted here over the clips surprise_threshold calibrates on, rendered again."""
    world = WorldConfig(size=model.preprocess.img_size, num_frames=2 * model.cfg.num_frames)
    seeds = GALLERY_SEED + np.arange(gallery_module._THRESHOLD_CLIPS)
    steps = np.concatenate([model.surprise(render_clip(int(seed), world).frames).per_step for seed in seeds])
    assert len(np.unique(steps)) == len(steps)  # no ties: the count above the 95th percentile is exact
    above = int(np.sum(steps > surprise_threshold(model)))
    assert above == len(steps) - 1 - int(np.floor(0.95 * (len(steps) - 1)))  # 4 of 72: the 94th or 96th give 5 or 3


def test_surprise_threshold_is_calibrated_once_per_model_and_a_damaged_file_again(model, tmp_path, monkeypatch):
    calibrated = []
    with pytest.raises(ValueError, match="threshold on plausible clips is nan, not a positive number"):
        with monkeypatch.context() as patch:
            patch.setattr(gallery_module.np, "percentile", lambda *args: np.nan)
            surprise_threshold(model)
    real = gallery_module.calibrate_surprise
    monkeypatch.setattr(gallery_module, "calibrate_surprise",
                        lambda *args: calibrated.append(1) or real(*args))
    threshold = cached_surprise_threshold(model, tmp_path)
    assert threshold == surprise_threshold(model) > 0 and len(calibrated) == 2
    (written,) = tmp_path.iterdir()
    assert written.name.startswith(f"threshold-{model_fingerprint(model)}-")
    assert cached_surprise_threshold(model, tmp_path) == threshold and len(calibrated) == 2  # read back
    written.write_text("{not json")
    assert cached_surprise_threshold(model, tmp_path) == threshold and len(calibrated) == 3
    assert cached_surprise_threshold(model, tmp_path) == threshold and len(calibrated) == 3  # and rewritten
    for no_threshold in ("NaN", "0", "-1"):  # json reads NaN; each view divides by the threshold
        written.write_text(f'{{"surprise_threshold": {no_threshold}}}')
        assert cached_surprise_threshold(model, tmp_path) == threshold
    assert len(calibrated) == 6
    assert [p.name for p in tmp_path.iterdir()] == [written.name]  # no temporary files left


# ------------------------------------------------------------------------------------------------------- searching


def _own_embedding(gallery, model, index: int) -> np.ndarray:
    """What the model says about gallery clip `index`, as a new query would arrive (not the stored, centred one)."""
    return model.embed(gallery_clip(gallery, index, model))


def test_nearest_finds_the_clip_itself_first(gallery, model):
    for index in (0, 13, CLIPS - 1):
        found = nearest(gallery, 3.0 * _own_embedding(gallery, model, index), k=8)  # the length must not matter
        similarities = [s for _, s in found]
        assert len(found) == 8 and found[0][0] == index and found[0][1] == pytest.approx(1, abs=1e-5)
        assert similarities == sorted(similarities, reverse=True) and len({i for i, _ in found}) == 8
        expected = np.sort(gallery.embeddings @ gallery.embeddings[index])[::-1][:8]
        assert np.allclose(similarities, expected, atol=1e-5)
    assert len(nearest(gallery, _own_embedding(gallery, model, 0), k=CLIPS)) == CLIPS


def test_nearest_rejects_bad_queries(gallery):
    dim = gallery.embeddings.shape[1]
    for bad in (np.ones(dim + 1), np.ones((1, dim)), np.zeros(dim), np.full(dim, np.nan)):
        with pytest.raises(ValueError, match="embedding"):
            nearest(gallery, bad)
    for k in (0, CLIPS + 1, 2.5, -1):
        with pytest.raises(ValueError, match="k must"):
            nearest(gallery, gallery.embeddings[0], k=k)


def test_the_map_of_the_smallest_gallery_is_the_same_map_every_time(gallery):
    """UMAP is seeded (its random_state): the same embeddings give the same map, here at the fewest clips a gallery
    may hold, whose neighbourhoods are smaller than UMAP's default (n_neighbors = clips - 1)."""
    from jepa_demo.gallery import MIN_CLIPS, _fit_map

    embeddings = gallery.embeddings[:MIN_CLIPS]
    first = _fit_map(embeddings)
    assert first.shape == (MIN_CLIPS, 2) and np.isfinite(first).all() and np.ptp(first, axis=0).min() > 0
    assert np.array_equal(_fit_map(embeddings), first)


def test_place_on_map_puts_gallery_clips_on_their_own_points(gallery, model):
    gaps = np.linalg.norm(gallery.coords[:, None] - gallery.coords[None], axis=-1)  # (N, N)
    median_gap = np.median(gaps[~np.eye(CLIPS, dtype=bool)])
    placed = np.stack([place_on_map(gallery, _own_embedding(gallery, model, i)) for i in range(CLIPS)])  # (N, 2)
    assert placed.dtype == np.float32 and placed.shape == (CLIPS, 2)
    assert np.linalg.norm(placed - gallery.coords, axis=1).max() < 0.05 * median_gap


def test_place_on_map_puts_a_new_clip_among_its_neighbours(gallery, model):
    embedding = model.embed(render_clip(5, WorldConfig(size=32, num_frames=4)).frames)
    point = place_on_map(gallery, embedding, k=5)
    neighbours = gallery.coords[[i for i, _ in nearest(gallery, embedding, k=5)]]
    assert (neighbours.min(axis=0) - 1e-5 <= point).all() and (point <= neighbours.max(axis=0) + 1e-5).all()
    assert np.allclose(place_on_map(gallery, embedding, k=1), neighbours[0])
    # between two neighbours, nearer the more similar one (uniform or reversed weights would give t >= 0.5)
    (a, similar_a), (b, similar_b) = nearest(gallery, embedding, k=2)
    assert similar_a > similar_b
    step = gallery.coords[b] - gallery.coords[a]
    t = float((place_on_map(gallery, embedding, k=2) - gallery.coords[a]) @ step / (step @ step))
    assert np.allclose(gallery.coords[a] + t * step, place_on_map(gallery, embedding, k=2), atol=1e-5) and 0 < t < 0.5
    with pytest.raises(ValueError, match="k must"):
        place_on_map(gallery, embedding, k=0)


# ---------------------------------------------------------------------------------------------- clips and labels


def test_gallery_clip_rerenders_the_frames_of_its_seed(gallery, model):
    frames = gallery_clip(gallery, 4, model)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, render_clip(int(gallery.seeds[4]), WorldConfig(size=32, num_frames=4)).frames)
    for bad in (-1, CLIPS):
        with pytest.raises(IndexError, match="gallery clip"):
            gallery_clip(gallery, bad, model)


def test_label_names_are_the_scalar_labels_that_vary(gallery):
    names = label_names(gallery)
    assert {"num_objects", "main_shape", "gravity", "direction", "occluder"} <= set(names)
    assert not {"seed", "shapes", "noise_std", "violation", "violation_frame", "background"} & set(names)
    assert all(len({labels[name] for labels in gallery.labels}) > 1 for name in names)


# ---------------------------------------------------------------------------------------------------- command line


def test_cli_with_a_stdout_that_fails_says_so_in_one_line(built, checkpoint):
    """`... > /dev/full`: the line sat in stdout's buffer until exit, whose failed flush Python reported as 'Exception
    ignored' with status 120."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "jepa_demo.gallery", "--checkpoint", str(checkpoint), "--clips",
                                 str(CLIPS), "--cache-dir", str(built[1])], cwd=ROOT, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120,
                                env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 1
    assert result.stderr == "error: could not print the result: No space left on device (the files stand)\n"


def test_cli_whose_stderr_fails_builds_all_the_same(built, model, tmp_path, monkeypatch, capsys):
    """BUG: `2>/dev/full` (or `2>&1 | head -1`): the first progress line's error was taken for the cache folder's,
    whose message then failed too: a traceback, status 1, and the build abandoned."""
    def build_saying_how_far(model, num_clips, progress=None):
        progress(0.5, "clips embedded")
        return built[0]

    monkeypatch.setattr(cli, "load_model", lambda path, device=None: model)
    monkeypatch.setattr(gallery_module, "build_gallery", build_saying_how_far)
    with open("/dev/full", "w") as full, monkeypatch.context() as patch:  # stderr put back before capsys ends
        patch.setattr(sys, "stderr", full)
        assert gallery_module.main(["--clips", str(CLIPS), "--cache-dir", str(tmp_path)]) == 0
    assert f"built into {gallery_cache_path(model, tmp_path, CLIPS)} in" in capsys.readouterr().out
    assert gallery_cache_path(model, tmp_path, CLIPS).is_file()


def test_cli_reports_the_cache_file(built, checkpoint, monkeypatch, capsys):
    gallery, cache_dir, _ = built
    monkeypatch.setenv("JEPA_LENS_CACHE", str(cache_dir))
    monkeypatch.setattr(gallery_module, "build_gallery", _refuse_to_build)
    load = cli.load_model  # the cached gallery is the CPU's: on a GPU (bf16) the fingerprint, and the file, differ
    monkeypatch.setattr(cli, "load_model", lambda path, device=None: load(path, device="cpu"))
    assert gallery_module.main(["--checkpoint", str(checkpoint), "--clips", str(CLIPS)]) == 0
    out = capsys.readouterr().out
    assert f"read from {cache_dir}/gallery-{gallery.fingerprint}" in out


def test_cli_ship_puts_the_gallery_beside_the_weights_where_it_is_read_before_any_cache(
        built, model, checkpoint, tmp_path, monkeypatch, capsys):
    gallery, cache_dir, _ = built
    folder = shutil.copytree(checkpoint, tmp_path / "checkpoint")
    stale = [folder / f"gallery-{'0' * 16}-{CLIPS}clips-seed{GALLERY_SEED}-v{GALLERY_FORMAT}.npz",  # other weights
             folder / f"threshold-{gallery.fingerprint}-seed{GALLERY_SEED}-v{GALLERY_FORMAT - 1}.json"]  # old format
    for path in stale:
        path.write_text("stale")
    # BUG: a newer format's, which a newer install shipped and reads (it would rebuild: minutes), was removed too
    newer = folder / f"gallery-{gallery.fingerprint}-300clips-seed{GALLERY_SEED}-v{GALLERY_FORMAT + 1}.npz"
    newer.write_text("newer")
    monkeypatch.setattr(gallery_module, "build_gallery", _refuse_to_build)  # the cached gallery is what ships
    devices, load = [], cli.load_model
    monkeypatch.setattr(cli, "load_model",
                        lambda path, device=None: devices.append(device) or load(path, device=device))
    assert gallery_module.main(["--checkpoint", str(folder), "--clips", str(CLIPS), "--cache-dir", str(cache_dir),
                                "--ship"]) == 0
    assert devices == ["cpu"]  # BUG: on a GPU, bf16 files were shipped and the float32 ones CPUs read removed
    shipped = {p.name for p in folder.glob("*") if p.name.startswith(("gallery-", "threshold-"))}
    assert shipped == {gallery_cache_path(model, None, CLIPS).name, newer.name,
                       f"threshold-{gallery.fingerprint}-seed{GALLERY_SEED}-v{GALLERY_FORMAT}.json"}

    empty = tmp_path / "empty-cache"
    monkeypatch.setattr(gallery_module, "calibrate_surprise", _refuse_to_build)
    carried = load_model(folder, device="cpu")
    again = load_or_build_gallery(carried, empty, num_clips=CLIPS)
    assert np.array_equal(again.coords, gallery.coords) and np.array_equal(again.embeddings, gallery.embeddings)
    assert cached_surprise_threshold(carried, empty) == gallery.surprise_threshold
    assert not empty.exists()  # nothing built, nothing cached
    assert gallery_module.main(["--checkpoint", str(folder), "--clips", str(CLIPS), "--cache-dir", str(empty)]) == 0
    assert f"read from {folder}/gallery-{gallery.fingerprint}" in capsys.readouterr().out


def test_a_damaged_shipped_gallery_is_skipped_for_the_cache(built, model, checkpoint, tmp_path, monkeypatch):
    gallery, cache_dir, _ = built
    folder = shutil.copytree(checkpoint, tmp_path / "checkpoint")
    (folder / gallery_cache_path(model, None, CLIPS).name).write_bytes(b"not a zip file")
    monkeypatch.setattr(gallery_module, "build_gallery", _refuse_to_build)
    with pytest.warns(UserWarning, match=f"{folder}.*unreadable gallery file"):
        again = load_or_build_gallery(load_model(folder, device="cpu"), cache_dir, num_clips=CLIPS)
    assert np.array_equal(again.coords, gallery.coords)


def test_only_a_model_from_a_local_folder_can_ship_its_gallery(built, model, tmp_path, capsys):
    in_memory = JEPAModel(model.net, model.preprocess, model.config, "cpu")
    assert in_memory.folder is None and model.folder is not None
    with pytest.raises(ValueError, match="loaded from a checkpoint folder"):
        ship(in_memory, built[0])
    with pytest.raises(ValueError, match="another model"):
        ship(model, dataclasses.replace(built[0], fingerprint="0" * 16))
    with pytest.raises(SystemExit) as exit_info:  # a Hub id: its snapshot lies in the Hub's cache, never written to
        gallery_module.main(["--checkpoint", "someone/model", "--ship", "--cache-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "not one" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_cli_on_a_model_without_a_threshold_exits_2_with_one_line(checkpoint, tmp_path, monkeypatch, capsys):
    """A collapsed model's calibration refuses (ValueError): the command said so in a traceback."""
    monkeypatch.setattr(gallery_module.np, "percentile", lambda *args: 0.0)
    monkeypatch.setattr(gallery_module, "_fit_map", lambda embeddings: np.zeros((len(embeddings), 2), np.float32))
    assert gallery_module.main(["--checkpoint", str(checkpoint), "--clips", str(CLIPS), "--cache-dir",
                                str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == ("error: the model's surprise threshold on plausible clips is 0.0, not a positive number: its "
                   "predictions are exact or not numbers (a collapsed model, or weights that overflow)")
    assert not any(tmp_path.iterdir())


def test_cli_names_a_cache_folder_or_checkpoint_folder_it_cannot_use_in_one_line(built, model, checkpoint, tmp_path,
                                                                                monkeypatch, capsys):
    """BUG: a cache folder whose name is too long (or one it may not enter) raised from Path.exists, a folder it could
    not ship into raised from the write: tracebacks; --ship with a checkpoint name too long raised from is_dir."""
    monkeypatch.setattr(cli, "load_model", lambda path, device=None: model)
    monkeypatch.setenv("JEPA_LENS_CACHE", str(tmp_path / "default cache"))  # where a refusal that regressed builds
    too_long = tmp_path / ("c" * 300)
    assert gallery_module.main(["--clips", str(CLIPS + 1), "--cache-dir", str(too_long)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {too_long}/gallery-") and err.endswith(": File name too long\n")
    assert err.count("\n") == 1

    def read_only(*args):
        raise PermissionError(13, "Permission denied", str(checkpoint / "gallery.npz"))

    monkeypatch.setattr(gallery_module, "ship", read_only)
    assert gallery_module.main(["--checkpoint", str(checkpoint), "--clips", str(CLIPS), "--cache-dir", str(built[1]),
                                "--ship"]) == 1
    assert capsys.readouterr().err == f"error: could not write {checkpoint / 'gallery.npz'}: Permission denied\n"
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(model, "folder", blocker / "checkpoint")
    monkeypatch.setattr(gallery_module, "build_gallery", _refuse_to_build)  # BUG: found only after the build
    assert gallery_module.main(["--checkpoint", str(checkpoint), "--clips", str(CLIPS + 1), "--cache-dir",
                                str(tmp_path / "cache"), "--ship"]) == 1
    assert capsys.readouterr().err == f"error: cannot write the checkpoint folder {blocker / 'checkpoint'} (Not a " \
                                      "directory)\n"
    with pytest.raises(SystemExit) as stopped:
        gallery_module.main(["--checkpoint", str(too_long), "--ship"])
    assert stopped.value.code == 2 and "is not one" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # `--cache-dir "$DIR"` with DIR unset: not the default cache
        gallery_module.main(["--cache-dir", ""])
    assert stopped.value.code == 2 and "--cache-dir needs a folder" in capsys.readouterr().err


def test_cli_out_of_memory_or_a_model_that_overflows_is_one_line(model, checkpoint, tmp_path, monkeypatch, capsys):
    """BUG: running out of memory (a V-JEPA 2 on a laptop) was a traceback; so was a model whose outputs overflow,
    in UMAP's words ("Input contains NaN"), after every clip had been embedded."""
    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 9 GB.\nMore details")

    argv = ["--checkpoint", str(checkpoint), "--clips", str(CLIPS), "--cache-dir", str(tmp_path)]
    monkeypatch.setattr(cli, "load_model", no_memory)
    assert gallery_module.main(argv) == 2
    assert capsys.readouterr().err == ("error: cannot load checkpoint: DefaultCPUAllocator: not enough memory: you "
                                       "tried to allocate 9 GB.\n")
    monkeypatch.setattr(cli, "load_model", lambda path, device=None: model)
    monkeypatch.setattr(gallery_module, "build_gallery", no_memory)
    assert gallery_module.main(argv) == 2
    assert capsys.readouterr().err == ("error: out of memory (DefaultCPUAllocator: not enough memory: you tried to "
                                       "allocate 9 GB.); a smaller model, or a machine with more memory, needs less\n")
    monkeypatch.undo()
    huge = load_model(checkpoint, device="cpu")
    with torch.no_grad():
        for p in huge.net.parameters():
            p.fill_(1e30)  # finite, so loaded; float32 overflows on any clip
    monkeypatch.setattr(cli, "load_model", lambda path, device=None: huge)
    monkeypatch.setattr(gallery_module, "_fit_map", lambda embeddings: pytest.fail("every clip was embedded"))
    assert gallery_module.main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == ("error: the model's output is not a finite number (do its "
                                                        "weights overflow?)")
    assert not any(tmp_path.iterdir())


def test_cli_with_a_missing_checkpoint_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JEPA_LENS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "jepa_demo.gallery", "--checkpoint", str(tmp_path / "nothing")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "nothing" in result.stderr
    assert not (tmp_path / "cache").exists()
