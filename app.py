"""JEPA Lens web app: four views of any clip through a video JEPA.

    python app.py                      # http://127.0.0.1:7860 on the shipped checkpoint (what `make demo` runs)
    JEPA_LENS_HOSTED=1 python app.py   # hosted mode: only shipped checkpoints (and JEPA_LENS_ALLOWED_MODELS Hub
                                       # ids), never a server path

UI wiring only: every number, image and figure comes from `jepa_demo.explore`. Each view is also a named API endpoint
(`/predict_masked`, `/neighbors`, `/embedding_map`, `/surprise`) whose first input is the video file, so the app can
be scripted with `gradio_client`.
"""

# ruff: noqa: E402  (Gradio reads its settings when imported: they are checked before the import below)
import asyncio
import contextlib
import ctypes
import errno
import functools
import hashlib
import ipaddress
import math
import os
import re
import reprlib
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path

from jepa_demo.checkpoint import check_writable_folder, is_hub_repo_id


def whole_number_setting(name: str, default: int, low: int, high: int | None = None) -> int:
    """An integer setting from the environment; a bad one stops the app at start, in one line."""
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        wanted = f"from {low} to {high}" if high is not None else f"of at least {low}"
        sys.exit(f"{name}={text!r}: expected a whole number {wanted}")
    return value


def switch_setting(name: str) -> bool:
    """An on/off setting from the environment: 1/true/yes/on or 0/false/no/off (any case), unset or empty for off; any
    other value stops the app at start, in one line (JEPA_LENS_HOSTED=false turned hosted mode on, silently)."""
    text = os.environ.get(name, "")
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    sys.exit(f"{name}={text!r}: expected 1 or 0 (true or false)")


def server_port() -> int:
    """Gradio's own setting for the port the app serves on."""
    return whole_number_setting("GRADIO_SERVER_PORT", 7860, low=1, high=65535)


def stop_unless_writable(folder: Path, what: str, setting: str) -> None:
    """Stop the app at start, in one line naming the setting that moves it, when it cannot write `folder`."""
    try:
        check_writable_folder(folder)
    except OSError as err:  # e.g. /tmp/gradio made by another user of this machine
        sys.exit(f"JEPA Lens cannot write {what} {folder} ({err.strerror or err}); set {setting} to a folder it can "
                 "write")


def check_gradio_folder() -> None:
    """Gradio's folder, where it writes when imported and keeps every upload and picture the views return."""
    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    stop_unless_writable(folder, "Gradio's folder", "GRADIO_TEMP_DIR")


# Checked before Gradio's import, which ended in a traceback on a bad port or a folder it cannot write
server_port()
check_gradio_folder()
# The app's own settings too: a bad one stops it at once, not after the five seconds of importing Gradio
HOSTED = switch_setting("JEPA_LENS_HOSTED") or bool(os.environ.get("SPACE_ID"))  # a Space is hosted whatever it says
# Hub repo ids a hosted deployment may load besides the shipped checkpoints (comma-separated); never a local path.
ALLOWED_HUB_IDS = list(dict.fromkeys(  # each once: a repeated id was offered, warmed up and counted twice
    name.strip() for name in os.environ.get("JEPA_LENS_ALLOWED_MODELS", "").split(",") if name.strip()))
if bad := [name for name in ALLOWED_HUB_IDS if not is_hub_repo_id(name)]:
    sys.exit(f"JEPA_LENS_ALLOWED_MODELS: {', '.join(bad)} is not a Hub repo id (USER/NAME)")
