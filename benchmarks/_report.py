"""What every benchmark's JSON records besides its figures (the command), and writing it."""

import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check_output(parser, path) -> Path:
    """`--json path` as a Path once it can be written, its folder already there; else the script stops now, in one
    line, not after minutes of work."""
    from jepa_demo.cli import output_file

    return output_file(parser, "--json", str(path))


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


def versions(*packages: str) -> dict[str, str]:
    """The installed versions of `packages`, for a record: another version can measure otherwise (Gradio's queue and
    file cache, PyAV's decoding)."""
    import importlib.metadata

    return {package: importlib.metadata.version(package) for package in packages}


def write(path: Path, report: dict) -> None:
    """`report` as JSON over `path`, atomically: a full disk or Ctrl-C at the end of a long run leaves the recorded
    run whole; a failed write says so in one line (exit status 1)."""
    from jepa_demo.checkpoint import write_json

    try:
        write_json(Path(path), report)
    except OSError as err:
        sys.exit(f"error: could not write {path} ({err.strerror or err}); the file there is unchanged")
