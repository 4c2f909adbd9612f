"""The reference gallery behind the app's "nearest neighbours" and "embedding map" views.

A gallery is `num_clips` clips of the synthetic world (seeds from `GALLERY_SEED` up), their L2-normalised embeddings
under one model, a 2-D UMAP map of those embeddings, and the surprise threshold calibrated on plausible clips (the
per-step surprise they exceed only 5 % of the time). Building one takes seconds to minutes (V-JEPA 2 on a CPU: an hour
or more), so `load_or_build_gallery` keeps it on disk, in a file named for a fingerprint of the model's weights and
config and for the gallery settings: another checkpoint or setting never reads a stale file, and a damaged file is
rebuilt. A local checkpoint folder can also carry its own gallery and threshold files (`--ship`), read before the
cache: the shipped checkpoints do, so a fresh clone's app starts without building anything. Frames are not stored;
`gallery_clip` re-renders them from their seed. A new clip is searched exactly (`nearest`) and placed on the map from
its nearest gallery clips (`place_on_map`), never by running UMAP again. Everything is numpy; this module knows nothing
about Gradio, plots or how the app lays out its views.

Precompute the cache (what `make install` runs; a no-op when the checkpoint carries its gallery and the model runs on
the CPU: a GPU computes in bf16, whose gallery is its own), or with `--ship`
write the gallery into the checkpoint folder itself (how the shipped ones got theirs; stale ones there are removed):

    python -m jepa_demo.gallery [--checkpoint checkpoints/default] [--clips 300] [--cache-dir DIR] [--ship]
"""

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import DEFAULT_CHECKPOINT, atomic_write, check_writable_folder, first_line
from .cli import Once, OneLineParser, check_finite, load_or_say_why, out_of_memory, print_any_name, print_result, say
from .config import to_dict
from .inference import JEPAModel
from .world import WorldConfig, render_clip

# jepa_demo.evaluate.HELD_OUT_SEED + 2_000_000: above training seeds and the evaluation's blocks (up to +1_700_000).
# Written out so that importing this module does not import the evaluation (and scikit-learn); a test checks it.
GALLERY_SEED = 1_002_000_000
# The app's example clips, a million above: shown as clips the model never saw, so never a training seed either. The
# 8th seed of that block, a scene of three objects under gravity in which every kind of violation fits one start.
EXAMPLE_SEED = GALLERY_SEED + 1_000_007
GALLERY_FORMAT = 7  # bump when what is stored or how it is computed (the world's clips and labels too) changes: older
# cache files are then ignored. 4: collisions at walls and the direction label (world.py); 5: the fingerprint covers
# the settings the model runs with; 6: shapes drawn inside the circle they collide as, main_shape by drawn area;
# 7: bounces under gravity keep the height they fall from
DEFAULT_CLIPS = 300
MIN_CLIPS = 10  # UMAP's spectral start fails below 4 points, and a map of a handful of clips says nothing
_EMBED_SHARE = 0.35  # of the progress bar: the map (import, numba compilation, fit) is ~2/3 of a machine's first build
THRESHOLD_PERCENTILE = 95
_THRESHOLD_CLIPS = 24  # plausible clips, twice the model's window long so the surprise window slides

Progress = Callable[[float, str], None]


@dataclass
class Gallery:
    seeds: np.ndarray  # (N,) int64: clip i is render_clip(seeds[i]) at the model's frame size and clip length
    labels: list[dict]  # N label dicts, as `jepa_demo.world` makes them
    embeddings: np.ndarray  # (N, D) float32: unit length after removing `center`
    center: np.ndarray  # (D,) float32: the mean of the gallery's unit embeddings
    coords: np.ndarray  # (N, 2) float32: the UMAP map
    fingerprint: str  # `model_fingerprint` of the model that embedded the clips
    surprise_threshold: float  # per-step surprise above which plausible clips go only (100 - THRESHOLD_PERCENTILE) %

    def __post_init__(self):
        n = len(self.seeds)
        if (self.seeds.shape != (n,) or len(self.labels) != n or self.embeddings.ndim != 2
                or len(self.embeddings) != n or self.coords.shape != (n, 2)
                or self.center.shape != self.embeddings.shape[1:]):
            raise ValueError(f"gallery parts disagree: seeds {self.seeds.shape}, {len(self.labels)} labels, "
                             f"embeddings {self.embeddings.shape}, coords {self.coords.shape}")


