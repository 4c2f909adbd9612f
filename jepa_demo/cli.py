"""Command line: `python -m jepa_demo info|embed|surprise FILE... [--checkpoint DIR_OR_ID] [--json]`.

Each file is handled on its own: a bad file prints one line on stderr naming it and the reason, the others are still
processed, and the exit status is 1 if any file failed (2 when the checkpoint itself cannot be loaded, 130 on Ctrl-C).
When the reader of the output goes away (`... --json | head -1`), it stops quietly with status 141, as a Unix tool
ended by SIGPIPE.
"""

import argparse
import codecs
import contextlib
import json
import os
import signal
import sys
import threading
import unicodedata
from pathlib import Path

import numpy as np

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, cannot_write_file, first_line, quiet_hub_client
from .inference import load_model
from .video import VideoError, read_clip, video_info


def read_for(model, path, command: str = "surprise"):
    """A file as `command` reads it for `model`: frames spread over the clip, at the model's input size, so a long or
    large file is never held whole in memory (a `jepa_demo.video.Clip`). `embed` reads the model's frames as
    `read_video(path, num_frames)` and the folder probe do (training steps the same way through random stretches;
    `model.embed(read_video(path))` takes the same frames at a constant frame rate): thinning the clip first and
    sampling the model's input from what is left would step through it differently (one in 6 frames of 130, not 8)."""
    if command == "embed":
        return read_clip(path, max_frames=model.cfg.num_frames, size=model.preprocess.resize_to, exactly=True)
    return read_clip(path, max_frames=model.frames_wanted, size=model.preprocess.resize_to)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose error line stays one line: the paths it names may hold a newline (`--json
    $'a\\nb.json'`), shown escaped as everywhere else (`one_line_name`)."""

    def error(self, message):
        super().error(one_line_name(message))


def output_file(parser: argparse.ArgumentParser, option: str, value: str, make_folders: bool = False) -> Path:
    """`value`, given to `option` to name an output file, as a Path once it can be written (`cannot_write_file`);
    else the tool stops now with one line, not after minutes of work."""
    if not value.strip():  # `--json "$OUT"` with OUT unset: Path("") is the working folder
        parser.error(f"{option} is empty: give a file name")
    if value.endswith(("/", os.sep)):  # Path drops the slash: "out/" would become a file named out
        parser.error(f"{option} {value}: names a folder (a trailing /): give a file name")
    if problem := cannot_write_file(Path(value), make_folders):
        parser.error(f"{option} {value}: {problem}")
    return Path(value)


class Once(argparse.Action):
    """An option that may be given once: argparse keeps the last of two without a word (`--checkpoint a --checkpoint
    b` would read as a comparison, and answer for b alone)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in given:
            parser.error(f"{option_string} is given twice; give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m jepa_demo", description="Inspect clips with a video JEPA.")
    parser.add_argument("command", choices=["info", "embed", "surprise"],
                        help="info: video facts; embed: one embedding per clip; surprise: prediction-error score")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--checkpoint", action=Once,
                        help="checkpoint folder or Hub repo id for embed and surprise (default: the shipped "
                             "checkpoints/default)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file and line")
    return parser


def describe(command: str, path: str, model) -> dict:
    """The result for one file as a JSON-able dict (raises VideoError/ValueError for a bad file)."""
    if command == "info":
        return {"file": path, **video_info(path)}
    clip = read_for(model, path, command)
    if command == "embed":
        embedding = model.embed(clip.frames)
        check_finite(embedding)
        return {"file": path, "dim": int(embedding.size), "embedding": [round(float(v), 6) for v in embedding]}
    result = model.surprise(clip.frames, progress=True)  # a bar on a terminal: a large model on CPU takes a while
    check_finite(result.per_step)
    step_frames = clip.source_frames[result.step_frames]  # the file's frame numbers, not the sample's
    return {"file": path, "score": round(result.score, 6), "per_step": [round(float(v), 6) for v in result.per_step],
            "step_frames": step_frames.tolist(), "peak_frame": int(step_frames[result.peak_step])}


def check_finite(values: np.ndarray) -> np.ndarray:
    """`values`, refused unless every one is a number. NaN is not JSON (jq and browsers reject it) and not an answer;
    scikit-learn and UMAP would refuse it in words about imputers, and a score comparison would count it a loss without
    a word. Loading refuses weights that are not finite, but finite ones can still overflow float32 on a clip."""
    if not np.isfinite(values).all():
        raise ValueError("the model's output is not a finite number (do its weights overflow?)")
    return values


def out_of_memory(err: RuntimeError) -> bool:
    """torch's out-of-memory errors (CUDA's OutOfMemoryError, the CPU allocator's RuntimeError: "can't allocate
    memory" on Linux and macOS, "not enough memory" on Windows): one long or large file can cause them and the next
    not."""
    message = str(err).lower()
    return any(words in message for words in ("out of memory", "not enough memory", "allocate memory"))


