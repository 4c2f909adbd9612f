"""Checkpoint folders: `model.safetensors` (weights) + `config.json` (architecture, preprocessing, training record).

`build_model` is the one loader every caller uses: it validates the config before allocating anything, loads the
weights strictly, never unpickles, and turns every failure into a `CheckpointError` naming the file. A folder can be
local or a Hugging Face Hub repo id (fetched with `huggingface_hub`, honouring `HF_HUB_OFFLINE`, its config checked
before any weight is fetched); a V-JEPA 2 folder (transformers format) is handed to `jepa_demo.vjepa2`. `push_to_hub`
uploads one of ours. Files are written to a temporary name and renamed, so a crash never leaves a half-written file.
This module knows nothing about training loops, optimisers or the app.
"""

import contextlib
import errno
import fnmatch
import importlib.util
import json
import os
import re
import stat
import tempfile
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ModelConfig, PreprocessConfig, dataclass_from_dict, first_few, to_dict
from .model import VideoJEPA, check_finite_weights
from .training_metrics import METRICS_NAME, read_raw_rows, rows_logged_before, write_rows
from .vjepa2 import HUB_FILES as VJEPA2_HUB_FILES
from .vjepa2 import PROCESSOR_FILES, build_vjepa2, check_safetensors_only, is_vjepa2_config
from .vjepa2 import model_config as vjepa2_model_config

FORMAT = "jepa-lens"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
# The checkpoints shipped in the repository, and the one every command and the app start with.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED_NAMES = ("default", "pixel-baseline", "jepa-sigreg")  # the checkpoints the repository ships there
DEFAULT_CHECKPOINT = SHIPPED_DIR / "default"
CONFIG_NAME = "config.json"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# The app's gallery and threshold files travel too (jepa_demo.gallery: prebuilt, named by the weights' fingerprint).
# Fetched with a checkpoint when the repo has them, not needed to load it: offline, a cache without them still loads
_OPTIONAL_HUB_FILES = ["README.md", METRICS_NAME, "training_curves.png", "gallery-*.npz", "threshold-*.json"]
_HUB_FILES = [WEIGHTS_NAME, CONFIG_NAME, *_OPTIONAL_HUB_FILES]
# A V-JEPA 2 repo pushed by `python -m train push` carries ours as well.
_VJEPA2_HUB_FILES = sorted({*_HUB_FILES, *VJEPA2_HUB_FILES})
# Files of an earlier push that this one's folder lacks are removed from the repo: galleries and thresholds are named
# for the weights' fingerprint (each retrained push would add two more), a run's metrics and curves describe its own
# model, and weights change layout: after a sharded push, a single file left the old index, which loading follows to
# shards no longer there; after a single file, sharded weights left it, which transformers loads first. So do V-JEPA
# 2's processor settings, read in place of the defaults of a folder without them. A README is left alone: it may be
# the owner's own.
_REPLACED_ON_PUSH = ["gallery-*.npz", "threshold-*.json", METRICS_NAME, "training_curves.png", WEIGHTS_NAME,
                     "model-?????-of-?????.safetensors", "model.safetensors.index.json",  # shards only, as named
                     *PROCESSOR_FILES]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message naming the file and the problem."""


class _NotOnHub(CheckpointError):
    """No such Hub repo, or none in the local Hub cache offline: the name may have meant a local folder."""


def clean_state_dict(state: dict) -> dict:
    """Strip the prefixes DDP (`module.`) and torch.compile (`_orig_mod.`) add: the only place this is done. A
    ValueError for two names that are one weight once stripped (one would replace the other without a word)."""
    cleaned = {}
    for key, value in state.items():
        if (name := _strip_wrappers(key)) in cleaned:
            other = next(k for k in state if k != key and _strip_wrappers(k) == name)
            raise ValueError(f"{other} and {key} are the same weight, {name}")
        cleaned[name] = value
    return cleaned


def _strip_wrappers(key: str) -> str:
    while key.startswith(("module.", "_orig_mod.")):
        key = key.split(".", 1)[1]
    return key


def cannot_write_in(folder: Path) -> str | None:
    """Why no file can be made in the existing `folder`, or None: found before a long run, not at its end. os.access
    says yes to root even where nobody can write (/proc), so a file without a name, gone when closed, is made too."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write in {folder}"
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        return f"cannot write in {folder} ({err.strerror or err})"
    return None