def model_fingerprint(model: JEPAModel) -> str:
    """16 hex digits of sha256 over every weight (name, dtype, shape, bytes; keys sorted), the config and the dtype
    the model computes in: any changed weight or setting changes it, and two loads of one checkpoint share it on any
    device that computes alike. A gallery embedded in float32 is not compared with bfloat16 queries: measured from the
    gallery's mean, similarities are small differences of near-identical vectors, which bfloat16's rounding moves."""
    digest = hashlib.sha256()
    state = model.net.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # raw bytes: also covers bfloat16
    # A V-JEPA 2 record names where it was loaded from ("./vj2", "/abs/vj2", a Hub id): the same model, one gallery.
    described = {key: value for key, value in model.config.items() if key != "source"}
    digest.update(json.dumps(described, sort_keys=True).encode())
    # and what it runs with, which the record need not say: fixed sin-cos positions are no weights, so one network
    # under another frame count or preprocessing (a JEPAModel built by hand, defaults a config.json leaves out) embeds
    # otherwise
    settings = {"model": to_dict(model.cfg), "preprocess": to_dict(model.preprocess)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    if model.compute_dtype != torch.float32:  # float32 galleries keep the names they had
        digest.update(str(model.compute_dtype).encode())
    return digest.hexdigest()[:16]


def _world(model: JEPAModel) -> WorldConfig:
    """The default world (gravity, occluders, 1-3 objects all vary) at the frame size and length the model sees."""
    return WorldConfig(size=model.preprocess.img_size, num_frames=model.cfg.num_frames)


# -------------------------------------------------------------------------------------------------------- building


def build_gallery(model: JEPAModel, num_clips: int = DEFAULT_CLIPS, progress: Progress | None = None) -> Gallery:
    """Render, embed and map `num_clips` clips. `progress(fraction, message)`, if given, is told now and then."""
    if isinstance(num_clips, bool) or not isinstance(num_clips, (int, np.integer)) or num_clips < MIN_CLIPS:
        raise ValueError(f"num_clips must be a whole number of at least {MIN_CLIPS}, got {num_clips!r}")
    report = progress or (lambda fraction, message: None)
    seeds = GALLERY_SEED + np.arange(num_clips, dtype=np.int64)
    labels, raw = _embed_clips(model, seeds, report)
    center = raw.mean(axis=0)
    embeddings = _unit(raw - center)  # (N, D)
    report(_EMBED_SHARE, "fitting the 2-D map (UMAP)")
    coords = _fit_map(embeddings)
    report(0.9, "calibrating the surprise threshold on plausible clips")
    threshold = surprise_threshold(model)
    report(1.0, "gallery ready")
    return Gallery(seeds, labels, embeddings, center, coords, model_fingerprint(model), threshold)


def surprise_threshold(model: JEPAModel) -> float:
    """The gallery's threshold: per-step surprise on the first plausible gallery clips (a few seconds on 2 cores).
    Also what a second model's curve is measured against when two are compared on one clip."""
    return calibrate_surprise(model, GALLERY_SEED + np.arange(_THRESHOLD_CLIPS, dtype=np.int64))


def cached_surprise_threshold(model: JEPAModel, cache_dir=None) -> float:
    """`surprise_threshold(model)`, kept beside the galleries (in the checkpoint folder or the cache folder): the app
    calibrates the pixel baseline's at every start otherwise (~9 s on 2 cores). Named by the model's fingerprint."""
    path = cache_folder(cache_dir) / _threshold_name(model_fingerprint(model))
    for found in _places(model, path):
        try:
            return _checked_threshold(float(json.loads(found.read_text())["surprise_threshold"]))
        except (OSError, ValueError, KeyError, TypeError):  # none there, unreadable or no threshold (JSON holds NaN,
            pass  # 0): next place, then calibrate
    threshold = surprise_threshold(model)
    try:
        _write_threshold(path, threshold)
    except OSError:
        pass  # an unwritable cache folder (a gallery build warns about it): calibrate on every start
    return threshold


def calibrate_surprise(model: JEPAModel, seeds: np.ndarray) -> float:
    """The THRESHOLD_PERCENTILE-th percentile of per-step surprise over plausible clips of these seeds."""
    world = WorldConfig(size=model.preprocess.img_size, num_frames=2 * model.cfg.num_frames)
    steps = [model.surprise(render_clip(int(seed), world).frames).per_step for seed in seeds]
    return _checked_threshold(float(np.percentile(np.concatenate(steps), THRESHOLD_PERCENTILE)))


def _checked_threshold(threshold: float) -> float:
    """Every curve the app draws is divided by it: 0 or NaN would draw nothing, or infinities, as an answer."""
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"the model's surprise threshold on plausible clips is {threshold}, not a positive number: "
                         "its predictions are exact or not numbers (a collapsed model, or weights that overflow)")
    return threshold