# Seconds an upload (and each picture the views return) stays in Gradio's folder: long enough to open every view of
# one clip, then swept away, so nothing a visitor gave is kept on disk (in memory, the last few decodings of uploads
# stay until newer ones replace them: explore.load_clip).
FILE_LIFETIME = whole_number_setting("JEPA_LENS_FILE_LIFETIME", 900, low=1)
SWEEP_EVERY = max(1, min(FILE_LIFETIME // 2, 5))  # seconds; a file outlives its lifetime by at most this much

import gradio as gr
from gradio_client.utils import is_http_url_like
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

from jepa_demo import CheckpointError, load_model, write_video
from jepa_demo.checkpoint import SHIPPED_DIR, SHIPPED_NAMES, first_line, quiet_hub_client
from jepa_demo.cli import out_of_memory, stop_on_signals_as_on_ctrl_c, write_nowhere
from jepa_demo.explore import MAX_FRAMES, MAX_MEGABYTES, MAX_SECONDS, ClipError, Explorer, ExplorerCache
from jepa_demo.gallery import EXAMPLE_SEED, THRESHOLD_PERCENTILE, cache_folder, served_folder
from jepa_demo.video import VIDEO_SUFFIXES, Clip
from jepa_demo.world import VIOLATIONS, WorldConfig, make_pair, render_clip, with_detail


def shipped_checkpoints(folder: Path) -> dict[str, Path]:
    """Name -> folder of the checkpoints under `folder`: each holding a config.json, and a shipped one that has none
    while it is retrained (until its first save): read once, at start, it would be missing until a restart (the
    baseline's curve without a word, or `default` looked for in the working folder); offered, loading it says why."""
    return {path.name: path for path in sorted(folder.iterdir())
            if (path / "config.json").is_file() or (path.name in SHIPPED_NAMES and path.is_dir())}


SHIPPED = shipped_checkpoints(SHIPPED_DIR)
PIXEL_BASELINE = "pixel-baseline"  # its surprise curve is drawn beside every other checkpoint's
MASKS = ["multiblock", "tube", "future", "random"]
SESSIONS_KEPT = 64  # see launch: sessions whose outputs Gradio keeps in memory; twice the queue's length (max_size)
# Fitted to a phone's width, a strip of eight frames was some 40 pixels tall, a token a pixel or two: on a narrow
# screen a strip keeps a readable height and scrolls sideways instead.
STRIP_CSS = """
@media (max-width: 700px) {
  .strip .image-container { overflow-x: auto; }
  .strip .image-container img { max-width: none; width: auto; height: 128px; }
}
"""
MODEL_CALLS = 2  # views computed at once; more only share the same cores, and each holds its activations in memory
# Gradio keeps each file in a folder named by a hash of its content (SHA-256 hex digits).
CONTENT_FOLDER = re.compile(r"[0-9a-f]{64}")
# The empty file Gradio 6.31's gr.File(type="filepath") opens in its folder on every request and never uses or removes
# (`File._process_single_file`): tempfile's default name, tmp + 8 characters.
PLACEHOLDER = re.compile(r"tmp[a-z0-9_]{8}")

try:  # on Hugging Face ZeroGPU Spaces, the model calls get a GPU; elsewhere this is a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn


class Refusal(gr.Error):
    """What the app tells a user it will not do, and why: a gr.Error that stays on screen until closed. Gradio's lasts
    10 s, then each output of the view shows a bare 'Error' badge, the reason gone for whoever looked away."""

    def __init__(self, message: str):
        super().__init__(message, duration=None)


def _load(checkpoint: str):
    if checkpoint in SHIPPED:
        source = SHIPPED[checkpoint]
    elif HOSTED and checkpoint not in ALLOWED_HUB_IDS:
        raise Refusal(f"unknown checkpoint {checkpoint!r}: this hosted demo offers "
                      f"{', '.join([*SHIPPED, *ALLOWED_HUB_IDS])}")
    else:
        source = checkpoint
    try:
        return load_model(source)
    except CheckpointError as err:
        raise Refusal(str(err)) from None


def _pixel_baseline():
    """One copy of the pixel baseline, shared by every checkpoint's Explorer until its folder is retrained."""
    return _pixel_baseline_of(_explorer_key(PIXEL_BASELINE))


@functools.lru_cache(maxsize=1)
def _pixel_baseline_of(key: str):
    return _load(PIXEL_BASELINE)


def _explorer(checkpoint: str, progress) -> Explorer:
    model = _load(checkpoint)
    baseline, because = None, None
    if PIXEL_BASELINE in SHIPPED and model.objective != "pixel":
        try:
            baseline = _pixel_baseline()
        except gr.Error as err:  # its folder retrained, emptied until the first save: only the extra curve is lost
            because = err.message
    return Explorer(model, progress=progress, baseline=baseline, no_baseline_because=because)


# Models and galleries, shared read-only by every session: a cache, not per-user state.
EXPLORERS = ExplorerCache(_explorer)


def explorer_for(checkpoint: str, progress=None) -> Explorer:
    """The checkpoint's Explorer; `progress` is a gr.Progress, shown while a new one is built."""
    # An API call's null or empty string; or a list, which Gradio's Dropdown passes on even for a single choice
    if not checkpoint or not isinstance(checkpoint, str):
        offered = [*SHIPPED, *ALLOWED_HUB_IDS] if HOSTED else [*SHIPPED, "a folder or a Hub repo id"]
        raise Refusal(f"Pick a checkpoint: {', '.join(offered)}.")
    report = None if progress is None else lambda f, message: progress(f, desc=message)
    key = _explorer_key(checkpoint)
    if PIXEL_BASELINE in SHIPPED:  # its curve is drawn beside the checkpoint's: retrained, it gives a new Explorer
        key = f"{key} beside {_explorer_key(PIXEL_BASELINE)}"
    return EXPLORERS.get(checkpoint, report, key=key)


def _explorer_key(checkpoint: str) -> str:
    """What the cache keeps a checkpoint's Explorer under: for a folder (a shipped name or, locally, a path), the
    folder with the size and time of every file loading can read there (config, weights or their shards, a V-JEPA 2
    processor file), so that every name of it shares one and a folder retrained or reconfigured while the app runs gets
    a new one; for anything else (a Hub id), the name."""
    folder = SHIPPED.get(checkpoint) or (None if HOSTED or not checkpoint else checkpoint)
    if folder is None:  # hosted, only shipped folders are loaded; an empty name is refused when loading
        return checkpoint
    try:
        folder = Path(folder).expanduser()
        files = sorted(path for suffix in ("json", "safetensors") for path in folder.glob(f"*.{suffix}"))
        stats = {path.name: path.stat() for path in files}
        stamps = [(name, stat.st_size, stat.st_mtime_ns) for name, stat in stats.items()]
    except (OSError, RuntimeError, ValueError):  # ~ of an unknown user, a NUL byte, a file gone: loading says what is
        return checkpoint  # wrong with the name
    return f"{folder.resolve()} {stamps}" if stamps else checkpoint  # no such folder: a Hub id


def _explorer_and_clip(video_file, checkpoint: str, progress, view: str) -> tuple[Explorer, Clip]:
    """The checkpoint's Explorer and the upload decoded for it and `view`; a missing or swept upload is refused
    first, before a checkpoint is loaded (a Hub download, a gallery built) for nothing."""
    _check_upload(video_file)
    explorer = explorer_for(checkpoint, progress)
    try:
        return explorer, explorer.load(video_file, view)
    except ClipError:
        _check_upload(video_file)  # swept while it was decoded (opened three times): not 'not a readable video'
        raise


def _check_upload(video_file) -> None:
    if not video_file:
        raise Refusal("Upload a clip or pick an example first.")
    if is_http_url_like(str(video_file)):  # marked is_stream, a link passes refuse_links' check unfetched, to here
        raise Refusal(LINKS_REFUSED)
    if not os.path.exists(video_file):  # swept (sweep_files): the page still holds the upload's name
        minutes = FILE_LIFETIME // 60  # whole minutes only: 150 s said "2 minutes"
        kept = f"{minutes} minutes" if minutes > 1 and FILE_LIFETIME % 60 == 0 else f"{FILE_LIFETIME} seconds"
        raise Refusal(f"{Path(video_file).name} is no longer on the server: uploads are deleted {kept} after they "
                      "arrive. Upload it again.")


def _plain_errors(handler):
    """What the library refuses (ClipError, a clip too short for surprise, an unknown label: all ValueErrors) reaches
    the user as a gr.Error with its message, and so do running out of memory (a large checkpoint on a laptop) and a
    full disk while a view writes (the neighbours' thumbnails: the pictures a view returns Gradio writes after it, out
    of reach here); Gradio would otherwise show a bare 'Error'. Each gr.Error is chained to its cause:
    Gradio prints it to the server's log, so a ValueError that is a bug, not the user's input, says where it came
    from."""
    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:  # a ValueError too, whose str() is its message quoted
            raise
        except ValueError as err:
            raise Refusal(str(err)) from err
        except (MemoryError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and not out_of_memory(err):
                raise  # a bug: its traceback goes to the server's log
            # the views read a fixed number of frames of any upload, so a shorter clip rarely helps
            raise Refusal("Not enough memory on the server for this checkpoint: pick a smaller one (the shipped "
                          "ones are small).") from err
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Refusal("The server's disk is full: it could not write this view's results.") from err
            if err.errno is None:  # a message only: write_video's count of what ffmpeg wrote (a full disk, most
                # likely, but ffmpeg does not say), or imageio's words for ffmpeg failing
                raise Refusal(f"The server could not write this view's results: {err}") from err
            raise
    return wrapped


def _labelled(numbers: dict, video_file: str, checkpoint: str) -> dict:
    """A view's numbers, naming what they were computed from: the page may show another clip or checkpoint by the
    time they arrive."""
    return {"checkpoint": checkpoint, "clip": Path(video_file).name, **numbers}


# Each handler takes `progress=gr.Progress()`, the way Gradio hands in its progress tracker (so ruff's B008 is
# silenced there); it shows while a checkpoint seen for the first time gets its gallery built.
@gpu
@_plain_errors
def predict_masked(video_file, mask="multiblock", ratio=0.75, seed=0, checkpoint="default",
                   progress=gr.Progress()):  # noqa: B008
    if mask is None:  # an API null, which Gradio's choices check lets through: refused before the work, in its words
        raise Refusal(f"Pick a mask: {', '.join(MASKS)}.")
    if seed is None and mask != "future":  # an emptied seed box (or an API null): a bare "Error" further on
        raise Refusal("Give a seed, a whole number: it picks which tokens are hidden.")
    seed = 0 if seed is None else seed  # the future mask hides the last steps, whatever the seed
    explorer, clip = _explorer_and_clip(video_file, checkpoint, progress, "masked")  # a bad upload before the bank
    if not explorer.is_built("bank"):  # the first masked prediction of a checkpoint the app did not warm up
        progress(0.2, desc="first use of this checkpoint: encoding gallery patches for the decoded view")
        _ = explorer.bank
    progress(0.5, desc="predicting the hidden latents")
    view = explorer.masked(clip.frames, mask, ratio, seed, clip.source_frames)
    numbers = _labelled(view.numbers, video_file, checkpoint)
    return view.hidden, view.error, view.predicted_pca, view.target_pca, view.decoded, numbers


@gpu
@_plain_errors
def neighbors(video_file, k=8, checkpoint="default", progress=gr.Progress()):  # noqa: B008
    explorer, clip = _explorer_and_clip(video_file, checkpoint, progress, "neighbors")
    found = explorer.neighbors(clip.frames, k=int(k))
    items = [(str(hit["thumbnail"]), f"#{hit['index']} · similarity {_similarity_text(hit['similarity'])}")
             for hit in found]
    hits = [{key: hit[key] for key in ("index", "similarity", "labels")} for hit in found]
    return items, _labelled({"neighbors": hits}, video_file, checkpoint)


def _similarity_text(similarity: float) -> str:
    """Four decimals: the nearest clips' similarities often differ only in the fourth. One that rounds up to 1 is
    "> 0.9999", not 1.0000, which reads as the same clip."""
    text = f"{similarity:.4f}"
    return "> 0.9999" if text == "1.0000" and similarity < 1 else text


@gpu
@_plain_errors
def embedding_map(video_file, color_by="num_objects", checkpoint="default", progress=gr.Progress()):  # noqa: B008
    explorer, clip = _explorer_and_clip(video_file, checkpoint, progress, "map")
    figure, point = explorer.embedding_map(clip.frames, color_by)
    return figure, _labelled({"x": float(point[0]), "y": float(point[1]), "color_by": color_by}, video_file,
                             checkpoint)


def recolour_map(video_file, color_by="num_objects", checkpoint="default", progress=gr.Progress()):  # noqa: B008
    """The map in the colours just chosen, for the clip there is (none yet: only the choice changes): the map of the
    previous colours stayed, its numbers naming them, until the button was pressed again."""
    if not video_file:
        return gr.skip(), gr.skip()
    return embedding_map(video_file, color_by, checkpoint, progress)


@gpu
@_plain_errors
def surprise(video_file, checkpoint="default", progress=gr.Progress()):  # noqa: B008
    explorer, clip = _explorer_and_clip(video_file, checkpoint, progress, "surprise")
    if explorer.baseline is not None and not explorer.is_built("baseline_threshold"):
        progress(0.2, desc="first use: calibrating the pixel baseline's threshold on plausible clips")
        with contextlib.suppress(ValueError):  # a baseline without one (collapsed) loses its curve; its note says why
            _ = explorer.baseline_threshold
    progress(0.5, desc="sliding the window over the clip")
    view = explorer.surprise(clip.frames, clip.source_frames, video_file)
    return view.figure, view.overlay, _labelled(view.numbers, video_file, checkpoint)


def example_clips(folder: Path) -> tuple[list[str], str]:
    """Synthetic clips to try, all of one scene the model never trained on: plausible, with irrelevant detail, and one
    per kind of physics violation, and their caption. Encoded once into a sub-folder named by their frames' hash, so
    a change to the world never serves the old files."""
    cfg = WorldConfig(size=128, num_frames=32)
    clips = {"plausible": render_clip(EXAMPLE_SEED, cfg),
             "plausible-with-detail": render_clip(EXAMPLE_SEED, with_detail(cfg))}
    clips.update({f"violation-{kind}": make_pair(EXAMPLE_SEED, kind, cfg)[1] for kind in VIOLATIONS})
    return _written(clips, folder), _examples_caption(clips, cfg.num_frames)


def _examples_caption(clips: dict, num_frames: int) -> str:
    """Where each violation comes, from the clips' labels (a pass-through's is its first collision in view)."""
    frames = {name.removeprefix("violation-"): clip.labels["violation_frame"] for name, clip in clips.items()
              if name.startswith("violation-")}
    usual = max(set(frames.values()), key=list(frames.values()).count)
    others = "".join(f"; {kind.replace('_', '-')} at {frame}" + (", its first collision in view" if
                                                                  kind == "pass_through" else "")
                     for kind, frame in frames.items() if frame != usual)
    return ("examples: one synthetic scene the model never trained on; plausible is the twin of every violation clip, "
            f"whose violation comes at frame {usual} of {num_frames}{others}")


def _written(clips: dict, folder: Path) -> list[str]:
    """The clips' mp4 files in `folder`'s sub-folder named by their frames' hash, encoded where missing."""
    digest = hashlib.sha256(b"".join(clip.frames.tobytes() for clip in clips.values())).hexdigest()[:16]
    folder = folder / digest
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, clip in clips.items():
        path = folder / f"{name}.mp4"
        if not path.is_file():  # write_video renames a complete file into place: no half-written one is reused
            write_video(path, clip.frames)
        paths.append(str(path))
    return paths


LINKS_REFUSED = "Upload the video file itself: links are not fetched."
NOT_A_FILE = "Upload a video file: a folder (or anything else not a file) cannot be a clip."


def refuse_links(upload: gr.File) -> gr.File:
    """`upload`, taking uploaded files only. Gradio downloads an API call's file reference that is a web address on the
    server, whole, with no size limit (max_file_size covers uploads), into its folder, where no sweep sees it. And it
    takes a reference to a folder inside its own (whose paths every file address on the page shows) as an upload,
    tracked for the sweep, which moved it aside, with what it held (example clips, visitors' pictures), never to be
    removed. (Not a gr.File subclass: Gradio writes a .pyi stub beside the module of every component class defined.)"""
    move_to_cache = upload.async_move_resource_to_block_cache

    async def move_unless_a_link(url_or_file_path):
        if is_http_url_like(str(url_or_file_path)):
            raise Refusal(LINKS_REFUSED)
        path = os.path.abspath(url_or_file_path)  # as Gradio reads it: <a file>/.. names its folder
        if os.path.exists(path) and not os.path.isfile(path):
            raise Refusal(NOT_A_FILE)
        return await move_to_cache(url_or_file_path)

    upload.async_move_resource_to_block_cache = move_unless_a_link
    return upload


def values_only(field: gr.components.Component) -> gr.components.Component:
    """`field` (a setting, not a file), refusing a file reference an API call puts in it: Gradio fetches a link in
    any input (whole, into memory, then its folder) and takes a file of its folder, before any check of the value."""

    async def refused(url_or_file_path):
        raise Refusal(f"{field.label}: expected a setting, got a file or link")

    field.async_move_resource_to_block_cache = refused
    return field


def numbers_only(field: gr.Slider | gr.Number, whole: bool = False) -> gr.Slider | gr.Number:
    """`field`, refusing in words an API value that is not a number, or not a whole one where `whole`. Gradio compares
    the value with the field's bounds before any handler runs: text or a slider's null there is a TypeError, which
    reaches the client as a bare "Error"; 7.9 would reach the handler as k. (A Number's null goes on to the handler,
    which asks for a seed.)"""
    preprocess = field.preprocess

    def checked(payload):
        if payload is None and isinstance(field, gr.Number):
            return preprocess(payload)
        # an int as it is: JSON's digits can exceed a float (10**400), and the bounds check compares ints exactly
        number = not isinstance(payload, bool) and (isinstance(payload, int) or
                                                    isinstance(payload, float) and math.isfinite(payload))
        if not number or whole and payload != int(payload):
            low, high = (str(int(v)) if float(v).is_integer() else f"{v:g}" for v in (field.minimum, field.maximum))
            raise Refusal(f"{field.label}: expected {'a whole number' if whole else 'a number'} from {low} to {high}, "
                          f"got {payload!r}")
        return preprocess(payload)

    field.preprocess = checked
    return field


def build_app_at_start() -> gr.Blocks:
    """`build_app`, which writes the example clips into the cache folder at the first start (or after a change to the
    world): a disk that fills up then (main checked that a small file could be written) stops the app in one line."""
    try:
        return build_app()
    except OSError as err:
        sys.exit(f"JEPA Lens cannot start: its example clips could not be written in {served_folder() / 'examples'} "
                 f"({err.strerror or err})")


def captioned_strip(caption: str, elem_id: str) -> gr.Image:
    """A strip of frames under its caption, not under its label: Gradio draws an image's label over the image's top
    left, which on a 128-pixel strip hid the top tokens of its first frames (of six, for the longest caption). PNG,
    not Gradio's default lossy WebP, whose blur and subsampled colour would blend the tokens' colours and ring at
    their edges: the PCA strips' point is that one colour is one representation."""
    gr.Markdown(caption, elem_classes="strip-caption")
    return gr.Image(label=caption.replace("`", ""), show_label=False, type="numpy", format="png", elem_id=elem_id,
                    elem_classes="strip")


def build_app() -> gr.Blocks:
    # in the cache folder main() checked it can write
    examples, examples_caption = example_clips(served_folder() / "examples")
    formats = ", ".join(suffix.strip(".") for suffix in VIDEO_SUFFIXES)
    with gr.Blocks(title="JEPA Lens") as app:  # no delete_cache: `sweep_files_while_serving` does its job
        gr.Markdown("# JEPA Lens\nA video JEPA predicts the *representation* of what it cannot see, not its pixels. "
                    f"Upload a clip ({formats}; up to {MAX_SECONDS:.0f} s and {MAX_MEGABYTES} MB) "
                    "or pick an example, then open a view. The model sees a square: a wide or tall clip is "
                    "centre-cropped to its middle, and what lies outside is not seen.")
        with gr.Row():
            video = refuse_links(gr.File(label="clip", file_types=list(VIDEO_SUFFIXES), type="filepath", scale=2))
            with gr.Column(scale=1):
                checkpoint = gr.Dropdown([*SHIPPED, *ALLOWED_HUB_IDS], value="default", label="checkpoint",
                                         allow_custom_value=not HOSTED,
                                         info="a shipped checkpoint" + (
                                             (" or a Hub model this server allows" if ALLOWED_HUB_IDS else "")
                                             if HOSTED else ", a local folder or a Hub repo id: ours, or V-JEPA 2 "
                                                            "(facebook/vjepa2-..., whose surprise needs longer clips "
                                                            "than the 32-frame examples)"))
        gr.Examples(examples, inputs=video, label=examples_caption)
        # Gradio 6.31 copies the example clips into its folder as ordinary temporary files (not marked keep_in_cache):
        # mark them, or the sweep removes them after FILE_LIFETIME and every click on an example fails from then on.
        video.keep_in_cache.update(video.temp_files)
        with gr.Tab("Masked prediction"):
            with gr.Row():
                mask = gr.Radio(MASKS, value="multiblock", label="mask")
                ratio = numbers_only(gr.Slider(0.1, 0.95, value=0.75, step=0.05,
                                               label="hidden share (random and tube masks only)"))
                # the maximum: torch's generator overflows at 2**64
                seed = numbers_only(gr.Number(0, precision=0, minimum=0, maximum=2**31 - 1, label="seed"), whole=True)
            run_masked = gr.Button("Predict the hidden latents", variant="primary")
            masked_images = [captioned_strip(label, f"masked-{name}") for name, label in (
                ("hidden", "hidden tokens (pale); frames: `frames_shown` in the numbers, of the `model_frames` it "
                           "read"),
                ("error", "per-token error at the hidden tokens (0 darkens the frame, yellow is this clip's largest)"),
                ("predicted", "predicted latents in PCA colours, grey where visible (the pixel baseline predicts "
                              "pixels: shown through the same PCA)"),
                ("target", "target latents (same PCA)"),
                ("decoded", "what the prediction looks like: each hidden token shown as the patch, among (a sample "
                            "of) those of 12 gallery clips of the synthetic world, whose target latent is nearest"))]
            masked_numbers = gr.JSON(label="numbers (error: mean absolute difference per feature at the hidden "
                                           "tokens, in the model's own units, not comparable between checkpoints; "
                                           "mean_latent_baseline_error: each hidden token guessed as the mean "
                                           "target of the visible tokens, which a JEPA encoded from the whole clip, "
                                           "hidden tokens included; the pixel baseline's targets are pixels)",
                                     elem_id="masked-numbers")
        with gr.Tab("Nearest neighbours"):
            gr.Markdown("The gallery: clips of the synthetic world the model never trained on. Similarity is the "
                        "cosine between clip embeddings, each measured from the gallery's mean embedding (so from -1 "
                        "to 1). How near 1 a neighbour comes depends on the checkpoint: the shipped default's clip "
                        "embeddings differ little in direction, so most of its gallery's clips score near 1 against "
                        "any clip and only the neighbours' order means much (jepa-sigreg's spread over the whole "
                        "range). A real video has no true match here: what it is grouped with shows what the "
                        "embedding keeps.")
            k = numbers_only(gr.Slider(1, 16, value=8, step=1, label="number of similar clips (k)"), whole=True)
            run_neighbors = gr.Button("Find similar clips", variant="primary")
            neighbor_gallery = gr.Gallery(label="most similar gallery clips", columns=4, height="fit-content",
                                          elem_id="neighbors-gallery")
            neighbor_numbers = gr.JSON(label="similarities and labels", elem_id="neighbors-numbers")
        with gr.Tab("Embedding map"):
            gr.Markdown("The gallery's clip embeddings laid out in 2-D by UMAP, coloured by a label of the world. "
                        "Your clip (the star) is put at the mean of the map positions of its 10 nearest gallery "
                        "clips, weighted by 1 / (1 - similarity) so that the nearest count most, not by running UMAP "
                        "again: where those lie in different regions, it falls between them. Colours that form "
                        "regions are labels the embedding separates.")
            color_by = gr.Dropdown(explorer_for("default").label_names(), value="num_objects", label="colour by")
            run_map = gr.Button("Place the clip on the map", variant="primary")
            map_plot = gr.Plot(label="UMAP of the gallery embeddings", elem_id="map-plot")
            map_numbers = gr.JSON(label="position", elem_id="map-numbers")
        with gr.Tab("Surprise"):
            gr.Markdown("Surprise = how wrong the model's prediction of the next moments is. Each curve is divided "
                        f"by its model's own {THRESHOLD_PERCENTILE}th percentile over plausible clips of the "
                        "synthetic world (plain background), so 1 means 'as surprising as the top "
                        f"{100 - THRESHOLD_PERCENTILE} % of their moments'; on other footage it is a yardstick, not "
                        f"what is ordinary there. A long clip is read one frame in k, {MAX_FRAMES} frames at most "
                        "(twice what the model's surprise needs where that is more, as for V-JEPA 2; the x axis gives "
                        "the file's frame numbers), so a brief event can fall between them. The first frames are "
                        "context only: the curve starts at the first frame the model predicts (step_frames in the "
                        "numbers), so an event before it is not scored. **What to look "
                        "for:** a model that has learned the world's physics jumps at a violation and stays near or "
                        "below 1 elsewhere (a JEPA's curve may rise one step before it: the target of each predicted "
                        "step was encoded with the next step in view). The shipped checkpoints have not learned it "
                        "(README, Results): their error follows how much is in view, so an object appearing lifts the "
                        "curve for good and one vanishing lowers it, which is not surprise. On the clip with "
                        "irrelevant detail (pixel noise), compare how far each curve rises where nothing physically "
                        "wrong happens. The clip's score (in the numbers, in the model's own units like its per_step "
                        "and threshold there, not the plot's) is its peak minus its calmest step."
                        + ("" if PIXEL_BASELINE not in SHIPPED else " Beside the curve of a checkpoint that predicts "
                           "representations, a second one is the pixel baseline's, which predicts pixels (when the "
                           "clip is long enough for its surprise too)."))
            run_surprise = gr.Button("Measure surprise over time", variant="primary")
            surprise_plot = gr.Plot(label="surprise over time", elem_id="surprise-plot")
            surprise_overlay = captioned_strip("where: surprise heatmap over up to 10 predicted steps, the peak "
                                               "among them (frames: `heatmap_frames` in the numbers; 0 darkens the "
                                               "frame, yellow is the clip's largest)", "surprise-overlay")
            surprise_numbers = gr.JSON(label="numbers", elem_id="surprise-numbers")
        # One concurrency group for the four views: Gradio's limit holds per group, and each event is its own group
        # unless named, so the views would run MODEL_CALLS each at once (8 in all), not MODEL_CALLS together.
        # A click while its view runs is kept, and runs once that run ends, on the inputs shown then: Gradio's default
        # for a click drops it, so a click made for a newly chosen clip or checkpoint was lost without a word. (Gradio
        # 6.31 still drops it after a run that ends in an error, whose message at least says something happened.)
        together = {"concurrency_id": "model", "trigger_mode": "always_last"}
        run_masked.click(predict_masked, [video, mask, ratio, seed, checkpoint], [*masked_images, masked_numbers],
                         api_name="predict_masked", **together)
        run_neighbors.click(neighbors, [video, k, checkpoint], [neighbor_gallery, neighbor_numbers],
                            api_name="neighbors", **together)
        run_map.click(embedding_map, [video, color_by, checkpoint], [map_plot, map_numbers], api_name="embedding_map",
                      **together)
        color_by.input(recolour_map, [video, color_by, checkpoint], [map_plot, map_numbers], api_visibility="private",
                       **together)
        run_surprise.click(surprise, [video, checkpoint], [surprise_plot, surprise_overlay, surprise_numbers],
                           api_name="surprise", **together)
        # Another clip or checkpoint clears every view, so that none shows the previous one's results beside it (a
        # run still going lands afterwards, its numbers naming what they are of, and is not cancelled: its thread
        # would compute on, outside the concurrency limit)
        shown = [*masked_images, masked_numbers, neighbor_gallery, neighbor_numbers, map_plot, map_numbers,
                 surprise_plot, surprise_overlay, surprise_numbers]
        for field in (checkpoint, mask, ratio, seed, k, color_by):
            values_only(field)
        for changed in (video.change, checkpoint.change):
            changed(lambda: [None] * len(shown), outputs=shown, queue=False, show_progress="hidden",
                    api_visibility="private")
    # api_open=False: off Hugging Face Spaces, Gradio opens /gradio_api/run/<name> to calls that skip the queue, so past
    # the limit of MODEL_CALLS model calls at a time and the queue's 32
    return refuse_malformed_inputs(app.queue(default_concurrency_limit=MODEL_CALLS, max_size=32, api_open=False))


def refuse_malformed_inputs(app: gr.Blocks) -> gr.Blocks:
    """`app`, refusing in words what an API call gives that Gradio checks before any component or view sees it: a
    clip given as a plain path (not as gradio_client's handle_file(path)) or as a dict without Gradio's file marker
    fails the file's data model, and an example's number out of range fails the list of examples (-1 would pick the
    last). Each reached the client as a bare "Error" and the server's log as a traceback."""
    validate_inputs = app.validate_inputs  # Gradio's own check of an event's inputs, before it reads any of them

    def checked(block_fn, inputs):
        validate_inputs(block_fn, inputs)
        for block, payload in zip(block_fn.inputs, inputs):
            if payload is None:  # no clip or no example: each view says what is missing
                continue
            if isinstance(block, gr.Dataset):
                count = len(block.raw_samples)
                if type(payload) is not int or not 0 <= payload < count:  # type: True is an int too
                    raise Refusal(f"examples: expected an example's number from 0 to {count - 1}, got "
                                  f"{reprlib.repr(payload)}")
            elif getattr(block, "data_model", None) is not None:
                try:
                    block.data_model.model_validate(payload, context={"validate_meta": True})
                except ValueError:  # pydantic's ValidationError
                    raise Refusal(f"{block.label}: expected a file sent as gradio_client's handle_file(path), got "
                                  f"{reprlib.repr(payload)}") from None

    app.validate_inputs = checked
    return app


# One sweep at a time: the last one, when the server stops, must not run beside a pass still under way in its
# worker thread (cancelling the sweeping task does not stop that thread), which could put back a file it removed.
SWEEPING = threading.Lock()


def sweep_files(app: gr.Blocks, age: float, stopping: bool = False) -> None:
    """Delete the files Gradio keeps for `app` (uploads, returned pictures) once they are older than `age` seconds,
    and the files it leaves behind (the empty placeholders its gr.File leaves, see PLACEHOLDER; parsed uploads never
    taken, see UPLOAD_TEMP_FILES). The files marked to keep (the examples) stay, and so do the emptied folders Gradio
    made for the files, unless `stopping` (the last sweep, when the server stops).

    Gradio's own `delete_cache` sweep (6.31) iterates these live sets in a worker thread while requests add to them;
    its first "Set changed size during iteration" ends its sweep task for good, and uploads then stay until the server
    stops. This sweep reads snapshots.
    """
    with SWEEPING:
        keep = set()
        if not stopping:
            keep = keep.union(*(getattr(block, "keep_in_cache", ()) for block in list(app.blocks.values())))
        snapshots = [(files, set(files)) for files in list(app.temp_file_sets)]
        for files, paths in snapshots:
            for path in paths - keep:
                try:
                    _expire(path, files, age)
                except FileNotFoundError:
                    files.discard(path)
                except OSError:  # e.g. a permission error: leave the file to the next round rather than stop
                    continue
        # the files first: a content folder they empty then goes with the others
        _remove_upload_files(app.GRADIO_CACHE, set().union(*(paths for _, paths in snapshots)), age)
        _remove_leftovers(app.GRADIO_CACHE, age, stopping)


def _expire(path: str, files: set, age: float) -> None:
    """Remove `path` from disk and from `files` if it is older than `age` seconds, unless a request renews it meanwhile.

    Gradio names the files it caches by their content, so a request that returns the same picture again rewrites the
    same path (a fresh ctime) and re-adds it to `files` a moment later, from another thread. A plain check-then-remove
    could delete a file just rewritten for a waiting client (HTTP 404), or discard it after the request re-added it
    (HTTP 403). So the file is first renamed aside, which keeps its inode and mtime: if those changed since the check,
    a request rewrote it, and it goes back. A fetch between the two renames still misses it; only a lock shared with
    Gradio's writers could close that (benchmarks/sweep_race.py counts how often it happens).
    """
    checked = os.lstat(path)
    if not stat.S_ISREG(checked.st_mode):  # none of Gradio's own: never ours to move aside or remove
        files.discard(path)
        return
    if time.time() - checked.st_ctime <= age:
        return
    parked = f"{path}.expired"
    os.rename(path, parked)
    now = os.lstat(parked)
    if (now.st_ino, now.st_mtime_ns) != (checked.st_ino, checked.st_mtime_ns):
        os.rename(parked, path)
        return
    os.remove(parked)
    files.discard(path)
    if os.path.exists(path):  # written again after the rename and perhaps re-added before the discard
        files.add(path)


def _remove_leftovers(folder: str, age: float, stopping: bool) -> None:
    """Remove the empty files gr.File left in `folder` (see PLACEHOLDER) once they are older than `age` seconds and,
    when the server stops, the emptied content folders (CONTENT_FOLDER). Not while it serves: a request writing the
    same content between Gradio's mkdir and its write would fail (benchmarks/sweep_race.py, removing them while
    serving, lost every request thread within a second)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:  # nothing uploaded yet (or a folder we may not read: nothing of ours to remove there)
        return
    for entry in entries:
        with contextlib.suppress(OSError):  # gone already, not empty, or not ours to remove
            if stopping and CONTENT_FOLDER.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                os.rmdir(entry.path)
            elif PLACEHOLDER.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                if stat.st_size == 0 and time.time() - stat.st_ctime > age:
                    os.remove(entry.path)


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (macOS, musl, Windows)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):  # Windows: CDLL(None) is a TypeError
        trim = ctypes.CDLL(None).malloc_trim
        trim.argtypes = [ctypes.c_size_t]
        return trim
    return None


MALLOC_TRIM = _malloc_trim()
TRIM_EVERY = 60  # seconds


async def return_freed_memory_forever():
    """Each request's arrays are freed, but glibc keeps the memory in the arenas of the worker threads that used it:
    the server's resident memory grew by about 40 MiB a round of benchmarks/load_test.py, round after round, while
    Python's own allocations stayed level (once sessions were capped: SESSIONS_KEPT), and malloc_trim gave back
    230-350 MiB of about 1 GiB. So it runs every minute."""
    while True:
        await asyncio.sleep(TRIM_EVERY)
        await asyncio.to_thread(MALLOC_TRIM, 0)


@contextlib.asynccontextmanager
async def sweep_files_while_serving(server):
    """FastAPI lifespan: sweep every few seconds while the server runs, and everything when it stops; hand freed memory
    back to the system every minute."""
    app = server.get_blocks()

    async def sweep_forever():
        reported = None
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                await asyncio.to_thread(sweep_files, app, FILE_LIFETIME)
            except Exception as err:  # noqa: BLE001 -- one failed pass must not leave uploads on disk for good
                if (message := f"{err.__class__.__name__}: {err}") != reported:  # once, not every few seconds
                    print(f"sweep: {message}; trying again every {SWEEP_EVERY} s", file=sys.stderr)
                reported = message

    tasks = [asyncio.create_task(sweep_forever())]
    if MALLOC_TRIM is not None:
        tasks.append(asyncio.create_task(return_freed_memory_forever()))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        sweep_files(app, age=-1, stopping=True)


# Each file of a form Gradio's parser read (see track_upload_files): its temporary name -> the content folder the
# upload route moves it into (Gradio's folder / its SHA-256).
UPLOAD_TEMP_FILES: dict[str, str] = {}


def track_upload_files() -> None:
    """Gradio 6.31 writes each file of a posted form to a temporary file as it arrives, and removes it only when the
    form is malformed. It stayed in its folder for good when the visitor went away midway (a closed tab: Starlette's
    ClientDisconnect) or the server stopped under it; and when the form was read whole but not handed over: a file
    field not named "files" is ignored, and when one file of several is refused (named ".."), those moved into the
    cache before it are never registered for Gradio's own sweep. Its parser now removes them on any failure, and
    records them otherwise, for this app's sweep (once per process)."""
    from gradio.route_utils import GradioMultiPartParser

    parse = GradioMultiPartParser.parse
    if getattr(parse, "tracks_upload_files", False):
        return

    @functools.wraps(parse)
    async def parse_and_track(self):
        files = getattr(self, "_files_to_close_on_error", ())  # filled as the parse goes
        try:
            form = await parse(self)
        except BaseException:  # a cancelled request too
            for file in files:
                with contextlib.suppress(OSError):  # removed already (a malformed form)
                    file.close()
                    os.remove(file.name)
            raise
        for _, value in form.multi_items():
            if hasattr(value, "sha") and self.upload_dir is not None:  # a file (GradioUploadFile)
                UPLOAD_TEMP_FILES[value.file.name] = os.path.join(self.upload_dir, value.sha.hexdigest())
        return form

    parse_and_track.tracks_upload_files = True
    GradioMultiPartParser.parse = parse_and_track


def _remove_upload_files(gradio_folder: str, handed_over: set, age: float) -> None:
    """Remove what the parsed forms left in `gradio_folder` `age` seconds after it arrived (UPLOAD_TEMP_FILES): a
    temporary file never moved, or a file moved into its content folder that no request handed over to Gradio's
    sets (`handed_over`, their paths). A finished upload is in those sets at once (and swept by them), so the record
    goes with its folder."""
    cache = os.path.abspath(gradio_folder)
    for name, folder in UPLOAD_TEMP_FILES.copy().items():  # a copy: requests add to it meanwhile
        if os.path.dirname(os.path.abspath(folder)) != cache:  # another app's (tests serve several)
            continue
        moved = not os.path.lexists(name)
        if moved and not os.path.isdir(folder):  # removed: never moved, or its folder emptied at a stop
            UPLOAD_TEMP_FILES.pop(name, None)
            continue
        with contextlib.suppress(OSError):  # gone already, or left for the next sweep
            inside = [os.path.join(folder, entry) for entry in os.listdir(folder)] if moved else [name]
            for path in set(inside) - handed_over:
                if time.time() - os.lstat(path).st_ctime > age:  # a rename counts as a write: arrival
                    os.remove(path)
            if moved and not os.listdir(folder):
                UPLOAD_TEMP_FILES.pop(name, None)


class RefuseScreenRecordings:
    """ASGI middleware answering 404 for the route of the screen recorder in Gradio 6.31's settings panel
    (/gradio_api/process_recording), open to anyone: it parses a posted video of up to max_file_size into the
    system's temporary folder and never removes it, and its ffmpeg step leaves another copy (mkstemp, its descriptor
    never closed) in Gradio's default folder, outside the app's own. Refused, the recorder says it failed to process
    the recording and saves the original in the browser."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith("/gradio_api/process_recording"):
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def launch(app: gr.Blocks, **kwargs):
    """Serve `app`; Gradio must be allowed to serve the gallery thumbnails and example clips, and no other file.

    Gradio 6.31 keeps, for each of the last `state_session_capacity` sessions (10000 by default; every browser tab and
    gradio_client is one), a copy of the page's config holding the last value of every output: here a plotly figure's
    JSON and more, about 0.23 MiB a session. The app keeps no per-user state, so only the latest sessions are kept."""
    track_upload_files()
    return app.launch(max_file_size=f"{MAX_MEGABYTES}mb", allowed_paths=[str(served_folder())],
                      app_kwargs={"lifespan": sweep_files_while_serving,
                                  "middleware": [Middleware(RefuseScreenRecordings)]},
                      state_session_capacity=SESSIONS_KEPT, css=STRIP_CSS, **kwargs)


def use_own_gradio_folder(host: str, port: int) -> None:
    """Unless GRADIO_TEMP_DIR names a folder, keep Gradio's files in one of the app's own for its address,
    <tmp>/gradio/jepa-lens-HOST-PORT. No other program writes there, nor another JEPA Lens while this one holds the
    address, so what it holds at start was left by one that was killed outright (SIGKILL, the kernel's out-of-memory
    killer, a power cut), whose last sweep never ran: a visitor's upload would otherwise stay on disk for good."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return
    folder = Path(tempfile.gettempdir()) / "gradio" / f"jepa-lens-{re.sub(r'[^0-9A-Za-z.]', '_', host)}-{port}"
    if folder.is_dir() and not folder.is_symlink():  # rmtree removes links inside, and never follows them
        shutil.rmtree(folder, ignore_errors=True)
    stop_unless_writable(folder, "Gradio's folder", "GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)  # read by Gradio when the Blocks are built


def check_cache_folder() -> None:
    """Gallery thumbnails are written to the cache folder when a visitor first asks for them: an unwritable one must
    stop the app at start, not fail the neighbours view later with a bare 'Error'."""
    try:
        folder = cache_folder()
    except ValueError as err:
        sys.exit(f"JEPA Lens cannot use {err}; set JEPA_LENS_CACHE to a folder it can write")
    stop_unless_writable(folder, "its cache folder", "JEPA_LENS_CACHE")


def cannot_serve(host: str, port: int, reason) -> str:
    """The one line the app stops with when it cannot serve where it was asked to, naming the settings that move it
    (a second `make demo`, or another Gradio demo, holds 7860)."""
    return (f"JEPA Lens cannot serve on {host}:{port}: {reason}; GRADIO_SERVER_PORT (and GRADIO_SERVER_NAME) pick "
            "another")


def check_can_serve(host: str, port: int) -> None:
    """Bind where the app will serve, before the warm-up: a busy port, an unknown host name or an address this machine
    does not have stops the app at once, in one line with the reason (Gradio's own message blames the port for all).
    """
    try:
        family, kind, _, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Gradio binds: a closed port is free
            probe.bind(address)
    except (OSError, UnicodeError) as err:  # UnicodeError: a name no DNS label can hold (127.0.0..1, .localhost)
        sys.exit(cannot_serve(host, port, getattr(err, "strerror", None) or err))


def warn_if_open_to_others(host: str) -> None:
    """Served beyond this machine (an address other machines reach, or Gradio's share link) without JEPA_LENS_HOSTED,
    any visitor can load any checkpoint folder on this machine and any Hub repo: allowed (a teacher's own container
    serves on 0.0.0.0), but said at start."""
    if HOSTED:
        return
    # as Gradio decides it: GRADIO_SHARE, or a Colab, Kaggle or SageMaker notebook
    if (os.environ.get("GRADIO_SHARE") or "").lower() == "true" or gr.utils.colab_check() \
            or gr.utils.is_hosted_notebook():
        where = "through a share link"
    elif not _only_loopback(host):
        where = f"on {host}, which other machines can reach"
    else:
        return
    print(f"JEPA Lens: serving {where}, and JEPA_LENS_HOSTED is off: any visitor can load any checkpoint folder on "
          "this machine and any Hub repo (JEPA_LENS_HOSTED=1 offers only the shipped checkpoints)", file=sys.stderr)


def _only_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine's own loopback (an unresolvable name: nothing to warn of,
    check_can_serve has stopped the app already)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None)
    except (OSError, UnicodeError):
        return True
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]  # the scope of fe80::1%eth0
    return all((getattr(address, "ipv4_mapped", None) or address).is_loopback for address in addresses)


def warm_up_offered() -> None:
    """Gallery, map and patch bank before the first visitor rather than during a request, which would hold one of the
    model slots every view shares: the default's; hosted, also every other checkpoint offered, all of which the cache
    then keeps (the operator's list bounds them), so visitors switching between them never wait for a rebuild. One
    that cannot be loaded now (a Hub download failing) is reported, and its first request tries again."""
    others = [name for name in [*SHIPPED, *ALLOWED_HUB_IDS] if name != "default"] if HOSTED else []
    EXPLORERS.max_size = max(EXPLORERS.max_size, len(others) + 1)
    for name in [*others, "default"]:
        try:
            with quiet_hub_client():  # a Hub id that cannot be fetched: its one line below, not the client's retries
                explorer_for(name).warm_up()
        except (gr.Error, ValueError, RuntimeError, MemoryError) as err:  # ValueError: a collapsed model's threshold
            if isinstance(err, RuntimeError) and not out_of_memory(err):
                raise  # a bug: the traceback says where
            reason = err.message if isinstance(err, gr.Error) else first_line(err)
            if name == "default":  # every page opens on it
                sys.exit(f"JEPA Lens cannot start: the default checkpoint does not load ({reason})")
            print(f"JEPA Lens: {name} not warmed up ({reason}); its first request loads it", file=sys.stderr)


def main() -> None:
    check_cache_folder()
    host, port = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1", server_port()  # empty: the default, as unset
    check_can_serve(host, port)
    warn_if_open_to_others(host)
    use_own_gradio_folder(host, port)
    stop_on_signals_as_on_ctrl_c()  # Gradio closes its server on KeyboardInterrupt, so the last sweep runs
    try:
        warm_up_offered()
        ui = build_app_at_start()
    except KeyboardInterrupt:  # Ctrl-C or a stop signal before the server runs: no user file exists yet
        print("JEPA Lens stopped before it started serving.", file=sys.stderr)
        return
    try:
        launch(ui, server_name=host, server_port=port)
    except KeyboardInterrupt:  # a second Ctrl-C or stop signal while Gradio waited up to 5 s for its server to close
        with contextlib.suppress(KeyboardInterrupt):  # a third, while this close waits as long again
            ui.close()
    except OSError as err:
        if not ui.is_running:  # the port, taken during the warm-up (by a second app, whose files must stay)
            # Gradio's own words for a taken port ask for launch()'s server_port, not a setting
            sys.exit(cannot_serve(host, port, "taken meanwhile" if "empty port" in str(err) else err))
        # Gradio's lines failed to print once it served (a terminal closed: SIGHUP before its 'Keyboard interruption'
        # line, or a stdout that refuses writes), before it closed the server; a closed terminal's shell sends the
        # second SIGHUP while this close waits
        with contextlib.suppress(KeyboardInterrupt):
            ui.close()
        write_nowhere(sys.stdout)
        with contextlib.suppress(OSError):
            print(f"JEPA Lens stopped: its output could not be written ({err.strerror or err})", file=sys.stderr)
    # Gradio waits 5 s for the server to stop, which first waits for open requests: one still running leaves the
    # server's own last sweep (sweep_files_while_serving) to a thread the exit ends; the files go here in any case
    sweep_files(ui, age=-1, stopping=True)


if __name__ == "__main__":
    main()