def is_temporary_name(name: str) -> bool:
    """Whether `name` is one `atomic_write` gives its temporary file (with the default suffix), or one safetensors'
    save_file writes first beside the file it was asked for (Rust's tempfile: .tmp and six letters or digits): what a
    process killed mid-write leaves behind, and nothing a user named."""
    return re.fullmatch(r"\..+\.[0-9a-f]{12}\.tmp|\.tmp[A-Za-z0-9]{6}", name) is not None


def is_stream(path) -> bool:
    """Whether `path` names what is written as a stream rather than replaced: a character device (/dev/null, a
    terminal) or a pipe, links followed (/dev/stdout to a terminal or a pipe)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # none there yet; ValueError: a NUL in the name
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def cannot_replace(path) -> str | None:
    """Why `atomic_write` refuses `path`, neither a stream nor a file it may replace, or None."""
    if is_stream(path):
        return None
    try:
        in_dev = os.path.realpath(os.path.dirname(os.path.abspath(path))) == "/dev"
    except ValueError:  # a NUL in the name: the write says so
        return None
    if in_dev:  # /dev/stdout redirected to a file: reopened, it would be emptied under the process's own output
        redirected = " (output redirected to a file? give that file's name)" if os.path.isfile(path) else ""
        return f"in /dev and not a device or pipe{redirected}"
    if os.path.exists(path) and not os.path.isfile(path):  # a folder, a socket, a block device
        return "not a regular file"
    return None


def cannot_write_file(path: Path, make_folders: bool = False) -> str | None:
    """Why `atomic_write` could not write `path`, or None: for a tool's output, checked before its work, not at the
    end of it. `make_folders`: the folders missing on the way will be made, else its folder must be there."""
    if is_stream(path):  # /dev/null, /dev/stdout: written straight, whoever may make files beside it
        return None if os.access(path, os.W_OK) else "cannot be written"
    # os.path, not Path's methods: those raise for a name too long or a folder one may not enter (Python 3.11)
    if os.path.isdir(path):
        return "a folder, not a file"
    if problem := cannot_replace(path):
        return problem
    folder = path.absolute().parent
    if make_folders:  # the nearest one there is
        folder = next(parent for parent in (folder, *folder.parents) if os.path.lexists(parent))
        if not os.path.isdir(folder):
            return f"{folder} is a file, not a folder"
    elif not os.path.isdir(folder):
        return f"no folder {path.parent} (or one this user may not enter)"
    if problem := cannot_write_in(folder):
        return problem
    try:  # a name too long is found here, not at the final rename after the whole run
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as err:
        return err.strerror or str(err)
    # a record kept read-only on purpose is not replaced (a rename needs only the folder's permission): by its mode
    # too, as root may write anything
    return None if os.access(path, os.W_OK) and mode & 0o222 else "the file is read-only"


def atomic_write(path: Path, write, suffix: str = ".tmp") -> None:
    """Call `write(tmp_path)` then rename over `path`: readers see the old file or the new one, never half.
    `suffix` ends the temporary name, for writers that choose a format by extension. A stream (`is_stream`) is
    written straight: the rename would replace the device or pipe itself with a file (`--json /dev/null`, as root,
    for every process of the machine); what `cannot_replace` names is refused. A link to a file is replaced like a
    file, not written through: the file it names may be shared (a Hugging Face cache's blob, a git-annex object)."""
    if is_stream(path):
        write(os.fspath(path))
        return
    if why := cannot_replace(path):
        raise OSError(errno.EINVAL, why, os.fspath(path))
    path = Path(path)
    # The temporary name is 14 bytes and the suffix longer than the name: a name near the file system's 255 bytes
    # would fail only at the end of the work that made the file, so it is cut (the random part keeps it unique)
    fits = 255 - 14 - len(os.fsencode(suffix))  # whole characters: Windows cannot decode a character cut in two
    name = next(path.name[:n] for n in range(len(path.name), -1, -1) if len(os.fsencode(path.name[:n])) <= fits)
    tmp = str(path.parent / f".{name}.{uuid.uuid4().hex[:12]}{suffix}")  # is_temporary_name knows this shape
    # The result should read like any new file: 0o666 narrowed by the umask. Creating the file with that mode lets the
    # kernel apply the umask (os.umask can only read it by setting it, for every thread at once), and the mode is
    # applied again after `write`, as some writers (safetensors) replace the file with a private one.
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        write(tmp)
        os.chmod(tmp, mode)
        flush_to_disk(tmp)  # else a power cut soon after the rename can leave an empty file under the real name
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # the rename itself; some file systems refuse to sync a folder
            flush_to_disk(path.parent)
    except OSError as err:  # a full disk: say which file could not be written, not its hidden temporary name
        # a failed write or close names no file; an OSError of a message only (no errno) would lose its message
        if err.errno is not None and (err.filename is None or os.fspath(err.filename) == tmp):
            err.filename = str(path)
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def flush_to_disk(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def write_text(path: Path, text: str) -> None:
    """`text` to `path` atomically, as UTF-8. A file name that is not UTF-8 (Latin-1 from an old camera) comes in as
    surrogate escapes, which a text for people shows as backslash escapes rather than failing the write."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", errors="backslashreplace"))


def check_writable_folder(folder: Path) -> None:
    """Make `folder` if needed and write 1 KB in it (removed again): raises OSError now, where a training run or the
    app would otherwise fail at its first real write (a file in the way, no permission, a full disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-") as probe:  # hidden: never taken for an output
        probe.write(b"0" * 1024)
        probe.flush()


def save_checkpoint(model: VideoJEPA, folder, preprocess: PreprocessConfig, step: int, extra: dict | None = None):
    """Write the weights and the config that rebuilds them; `extra` (e.g. the training config) goes in the JSON."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in clean_state_dict(model.state_dict()).items()}
    atomic_write(folder / WEIGHTS_NAME, lambda tmp: _save_safetensors(state, tmp, {"step": str(step)}))
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step,
              "model": to_dict(model.cfg), "preprocess": to_dict(preprocess), **(extra or {})}
    write_json(folder / CONFIG_NAME, config)


def is_hub_repo_id(text: str) -> bool:
    """USER/NAME as the Hub spells repo ids (its own validator: no `--`, no trailing `-`, at most 96 characters...),
    and nothing a file system would read as a path."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not _REPO_ID.match(text) or text.startswith((".", "/", "~")) or ".." in text:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


NO_CHECKPOINT = "no checkpoint given (an empty name): a folder or a Hub repo id like user/name"


def fetched_from_hub(path_or_repo_id) -> bool:
    """Whether `resolve_checkpoint` takes it for a Hub repo id: nothing at that path, and it reads as user/name. A path
    that cannot be looked at is not (resolving it says why)."""
    try:
        return not Path(path_or_repo_id).expanduser().exists() and is_hub_repo_id(str(path_or_repo_id))
    except (OSError, RuntimeError):  # a folder we may not enter; ~nosuchuser
        return False


def resolve_checkpoint(path_or_repo_id) -> Path:
    """A local folder as is; otherwise a Hub repo id downloaded (or taken from the local Hub cache)."""
    text = str(path_or_repo_id)
    if not text.strip():  # `--checkpoint "$CKPT"` with CKPT unset: Path("") is the working folder
        raise CheckpointError(NO_CHECKPOINT)
    try:
        path = Path(path_or_repo_id).expanduser()
        if path.is_dir():
            return path
    except (OSError, RuntimeError) as err:  # a folder we may not enter; ~nosuchuser
        raise CheckpointError(f"{text}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    if not fetched_from_hub(text):
        raise CheckpointError(f"{text}: no checkpoint folder there (expected a folder holding {CONFIG_NAME} and "
                              f"{WEIGHTS_NAME}, or a Hub repo id like user/name)")
    try:
        return _download_from_hub(text)
    except CheckpointError as err:
        # "checkpoints/pixel_baseline" reads as a Hub id too: a local folder mistyped, or named from another working
        # folder, is as likely a mistake as a Hub id, and the Hub's answer alone would hide it
        if not (isinstance(err, _NotOnHub) or path.parent.is_dir()):
            raise
        raise CheckpointError(f"{text}: no checkpoint folder there, and as a Hub repo id: "
                              f"{str(err).removeprefix(f'{text}: ')}") from None


@contextlib.contextmanager
def quiet_hub_client():
    """Around a command-line tool's load_model, which says why a download failed in one line (a CheckpointError): the
    Hub client also logs a warning at each retry of a failing request (12 lines over 25 s for a refused connection).
    Its verbosity is global, so it is put back after; a HF_HUB_VERBOSITY the user set still decides."""
    if "HF_HUB_VERBOSITY" in os.environ:
        yield
        return
    from huggingface_hub.utils import logging as hub_logging

    before = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        yield
    finally:
        hub_logging.set_verbosity(before)


def _download_from_hub(repo_id: str) -> Path:
    """`config.json` alone first, checked as `build_model` checks it; then the files of that format, and only of
    that format: a mistyped id of another model (say a 15 GB language model) never fetches its weights."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    with _hub_errors(repo_id):
        snapshot = Path(huggingface_hub.hf_hub_download(repo_id, CONFIG_NAME)).parent
    patterns = _HUB_FILES if _check_config(snapshot, repo_id) is not None else _VJEPA2_HUB_FILES
    def download(allowed: list[str]) -> Path:  # the commit of the config.json checked: a push since brings nothing
        return Path(huggingface_hub.snapshot_download(repo_id, revision=snapshot.name, allow_patterns=allowed))

    with _hub_errors(repo_id):
        try:
            folder = download(patterns)
        except LocalEntryNotFoundError:
            # Offline, or the Hub out of reach. Once the commit's file list is cached (any earlier snapshot_download
            # wrote it), the client asks for each file it lists and fails on the first one missing, an optional one
            # (the model card, a gallery) as readily as the weights: asked again for the files loading needs
            try:
                folder = download([name for name in patterns if name not in _OPTIONAL_HUB_FILES])
            except LocalEntryNotFoundError:
                raise CheckpointError(f"{repo_id}: only part of it is in the local Hub cache, and the Hub cannot be "
                                      "reached now to complete it (offline?)") from None
    # Only safetensors are fetched: a snapshot without them is a repo that has none, or a download that failed before
    # the Hub listed the repo's files (a rate limit, an error 5xx), which the client returns as it is, config alone
    if not any(folder.glob("*.safetensors")):
        raise CheckpointError(f"{repo_id}: no safetensors weights came with its config.json: the repo has none (JEPA "
                              "Lens reads no other format), or the download was cut short (run it again online)")
    return folder


@contextlib.contextmanager
def _hub_errors(repo_id: str):
    """The Hub client's failures as a CheckpointError naming the repo."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        yield
    except GatedRepoError:  # before RepositoryNotFoundError, its base class: the repo is there, behind its terms
        raise CheckpointError(f"{repo_id}: a gated model on the Hugging Face Hub: accept its terms on its page, then "
                              "log in (hf auth login) or set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise _NotOnHub(f"{repo_id}: no such model on the Hugging Face Hub (or it is private)") from None
    except LocalEntryNotFoundError:
        raise _NotOnHub(f"{repo_id}: not in the local Hub cache and the Hub cannot be reached "
                              "(offline?)") from None
    except EntryNotFoundError:  # after LocalEntryNotFoundError, its subclass: the Hub answered, without the file
        raise CheckpointError(f"{repo_id}: no {CONFIG_NAME} in this Hub repo (every checkpoint folder needs "
                              f"{CONFIG_NAME})") from None
    except (HfHubHTTPError, OSError, *_network_errors()) as err:
        raise CheckpointError(f"{repo_id}: download failed ({err.__class__.__name__}: {first_line(err)})") from None


def first_line(err: BaseException, prefix: str = "", message: str | None = None) -> str:
    """An error as one line, less `prefix`: a Hub error's message runs over several (its status, a blank line, a
    request id). `message`: the part of it to take instead (a DataLoader worker's error, less its traceback)."""
    text = str(err) if message is None else message
    return next((line for line in text.removeprefix(prefix).splitlines() if line.strip()), type(err).__name__)


def _network_errors() -> tuple[type[Exception], ...]:
    """The Hub client's own network errors (refused, no DNS, timed out), which are not OSErrors: httpx2's in
    huggingface_hub 2.x, httpx's in 1.x (0.x used requests, whose errors are OSErrors)."""
    errors = []
    for client in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(client).TransportError)
    return tuple(errors)


def push_to_hub(folder, repo_id: str, private: bool = False, api=None) -> str:
    """Upload a checkpoint folder to a Hub model repo (created if needed): the files `load_model` reads plus the model
    card, metrics, curves and the app's prebuilt gallery files, never the training state; such files an earlier push
    left that the folder no longer has are removed (`_REPLACED_ON_PUSH`). `private` makes the repo private, one that
    existed too; left False, a new repo gets its owner's default visibility and an existing one keeps its own. The
    folder is loaded first, so a broken checkpoint is never pushed. `api` defaults to `huggingface_hub.HfApi()` (token
    from `hf auth login` or HF_TOKEN). Returns the URL."""
    if not is_hub_repo_id(repo_id):
        raise CheckpointError(f"{repo_id!r} is not a Hub repo id (expected user/name)")
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder (push uploads a local checkpoint folder)")
    _, _, config = build_model(folder)
    files = _HUB_FILES if config["format"] == FORMAT else _VJEPA2_HUB_FILES  # V-JEPA 2: its shards and processor
    if config["format"] != FORMAT:
        _check_pulled_whole(folder, files)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = api or HfApi()
    step = "" if config.get("step") is None else f" (step {config['step']})"  # V-JEPA 2 records none
    with _as_saved(folder, config.get("step")) as upload:
        try:
            # None, not False: a new repo then takes its owner's default (an organisation's may be private)
            url = api.create_repo(repo_id, private=private or None, exist_ok=True)
            # create_repo leaves a repo that exists as it is: a public one would get the files (asked only when it
            # is public, as changing settings may take more rights than pushing)
            if private and not api.repo_info(repo_id).private:
                api.update_repo_settings(repo_id, private=True)
            api.upload_folder(repo_id=repo_id, folder_path=upload, allow_patterns=files,
                              delete_patterns=_REPLACED_ON_PUSH,
                              # abspath: "." is named after the folder it stands for, as evaluate names it
                              commit_message=f"JEPA Lens checkpoint {Path(os.path.abspath(folder)).name}{step}")
        except (HfHubHTTPError, OSError, *_network_errors()) as err:
            raise CheckpointError(f"{repo_id}: upload failed ({err.__class__.__name__}: {first_line(err)})") from None
    return str(url)


@contextlib.contextmanager
def _as_saved(folder: Path, step: int | None):
    """`folder` to upload, or, when its metrics.csv logs steps from the saved `step` on (a run still training there,
    or one stopped between saves, whose --resume would drop them) or holds a row cut short, a stand-in: links to its
    files and the whole rows up to the save, so that the repo's metrics describe the weights it holds, as its card and
    curves do."""
    try:
        rows = read_raw_rows(folder / METRICS_NAME) if step is not None else []
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    kept = rows_logged_before(rows, step)
    if len(kept) == len(rows):
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="jepa-lens-push-") as stand_in:
        for path in folder.iterdir():
            if path.name != METRICS_NAME:
                os.symlink(path.absolute(), Path(stand_in) / path.name)
        write_rows(Path(stand_in) / METRICS_NAME, kept)
        yield Path(stand_in)


def _check_pulled_whole(folder: Path, files: list[str]) -> None:
    """Refuse a V-JEPA 2 folder whose weights a pull would leave behind: its config.json may name them anything
    ("transformers_weights", or an index's shards), and a pull fetches only the usual names, `files`, so the repo
    would never load."""
    hf_config = json.loads((folder / CONFIG_NAME).read_text())  # read and checked by build_model already
    named = hf_config.get("transformers_weights")
    weights = [*check_safetensors_only(folder, hf_config), *([named] if named else [])]
    if left := [name for name in weights if not any(fnmatch.fnmatch(name, pattern) for pattern in files)]:
        raise CheckpointError(f"{folder}: its weights {left[0]} would not come with a pull, which fetches only "
                              "model.safetensors, or model-*.safetensors shards and their model.safetensors.index.json "
                              "(save_pretrained's names): save the model again with save_pretrained")


def _read_json(path: Path):
    try:
        _check_is_file(path, CONFIG_NAME)
        return json.loads(path.read_text())
    except CheckpointError:  # a ValueError too, already naming the file
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    except (RecursionError, ValueError) as err:  # nested too deep; a number past Python's 4300 digits
        raise CheckpointError(f"{path}: not a config this reader takes ({err.__class__.__name__}: {err})") from None
    except OSError as err:  # no permission to read it or its folder
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None


def read_config(folder: Path) -> tuple[dict, ModelConfig, PreprocessConfig]:
    """Parse and validate `config.json` before anything is allocated."""
    path = Path(folder) / CONFIG_NAME
    config = _read_json(path)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint config (missing \"format\": \"{FORMAT}\"; "
                              "V-JEPA 2 folders have \"model_type\": \"vjepa2\")")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {config.get('format_version')!r} is not supported "
                              f"(this version reads {FORMAT_VERSION})")
    try:
        model_cfg = dataclass_from_dict(ModelConfig, config.get("model"), "model")
        preprocess = dataclass_from_dict(PreprocessConfig, config.get("preprocess"), "preprocess")
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if problem := input_mismatch(preprocess, model_cfg):
        raise CheckpointError(f"{path}: {problem}")
    _check_training_record(path, config.get("train", {}), model_cfg)
    return config, model_cfg, preprocess


def input_mismatch(preprocess: PreprocessConfig, model_cfg: ModelConfig) -> str | None:
    """Why the clips `preprocess` makes do not fit the model, or None. The masks follow the model's token grid:
    another input size would give other tokens than they index."""
    made, taken = (preprocess.num_frames, preprocess.img_size), (model_cfg.num_frames, model_cfg.img_size)
    if made == taken:
        return None
    return (f"\"preprocess\" makes clips of {made[0]} frames of {made[1]} px, but the model takes {taken[0]} frames "
            f"of {taken[1]} px")


def _check_training_record(path: Path, train: dict, model_cfg: ModelConfig) -> None:
    """The one training setting inference reads: how many steps ahead surprise predicts."""
    if not isinstance(train, dict):
        raise CheckpointError(f"{path}: \"train\" must be an object, got {train!r}")
    if "future_steps" not in train:
        return
    steps = train["future_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps < model_cfg.grid[0]:
        raise CheckpointError(f"{path}: train.future_steps must be an integer between 1 and {model_cfg.grid[0] - 1} "
                              f"(the model sees {model_cfg.grid[0]} time steps), got {steps!r}")


def read_weights(folder: Path, contents: str = "tensors") -> tuple[dict, dict]:
    """(tensors, or their shapes with `contents` "shapes", the file's metadata)."""
    path = Path(folder) / WEIGHTS_NAME
    _check_is_file(path, WEIGHTS_NAME)
    return _read_safetensors(path, "safetensors file", contents)


def _check_is_file(path: Path, needed: str) -> None:
    """A CheckpointError unless `path` is a file (or a link to one): a folder, a pipe or a device of that name is
    not one, and was called missing."""
    if not path.is_file():
        there = path.exists()
        raise CheckpointError(f"{path}: {'not a regular file' if there else 'missing'} (every checkpoint folder "
                              f"needs {needed})")


def _read_safetensors(path: Path, what: str, contents: str = "tensors") -> tuple[dict, dict]:
    """(`contents`, the header's string metadata): "tensors", "shapes" (each tensor's, from the header: no tensor
    is read) or "none" ({}). safetensors: a plain tensor container, nothing is executed or unpickled. Any failure is
    a CheckpointError calling the file a readable `what`."""
    read = {"tensors": lambda f, key: f.get_tensor(key), "shapes": lambda f, key: tuple(f.get_slice(key).get_shape()),
            "none": None}[contents]
    try:
        with safe_open(path, framework="pt") as f:
            return ({key: read(f, key) for key in f.keys()} if read else {}), f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable {what} ({err})") from None
    except (RuntimeError, MemoryError) as err:  # torch cannot map or hold a tensor that large
        raise CheckpointError(f"{path}: cannot be read into memory ({first_line(err) or 'too large'})") from None


def build_model(path_or_repo_id, source: str | None = None) -> tuple[VideoJEPA, PreprocessConfig, dict]:
    """The one loader: (model in eval mode on CPU, its preprocessing, the full config dict). A V-JEPA 2 folder or
    Hub repo (transformers format) comes back as a `VJEPA2Net` with the same interface, its config recording
    `source` (default: `path_or_repo_id`) as where it came from."""
    folder = resolve_checkpoint(path_or_repo_id)
    source = source or str(path_or_repo_id)
    ours = _check_config(folder, source)
    if ours is None:
        return _build_vjepa2(folder, source)
    config, model_cfg, preprocess = ours
    shapes, _ = read_weights(folder, "shapes")  # the header first: a file that does not fit is read no further
    try:
        shapes = clean_state_dict(shapes)
    except ValueError as err:  # two names of one weight
        raise CheckpointError(f"{folder / WEIGHTS_NAME}: {err}") from None
    _check_shapes(folder, shapes, model_cfg)
    tensors, metadata = read_weights(folder)  # before the model is allocated: a damaged file fails at once
    state = clean_state_dict(tensors)
    model = VideoJEPA(model_cfg).float()  # float32 as saved, whatever torch's default dtype (float64 in some notebooks)
    if re.fullmatch(r"[0-9]{1,18}", metadata.get("step", "")):  # not isdigit(): "²" is a digit int() refuses
        # A save renames the weights, then the config: a run stopped between the two leaves the config a save behind
        config["step"] = int(metadata["step"])
    not_float = next((key for key, tensor in state.items() if not tensor.dtype.is_floating_point), None)
    if not_float is not None:  # load_state_dict would cast integers into the weights without a word
        raise CheckpointError(f"{folder / WEIGHTS_NAME}: {not_float} holds {state[not_float].dtype} values, not "
                              "floating-point weights")
    model.load_state_dict(state, strict=True)  # names and shapes checked above
    try:  # as loaded: a float64 tensor finite in the file can overflow to inf in the model's float32
        check_finite_weights(model.state_dict())
    except ValueError as err:
        raise CheckpointError(f"{folder / WEIGHTS_NAME}: {err}") from None
    return model.eval(), preprocess, config


def _check_shapes(folder: Path, stored: dict, model_cfg: ModelConfig) -> None:
    """A CheckpointError unless `stored` (the file's shapes, by weight) holds every weight the model config.json makes,
    each of its shape, and nothing else: checked on a model without memory (the meta device), since building a model
    of a config.json that asks for more than the file holds (4096 wide, say) took gigabytes, or the process, before
    the mismatch."""
    with torch.device("meta"):
        made = {key: tuple(tensor.shape) for key, tensor in VideoJEPA(model_cfg).state_dict().items()}
    if missing := [key for key in made if key not in stored]:
        problem = f"the file lacks {len(missing)} of its weights ({first_few(missing)})"
    elif extra := [key for key in stored if key not in made]:
        problem = f"the file holds {len(extra)} weights it has no place for ({first_few(extra)})"
    elif other := [key for key in made if stored[key] != made[key]]:
        problem = f"{other[0]} is {stored[other[0]]} in the file, {made[other[0]]} in the model it makes"
    else:
        return
    raise CheckpointError(f"{folder / WEIGHTS_NAME}: weights do not match {CONFIG_NAME}: {problem}")


def first_detail(err: Exception) -> str:
    """load_state_dict's first line is a header ("Error(s) in loading state_dict for ..."); the next one says what."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = (lines[1] if len(lines) > 1 else lines[0]) if lines else err.__class__.__name__
    return detail if len(detail) <= 240 else detail[:240] + "..."  # it lists every key


def _check_config(folder: Path, source: str) -> tuple[dict, ModelConfig, PreprocessConfig] | None:
    """`build_model`'s checks of `config.json` alone, made before any weight is read (or downloaded): ours in full,
    V-JEPA 2's sizes. Ours: what `read_config` read; None for a V-JEPA 2 config."""
    path = folder / CONFIG_NAME
    config = _read_json(path)
    if not is_vjepa2_config(config):
        return read_config(folder)
    if importlib.util.find_spec("transformers") is None:
        raise CheckpointError(f"{source}: V-JEPA 2 checkpoints need the `transformers` package")
    try:
        vjepa2_model_config(config)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return None


def _build_vjepa2(folder: Path, source: str):
    try:
        return build_vjepa2(folder, _read_json(folder / CONFIG_NAME), source)
    except CheckpointError:
        raise
    except ValueError as err:  # our validation of its sizes, processor settings and weight files, naming the file
        raise CheckpointError(f"{folder}: {err}") from None
    except Exception as err:  # noqa: BLE001 -- transformers' checks of a malformed folder raise many kinds
        raise CheckpointError(f"{folder}: cannot load the V-JEPA 2 checkpoint ({err.__class__.__name__}: "
                              f"{first_detail(err)})") from None


def save_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    """Atomic safetensors write with JSON metadata (used for the training state)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: _save_safetensors(tensors, tmp, {"json": json.dumps(metadata)}))


def _save_safetensors(tensors: dict, path: str, metadata: dict) -> None:
    """safetensors' save_file, its failures to write raised as the OSError they are: it reports a full disk as a
    SafetensorError ("Error while serializing: I/O error: No space left on device (os error 28)"), which callers that
    handle OSError (a one-line message, the last save stands) would let through as a traceback."""
    try:
        save_file(tensors, path, metadata=metadata)
    except SafetensorError as err:
        code = re.search(r"\(os error (\d+)\)", str(err))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), path) from err


def load_tensors(path: Path, metadata_only: bool = False) -> tuple[dict, dict]:
    """Inverse of `save_tensors`: (tensors, metadata); `metadata_only` reads no tensor (the header alone). A training
    state records its step: a file whose header does not (another tool's, a hand-edited one) is a CheckpointError."""
    tensors, header = _read_safetensors(Path(path), "training state", "none" if metadata_only else "tensors")
    try:
        metadata = json.loads(header.get("json", "{}"))
    except ValueError as err:  # a header that is not the JSON save_tensors writes
        raise CheckpointError(f"{path}: not a readable training state ({err})") from None
    if not isinstance(metadata, dict) or isinstance(metadata.get("step"), bool) \
            or not isinstance(metadata.get("step"), int):
        raise CheckpointError(f"{path}: not a training state this program wrote (it records no step)")
    return tensors, metadata


def device_for(preferred: str | None = None) -> torch.device:
    """`preferred` if given, else CUDA when present, else CPU."""
    if preferred:
        try:
            device = torch.device(preferred)
        except RuntimeError as err:  # "Expected one of cpu, cuda, ... device type at start of device string: ..."
            raise ValueError(f"device {preferred!r}: {err}") from None
        if device.type == "cuda" and not torch.cuda.is_available():  # else an AssertionError deep in .to()
            raise ValueError(f"device {preferred!r}: torch sees no CUDA GPU here")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {preferred!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s) here")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