def _embed_clips(model: JEPAModel, seeds: np.ndarray, report: Progress) -> tuple[list[dict], np.ndarray]:
    world, labels, vectors = _world(model), [], []
    every = max(1, len(seeds) // 20)
    report(0.0, f"embedding {len(seeds)} gallery clips")
    for i, seed in enumerate(seeds):
        clip = render_clip(int(seed), world)
        labels.append(clip.labels)
        vectors.append(check_finite(model.embed(clip.frames)))  # now, not after every clip in UMAP's words
        if (i + 1) % every == 0:
            report(_EMBED_SHARE * (i + 1) / len(seeds), f"embedded {i + 1}/{len(seeds)} gallery clips")
    return labels, _unit(np.stack(vectors))  # (N, D)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _fit_map(embeddings: np.ndarray) -> np.ndarray:
    import umap  # 2-15 s: paid by whoever builds a gallery, not by everyone who imports this module

    _keep_umaps_compiled_code()
    # random_state makes UMAP single-threaded anyway; saying n_jobs=1 silences its warning about that.
    reducer = umap.UMAP(n_neighbors=min(15, len(embeddings) - 1), min_dist=0.1, metric="cosine", random_state=0,
                        n_jobs=1)
    return reducer.fit_transform(embeddings).astype(np.float32)  # (N, 2)


@functools.cache
def _keep_umaps_compiled_code() -> None:
    """umap-learn compiles its numba functions in every process that fits a map (~11 s on one core: most of a small
    gallery's build) and keeps all but one of them in memory only: kept on disk too, in numba's own cache
    (NUMBA_CACHE_DIR if set, else beside umap's files, else the user's cache folder), a later process loads them in a
    tenth of a second. Numba keys each entry on its source file and this CPU, so an upgraded umap or another machine
    compiles anew; where numba finds no folder it may write, the fit compiles as before."""
    from numba.core.registry import CPUDispatcher

    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] != "umap":
            continue
        for function in vars(module).values():
            if isinstance(function, CPUDispatcher) and function.__module__ == name:  # umap's own, not imported ones
                try:
                    function.enable_caching()
                except RuntimeError:  # "no locator available": nowhere to write
                    return


# ----------------------------------------------------------------------------------------------------------- cache


def cache_folder(cache_dir=None) -> Path:
    """`cache_dir` if given, else $JEPA_LENS_CACHE if set, else jepa-lens in the user's cache folder
    ($XDG_CACHE_HOME, else ~/.cache), with `~` expanded (the variables are read at each call: tests and apps may set
    them late)."""
    given = cache_dir or os.environ.get("JEPA_LENS_CACHE")
    if not given:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        if os.path.isabs(xdg):  # the XDG spec has a relative one ignored: it would move with the working folder
            return Path(xdg) / "jepa-lens"
    try:
        return Path(given or Path.home() / ".cache" / "jepa-lens").expanduser()
    except RuntimeError:  # ~nosuchuser (a docker or systemd setting: no shell expands it), or no home to be found
        raise ValueError(f"cache folder {given or '~/.cache/jepa-lens'}: no home folder to expand ~ to") from None