def human_line(command: str, result: dict) -> str:
    name = one_line_name(result["file"])
    if command == "info":
        return (f"{name}: {result['frames']} frames, {result['width']}x{result['height']}, "
                f"{result['fps']:.2f} fps, {result['duration']:.2f} s")
    if command == "embed":
        head = ", ".join(f"{v:+.3f}" for v in result["embedding"][:4])
        return f"{name}: embedding of {result['dim']} dims [{head}, ...]"
    return f"{name}: surprise {result['score']:.4f} (peak at frame {result['peak_frame']})"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)  # options may come between the files, as Unix tools take them
    if args.command == "info" and args.checkpoint is not None:  # it was ignored without a word
        parser.error("--checkpoint is for embed and surprise: info reads the files alone")
    args.checkpoint = str(DEFAULT_CHECKPOINT) if args.checkpoint is None else args.checkpoint
    if sys.stdout is None:  # started with stdout closed (`>&-`): every result would be lost without a word
        print("error: standard output is closed; nowhere to write the results", file=sys.stderr)
        return 2
    print_any_name()
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: the lines printed so far stand
        say("interrupted")
        return 130
    except BrokenPipeError:  # the reader of stdout or stderr went away (`... 2>&1 | head -1`)
        write_nowhere(sys.stdout, sys.stderr)
        return 141  # 128 + SIGPIPE
    except OSError as err:  # stdout's disk is full (`... > /dev/full`)
        say(f"error: could not write the results: {err.strerror or err}")
        write_nowhere(sys.stdout)
        return 1


def _bytes_or_escaped(err: UnicodeError):
    """Encoding errors of stdout and stderr: a file name that is not UTF-8 (argv keeps its bytes as surrogates) is
    printed as the bytes it is, as ls does, rather than stopped by an error (stdout's default) or shown as \udce9
    (stderr's); any other character the stream's encoding lacks (a Cyrillic name on a cp1252 console) is escaped."""
    if not isinstance(err, UnicodeEncodeError):
        return codecs.backslashreplace_errors(err)
    chunk = err.object[err.start:err.end]  # one run of characters the encoding lacks: bytes and letters may mix
    is_byte = ["\udc80" <= c <= "\udcff" for c in chunk]
    run = next((i for i, b in enumerate(is_byte) if b != is_byte[0]), len(chunk))  # handle the leading run only
    if is_byte[0]:
        return bytes(ord(c) - 0xDC00 for c in chunk[:run]), err.start + run
    return chunk[:run].encode("ascii", "backslashreplace").decode("ascii"), err.start + run


_BYTES_OR_ESCAPED = "jepa_demo.bytes_or_escaped"
codecs.register_error(_BYTES_OR_ESCAPED, _bytes_or_escaped)


def one_line_name(path: str) -> str:
    """`path` as one line, whatever it holds: a control character or line separator in it is shown escaped (a file
    may be named `a\\nb.mp4`, and a result line must stay one line); other characters print as they are."""
    return "".join(c.encode("unicode_escape").decode() if _breaks_lines(c) else c for c in path)


def _breaks_lines(c: str) -> bool:
    """A control character (C0, DEL, C1: a newline, NEL, a terminal's CSI) or a Unicode line or paragraph separator."""
    return unicodedata.category(c) == "Cc" or c in "\u2028\u2029"


def print_any_name() -> None:
    """Let stdout and stderr print any file name (`_bytes_or_escaped`): a command-line tool's lines name the user's
    files and folders. A closed stderr (`2>&-`, no sys.stderr) is pointed at /dev/null: print(file=None) writes to
    stdout, and error lines would land among the results (`--json` lines that are not JSON)."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # open for the process's life, as stderr would be
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # not a StringIO a caller swapped in
            stream.reconfigure(errors=_BYTES_OR_ESCAPED)


def print_result(text: str, standing: str) -> int:
    """Print a tool's closing `text` and flush it now: a stdout that fails (`> /dev/full`) is one line on stderr saying
    what stands anyway (`standing`) and status 1, not Python's 'Exception ignored' at exit (status 120); a reader that
    went away (`| true`) ends it quietly with status 141, as the CLI's. Returns 0, 1 or 141."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        write_nowhere(sys.stdout)
        return 141
    except OSError as err:
        write_nowhere(sys.stdout)
        print(f"error: could not print the result: {err.strerror or err} ({standing})", file=sys.stderr)
        return 1
    return 0


