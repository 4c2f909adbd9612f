"""What every benchmark's JSON records besides its figures (the command), and writing it."""

import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check_output(parser, path) -> Path:
    """`path` as a Path once it can be written; else the script stops now, in one line, not after minutes of work."""
    if not str(path).strip():  # `--json "$OUT"` with OUT unset: Path("") is the working folder
        parser.error("--json is empty: give a file name")
    if str(path).endswith(("/", os.sep)):  # Path drops the slash: "out/" would become a file named out
        parser.error(f"--json {path}: names a folder (a trailing /): give a file name")
    path = Path(path)
    folder = path.parent
    # os.path, not Path's methods: those raise for a name too long or a folder one may not enter (Python 3.11)
    if not os.path.isdir(folder):
        parser.error(f"--json {path}: no folder {folder} (or one this user may not enter)")
    if os.path.isdir(path):
        parser.error(f"--json {path}: a folder, not a file")
    from jepa_demo.checkpoint import cannot_replace, cannot_write_in, is_stream

    if is_stream(path):  # /dev/null, /dev/stdout: written straight, whoever may make files beside it
        if not os.access(path, os.W_OK):
            parser.error(f"--json {path}: cannot be written")
        return path
    if problem := cannot_replace(path):
        parser.error(f"--json {path}: {problem}")

    if problem := cannot_write_in(folder):
        parser.error(f"--json {path}: {problem}")
    try:  # a name too long is found here, not at the final rename after the whole run
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as err:
        parser.error(f"--json {path}: {err.strerror or err}")
    # a record kept read-only on purpose is not replaced: by its mode too, as root may write anything
    if not (os.access(path, os.W_OK) and mode & 0o222):
        parser.error(f"--json {path}: the file is read-only")
    return path


def without_app_settings() -> dict[str, str]:
    """This process's environment less the app's and Gradio's settings (JEPA_LENS_*, GRADIO_*, and SPACE_ID, which
    turns hosted mode on), for an app a benchmark starts: a server name, a share link or hosted mode set in the shell
    would serve or measure another app."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith(("JEPA_LENS_", "GRADIO_")) and name != "SPACE_ID"}


def command(script: str, argv: list[str] | None) -> str:
    """How to run it again: `script` (a benchmark's __file__) with its arguments (None: this process's own)."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", str(Path(script).resolve().relative_to(ROOT)), *args])


def write(path: Path, report: dict) -> None:
    """`report` as JSON over `path`, atomically: a full disk or Ctrl-C at the end of a long run leaves the recorded
    run whole; a failed write says so in one line (exit status 1)."""
    from jepa_demo.checkpoint import write_json

    try:
        write_json(Path(path), report)
    except OSError as err:
        sys.exit(f"error: could not write {path} ({err.strerror or err}); the file there is unchanged")