def gallery_cache_path(model: JEPAModel, cache_dir=None, num_clips: int = DEFAULT_CLIPS) -> Path:
    """The cache file for this model and these settings (it may not exist yet)."""
    return _cache_path(cache_dir, model_fingerprint(model), num_clips)


def _cache_path(cache_dir, fingerprint: str, num_clips: int) -> Path:
    return cache_folder(cache_dir) / _gallery_name(fingerprint, num_clips)


def _gallery_name(fingerprint: str, num_clips: int) -> str:
    return f"gallery-{fingerprint}-{num_clips}clips-seed{GALLERY_SEED}-v{GALLERY_FORMAT}.npz"


def _threshold_name(fingerprint: str) -> str:
    return f"threshold-{fingerprint}-seed{GALLERY_SEED}-v{GALLERY_FORMAT}.json"


def served_folder(cache_dir=None) -> Path:
    """The part of the cache folder the app may hand to browsers (thumbnails, example clips), and nothing else: the
    cache folder itself may be a shared one ($JEPA_LENS_CACHE=~/.cache holds the Hub's token)."""
    return cache_folder(cache_dir) / "jepa-lens-served"


def thumbnail_folder(cache_dir, fingerprint: str) -> Path:
    """Where the gallery clips' GIF thumbnails go: named like the gallery's file, so thumbnails from other seeds or an
    older format are never shown."""
    return served_folder(cache_dir) / f"thumbnails-{fingerprint}-seed{GALLERY_SEED}-v{GALLERY_FORMAT}"


def _places(model: JEPAModel, cached: Path) -> list[Path]:
    """Where a gallery or threshold file may lie, in the order read: prebuilt in the model's checkpoint folder (or Hub
    snapshot), then the cache file `cached`."""
    return [model.folder / cached.name, cached] if model.folder else [cached]


def load_or_build_gallery(model: JEPAModel, cache_dir=None, num_clips: int = DEFAULT_CLIPS,
                          progress: Progress | None = None) -> Gallery:
    """The gallery from `find_gallery` if there is one, else built and written to the cache (atomically)."""
    found = find_gallery(model, cache_dir, num_clips)
    return found[0] if found else _build_into_cache(model, cache_dir, num_clips, progress)[0]


def find_gallery(model: JEPAModel, cache_dir=None, num_clips: int = DEFAULT_CLIPS) -> tuple[Gallery, Path] | None:
    """The first readable gallery file for this model and settings, shipped in its checkpoint folder or in the cache
    folder, and where it lies; None if there is none (a damaged one is skipped with a warning)."""
    fingerprint = model_fingerprint(model)
    path = _cache_path(cache_dir, fingerprint, num_clips)
    for found in _places(model, path):
        if found.exists():
            try:
                return _read(found, fingerprint, num_clips), found
            except Exception as err:  # np.load fails on a damaged file in many ways; each one just means "not this"
                warnings.warn(f"{found}: unreadable gallery file ({type(err).__name__}: {err}); not used",
                              stacklevel=3)
    return None


def _build_into_cache(model: JEPAModel, cache_dir, num_clips: int, progress: Progress | None,
                      must_cache: bool = False) -> tuple[Gallery, Path | None]:
    """A new gallery, and the cache file it was written to (None when the cache folder is not writable, which
    `must_cache` makes an OSError instead)."""
    gallery = build_gallery(model, num_clips, progress)
    path = _cache_path(cache_dir, gallery.fingerprint, num_clips)
    try:
        _write(path, gallery)
    except OSError as err:  # e.g. a read-only home on a hosted server: work without the cache, say so once
        if must_cache:
            raise
        where = "a writable cache folder" if cache_dir else "JEPA_LENS_CACHE set to a writable folder"  # cache_folder
        warnings.warn(f"cannot cache the gallery in {path.parent} ({err.strerror or err}); {where} would start "
                      "faster next time", stacklevel=3)
        return gallery, None
    remove_old_formats(cache_dir)
    return gallery, path