def stop_on_signals_as_on_ctrl_c() -> dict:
    """`kill`, `timeout`, `docker stop` (SIGTERM) and a closed terminal (SIGHUP) stop the process as Ctrl-C does, so
    that what it cleans up on KeyboardInterrupt is cleaned up (the app's last sweep of uploads, the tour's temporary
    clips); their default action ends it at once and leaves every file. A signal already ignored (SIGHUP under nohup)
    stays ignored. Off the main thread, where Python takes no handler, nothing changes. Returns the handlers
    replaced (`signals_as_ctrl_c` puts them back)."""
    replaced = {}
    if threading.current_thread() is not threading.main_thread():
        return replaced
    for name in ("SIGTERM", "SIGHUP"):  # Windows has no SIGHUP
        stop = getattr(signal, name, None)
        if stop is not None and signal.getsignal(stop) is signal.SIG_DFL:
            replaced[stop] = signal.signal(stop, signal.default_int_handler)
    return replaced


@contextlib.contextmanager
def signals_as_ctrl_c():
    """`stop_on_signals_as_on_ctrl_c` for the block, the handlers as they were after it."""
    replaced = stop_on_signals_as_on_ctrl_c()
    try:
        yield
    finally:
        for stop, handler in replaced.items():
            signal.signal(stop, handler)


def say(line: str, reader_gone_stops: bool = False) -> None:
    """`line` on stderr, best effort: a stderr that fails (`2>/dev/full`, or a reader gone with the same Ctrl-C,
    `... 2>&1 | head`) is pointed nowhere, silencing the rest rather than failing what is under way or its exit
    status. `reader_gone_stops`: a reader gone (BrokenPipeError) still ends the run, as SIGPIPE ends a Unix tool."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError as err:
        write_nowhere(sys.stderr)
        if reader_gone_stops and isinstance(err, BrokenPipeError):
            raise


class BestEffortStderr:
    """stderr for a progress bar, written as `say` writes: a reader gone (`python -m train ... 2>&1 | tee log`, then
    Ctrl-C) raised from the bar's update, before the step's due save, where it is now pointed nowhere."""

    def write(self, text: str) -> None:
        self._best_effort(sys.stderr.write, text)

    def flush(self) -> None:
        self._best_effort(sys.stderr.flush)

    def __getattr__(self, name):  # the rest is stderr's (fileno for the bar's width, isatty, encoding)
        return getattr(sys.stderr, name)

    @staticmethod
    def _best_effort(method, *args) -> None:
        try:
            method(*args)
        except OSError:
            write_nowhere(sys.stderr)


def write_nowhere(*streams) -> None:
    """Point streams that can no longer be written at /dev/null: Python flushes them again at exit, and that would
    fail with a second error."""
    for stream in filter(None, streams):
        with contextlib.suppress(OSError, ValueError):  # a stream with no file behind it
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def naming_line(err: BaseException, name) -> str:
    """The first line of an error whose message names `name` (a folder given on the command line), the name shown
    escaped: it may hold a newline (`--checkpoint "$(ls -d runs/*)"`), whose first half alone was the line."""
    text = str(err)
    # as given, or as Path writes it (`runs/a/` and `./runs/a` become runs/a in a message that names a Path)
    shown = next((form for form in (str(name), str(Path(name))) if form in text), "")
    return first_line(err, message=text.replace(shown, one_line_name(shown), 1) if shown else text)


def load_or_say_why(source, device: str | None = None):
    """The tools' loading: the model, or None once one line on stderr has said why it cannot be loaded (missing,
    broken, or too large for this machine)."""
    try:
        with quiet_hub_client():  # its retries' warnings would come before the one line that says why
            return load_model(source, device=device)
    except (CheckpointError, RuntimeError, MemoryError) as err:
        if isinstance(err, RuntimeError) and not out_of_memory(err):
            raise  # a bug, not the checkpoint's fault: the traceback says where
        say(f"error: cannot load checkpoint: {naming_line(err, source)}")  # the tour and gallery exit 2 after it
        return None


def _run(args) -> int:
    model = None  # `info` reads files only
    if args.command != "info" and (model := load_or_say_why(args.checkpoint)) is None:
        return 2
    failed = 0
    for path in args.files:
        try:
            result = describe(args.command, path, model)
        except (VideoError, ValueError, OSError, RuntimeError, MemoryError) as err:  # OSError: reading this file
            if isinstance(err, RuntimeError) and not out_of_memory(err):
                raise  # a model that does not fit the code: not this file's fault, and the traceback says where
            # A VideoError names the file already; the line names it once, by the path given.
            # one line per file, whatever its name holds: the prefix goes before the first line is taken
            reason = first_line(err, prefix=f"{Path(path).name}: ")
            if isinstance(err, MemoryError) and not str(err):  # Python's own says nothing but its name
                reason = "out of memory"
            name = one_line_name(path) or '""'  # an empty name, shown as one
            # a stderr on a full disk must not end the run: the files after this one are still read
            say(f"{name}: {reason}", reader_gone_stops=True)
            failed += 1
            continue
        print(json.dumps(result) if args.json else human_line(args.command, result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":  # python -m jepa_demo.cli, as python -m jepa_demo
    sys.exit(main())