# The names _gallery_name, _threshold_name and thumbnail_folder give, of any format: the cache folder may be shared
# ($JEPA_LENS_CACHE=~/.cache), so what is removed as ours must be named as ours
_OUR_FILE = re.compile(r"(?:gallery-[0-9a-f]{16}-\d+clips|threshold-[0-9a-f]{16})-seed\d+-v(\d+)\.(?:npz|json)")
_OUR_THUMBNAILS = re.compile(r"thumbnails-[0-9a-f]{16}-seed\d+-v(\d+)")


def remove_galleries(folder: Path) -> None:
    """Remove the gallery and threshold files in a checkpoint folder whose weights a new run replaces: built for the
    old weights, they are never read again, and `train push` would upload them beside the new ones."""
    for path in _gallery_files(folder):
        path.unlink(missing_ok=True)


def _gallery_files(folder: Path) -> list[Path]:
    return [path for path in [*folder.glob("gallery-*.npz"), *folder.glob("threshold-*.json")]
            if _OUR_FILE.fullmatch(path.name)]


def remove_old_formats(cache_dir=None) -> None:
    """Remove what older gallery formats left in the cache folder, never read again: galleries, thresholds and
    thumbnail folders (up to one GIF per gallery clip). Other checkpoints' current ones stay, and a newer format's: a
    newer install may share the cache, and would rebuild its files as this one rebuilt its own."""
    for old in _gallery_files(cache_folder(cache_dir)):
        if _format_of(old) < GALLERY_FORMAT:
            with contextlib.suppress(OSError):  # gone already (another process), or not ours to remove
                old.unlink()
    for folder in served_folder(cache_dir).glob("thumbnails-*"):
        match = _OUR_THUMBNAILS.fullmatch(folder.name)
        if match and int(match[1]) < GALLERY_FORMAT:
            shutil.rmtree(folder, ignore_errors=True)  # or another process's removal got there first


def _format_of(path: Path) -> int:
    """The gallery format a file of `_gallery_files` was written in."""
    return int(_OUR_FILE.fullmatch(path.name)[1])


def _read(path: Path, fingerprint: str, num_clips: int) -> Gallery:
    with np.load(path, allow_pickle=False) as data:
        gallery = Gallery(seeds=data["seeds"], labels=json.loads(str(data["labels"])), embeddings=data["embeddings"],
                          center=data["center"], coords=data["coords"], fingerprint=str(data["fingerprint"]),
                          surprise_threshold=_checked_threshold(float(data["surprise_threshold"])))
        stored_format = int(data["format"])
    if (stored_format, gallery.fingerprint, len(gallery.seeds)) != (GALLERY_FORMAT, fingerprint, num_clips):
        raise ValueError("it was written for another model, gallery size or format")
    return gallery


def _write(path: Path, gallery: Gallery) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
            np.savez(f, seeds=gallery.seeds, embeddings=gallery.embeddings, center=gallery.center,
                     coords=gallery.coords, labels=np.array(json.dumps(gallery.labels)),
                     fingerprint=np.array(gallery.fingerprint),
                     surprise_threshold=np.array(gallery.surprise_threshold), format=np.array(GALLERY_FORMAT))
    atomic_write(path, write)


def _write_threshold(path: Path, threshold: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps({"surprise_threshold": threshold})))


def ship(model: JEPAModel, gallery: Gallery) -> list[Path]:
    """Write `gallery` and its threshold into the model's checkpoint folder, removing gallery and threshold files left
    there for other weights or an older format (a newer format's stay: a newer install shipped them, and reads them).
    Returns the two files."""
    if model.folder is None:
        raise ValueError("only a model loaded from a checkpoint folder can carry its gallery")
    if gallery.fingerprint != model_fingerprint(model):
        raise ValueError("the gallery was built for another model")
    current = (_gallery_name(gallery.fingerprint, len(gallery.seeds)), _threshold_name(gallery.fingerprint))
    for old in _gallery_files(model.folder):
        if _format_of(old) < GALLERY_FORMAT or f"-{gallery.fingerprint}-" not in old.name:
            old.unlink()
    _write(model.folder / current[0], gallery)
    _write_threshold(model.folder / current[1], gallery.surprise_threshold)
    return [model.folder / name for name in current]


# ------------------------------------------------------------------------------------------------------- searching


def nearest(gallery: Gallery, embedding: np.ndarray, k: int = 8) -> list[tuple[int, float]]:
    """The k gallery clips most similar to `embedding` (cosine from the gallery's mean, exact): (index, similarity),
    most similar first."""
    similarities = _similarities(gallery, embedding)  # (N,)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(similarities):
        raise ValueError(f"k must be a whole number from 1 to {len(similarities)} (the gallery's size), got {k!r}")
    top = np.argpartition(-similarities, k - 1)[:k]
    top = top[np.argsort(-similarities[top])]
    return [(int(i), float(similarities[i])) for i in top]


def _similarities(gallery: Gallery, embedding: np.ndarray) -> np.ndarray:
    query = np.asarray(embedding, dtype=np.float32)
    dim = gallery.embeddings.shape[1]
    if query.shape != (dim,):
        raise ValueError(f"embedding must have shape ({dim},) like the gallery's, got {query.shape}: was it made "
                         "by the model the gallery was built for?")
    if not np.isfinite(query).all() or not np.any(query):
        raise ValueError("embedding must be finite and not all zeros")
    # Mean-pooled clip embeddings share a large common direction (every clip of the world has the same background),
    # so raw cosine similarities all sit near 1; measured from the gallery's mean they spread over [-1, 1].
    return gallery.embeddings @ _unit(_unit(query) - gallery.center)  # (N,)


def place_on_map(gallery: Gallery, embedding: np.ndarray, k: int = 10) -> np.ndarray:
    """Where a clip goes on the gallery's map without running UMAP: (2,) float32, a weighted mean of the map positions
    of its k nearest gallery clips."""
    found = nearest(gallery, embedding, k)
    index = np.array([i for i, _ in found])
    distance = np.maximum(1.0 - np.array([s for _, s in found], dtype=np.float64), 0.0)  # (k,) cosine distance
    # Inverse-distance weights rather than a softmax over similarities: no temperature to fit to each model's spread
    # of similarities (narrow for some models even measured from the mean), and a clip already in the gallery lands on
    # its own point.
    weights = 1.0 / (distance + 1e-6)
    return (weights @ gallery.coords[index] / weights.sum()).astype(np.float32)


def gallery_clip(gallery: Gallery, index: int, model: JEPAModel) -> np.ndarray:
    """The frames of gallery clip `index`, re-rendered from its seed at the model's size: uint8 (T, H, W, 3)."""
    if not 0 <= index < len(gallery.seeds):
        raise IndexError(f"gallery clip {index} does not exist: the gallery has {len(gallery.seeds)} clips")
    return render_clip(int(gallery.seeds[index]), _world(model)).frames


def label_names(gallery: Gallery) -> list[str]:
    """Labels worth colouring the map by: a str, int or bool in every clip, with at least two different values (so not
    lists, floats, missing values, the per-clip seed, or a label every clip shares, like a plain world's background)."""
    def usable(key):
        values = [labels.get(key) for labels in gallery.labels]
        return key != "seed" and all(isinstance(v, (str, int, bool)) for v in values) and len(set(values)) > 1
    return [key for key in gallery.labels[0] if usable(key)]


# ---------------------------------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m jepa_demo.gallery",
                                     description="Build the reference gallery of a checkpoint into its disk cache "
                                     "(or, with --ship, into the checkpoint folder).")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), action=Once,
                        help="checkpoint folder or Hub repo id")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS,
                        help=f"number of gallery clips (the app reads the {DEFAULT_CLIPS}-clip gallery: another "
                             "count is for the library's Explorer(num_clips=...))")
    parser.add_argument("--cache-dir", help="default: $JEPA_LENS_CACHE, else $XDG_CACHE_HOME/jepa-lens, else "
                                            "~/.cache/jepa-lens")
    parser.add_argument("--ship", action="store_true",
                        help="also write the gallery into the (local) checkpoint folder, to commit or push with it "
                             "(computed on the CPU, in float32, as the CPUs that read it compute)")
    args = parser.parse_args(argv)
    if args.clips < MIN_CLIPS:
        parser.error(f"--clips must be at least {MIN_CLIPS}")
    if args.cache_dir is not None and not args.cache_dir.strip():  # an unset $DIR: not the default cache, silently
        parser.error("--cache-dir needs a folder")
    # never into the Hub's download cache; os.path.isdir, as a name too long must be refused, not raise
    if args.ship and not os.path.isdir(os.path.expanduser(args.checkpoint)):
        parser.error(f"--ship writes into a local checkpoint folder; {args.checkpoint} is not one")
    print_any_name()
    try:
        with warnings.catch_warnings():  # the library's warnings (a cache it cannot write), one line each as ours
            warnings.showwarning = lambda message, *args, **kwargs: say(f"warning: {message}")
            return _build_and_ship(args)
    except KeyboardInterrupt:  # files are written whole or not at all
        say("interrupted")  # best effort: `... 2>&1 | head` ends its reader with the same Ctrl-C
        return 130


def _cannot_keep(model: JEPAModel, args) -> str | None:
    """Why the folder the command writes its product into (the checkpoint's with --ship, else the cache) cannot be
    written, or None."""
    folder, what, hint = (model.folder, "the checkpoint folder", "") if args.ship else \
        (cache_folder(args.cache_dir), "the cache folder", "; --cache-dir or JEPA_LENS_CACHE can name one it can write")
    try:
        check_writable_folder(folder)
    except OSError as err:
        return f"cannot write {what} {folder} ({err.strerror or err}){hint}"
    return None


def _build_and_ship(args) -> int:
    # a shipped gallery is for CPUs: a GPU's bf16 would give other files, named so
    if (model := load_or_say_why(args.checkpoint, device="cpu" if args.ship else None)) is None:
        return 2
    start = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        say(f"{fraction:4.0%} {message}")  # best effort: a stderr that fails must not abandon minutes of building

    try:
        if found := find_gallery(model, args.cache_dir, args.clips):
            gallery, where = found[0], f"read from {found[1]}"
        else:
            if why := _cannot_keep(model, args):  # the build takes minutes, an hour for V-JEPA 2: refused before it
                print(f"error: {why}", file=sys.stderr)
                return 1
            try:  # without --ship the cache file is what the command makes: no file, no success
                gallery, written = _build_into_cache(model, args.cache_dir, args.clips, progress,
                                                     must_cache=not args.ship)
            except OSError as err:  # e.g. the disk filled during the build
                print(f"error: the gallery was built but could not be cached in {cache_folder(args.cache_dir)} "
                      f"({err.strerror or err})", file=sys.stderr)
                return 1
            where = f"built into {written}" if written else "built, not cached"
    except ValueError as err:  # a model the gallery cannot be built for (a collapsed one's threshold)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a cache folder that cannot be looked up (a name too long, one it may not enter)
        print(f"error: {err.filename or 'the cache folder'}: {err.strerror or err}", file=sys.stderr)
        return 1
    except (RuntimeError, MemoryError) as err:
        if isinstance(err, RuntimeError) and not out_of_memory(err):
            raise
        print(f"error: out of memory ({first_line(err)}); a smaller model, or a machine with more memory, needs less",
              file=sys.stderr)
        return 2
    lines = [f"{args.checkpoint}: gallery of {len(gallery.seeds)} clips {where} in {time.perf_counter() - start:.1f} s"]
    if args.ship:
        try:
            lines.append(" ".join(["shipped:", *map(str, ship(model, gallery))]))
        except OSError as err:  # a read-only checkpoint folder, a full disk: each file is written whole or not at all
            print(f"error: could not write {err.filename or 'into the checkpoint folder'}: {err.strerror or err}",
                  file=sys.stderr)
            return 1
    return print_result("\n".join(lines), "the files stand")


if __name__ == "__main__":
    sys.exit(main())
