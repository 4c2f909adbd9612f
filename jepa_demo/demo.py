"""A short terminal tour of a checkpoint, for a machine without a browser (`make demo` runs the app).

Seconds on the shipped checkpoint; V-JEPA 2 on a CPU takes hours (seven clips of 128 frames: the plausible clip is
usually one for every kind), a progress bar over each clip's windows showing that it runs.

    python -m jepa_demo.demo [--checkpoint checkpoints/default] [--kind vanish ...]

For each kind of physics violation it renders a clip of the synthetic world and its violating twin, writes both as
real mp4 files in a temporary folder (removed afterwards), reads them back as the CLI reads a file, and
prints the model's surprise over time for each: a model that understands the world spikes after the violation.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from .checkpoint import DEFAULT_CHECKPOINT, first_line
from .cli import (
    Once,
    OneLineParser,
    check_finite,
    load_or_say_why,
    out_of_memory,
    read_for,
    say,
    signals_as_ctrl_c,
    write_nowhere,
)
from .gallery import EXAMPLE_SEED
from .video import write_video
from .world import VIOLATIONS, WorldConfig, make_pair

_BARS = " ▁▂▃▄▅▆▇█"
_ASCII_BARS = " _.-=+*#@"  # for a stdout that cannot print block characters (Windows' cp1252, redirected)


def sparkline(values: np.ndarray, low: float, high: float) -> str:
    try:
        _BARS.encode(sys.stdout.encoding or "utf-8")
        bars = _BARS
    except (UnicodeEncodeError, LookupError, AttributeError):  # AttributeError: a stream without an encoding
        bars = _ASCII_BARS
    scaled = (np.asarray(values) - low) / max(high - low, 1e-9)
    return "".join(bars[int(round(v * (len(bars) - 1)))] for v in np.clip(scaled, 0, 1))


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m jepa_demo.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), action=Once)
    parser.add_argument("--kind", choices=VIOLATIONS, action="append",
                        help="violation kind to show (repeatable; default: every kind)")
    parser.add_argument("--seed", type=int, default=EXAMPLE_SEED,
                        help="the scene's seed (default: the seed of the app's examples, a scene no model trained on)")
    args = parser.parse_args(argv)
    if args.seed < 0:  # found now, not after the model has loaded (make_pair would refuse it only then)
        parser.error(f"--seed must be a whole number of at least 0, got {args.seed}")
    if sys.stdout is None:  # started with stdout closed (`>&-`): a tour nobody sees, as the CLI refuses its results
        print("error: standard output is closed; nowhere to write the tour", file=sys.stderr)
        return 2
    with signals_as_ctrl_c():  # `kill`, `timeout`, a closed terminal: the temporary clips go, as on Ctrl-C
        return _tour(args)


def _tour(args) -> int:
    try:
        model = load_or_say_why(args.checkpoint)
    except KeyboardInterrupt:  # loading is the slow part with a Hub id (retries) or V-JEPA 2 on a CPU
        return _stop("interrupted", 130)
    if model is None:
        return 2
    wins = 0
    try:
        info = model.info()
        step = "" if info["step"] is None else f"step {info['step']}, "  # V-JEPA 2 records none
        print(f"checkpoint: {step}{info['params'] / 1e6:.1f} M parameters, on {info['device']}")
        print("each block: a clip and its twin with a physics violation; surprise per time step (higher = more "
              "surprised)")
        # clips of two model windows at least: V-JEPA 2's window alone is 64 frames
        cfg = WorldConfig(size=model.preprocess.img_size, num_frames=max(32, 2 * model.cfg.num_frames))
        kinds = list(dict.fromkeys(args.kind or VIOLATIONS))  # `--kind vanish --kind vanish` is one pair
        plausibles = {}  # seed -> its plausible clip scored: make_pair's is its seed's, usually one for every kind
        for kind in kinds:
            plausible, implausible = make_pair(args.seed, kind, cfg)
            if (seed := plausible.labels["seed"]) not in plausibles:
                plausibles[seed] = _scored(plausible, "plausible", model)
            scored = {"plausible": plausibles[seed], kind: _scored(implausible, kind, model)}
            wins += _print_pair({name: result for name, (_, result) in scored.items()},
                                {name: clip for name, (clip, _) in scored.items()},
                                implausible.labels["violation_frame"], kind)
        print(f"\nThe violating twin was more surprising in {wins} of {len(kinds)} pairs "
              "(README: what the shipped model has and has not learned).")
        sys.stdout.flush()  # here, not at exit: a full disk or a closed pipe under stdout is then caught below
    except ValueError as err:  # a model the synthetic world cannot feed (e.g. under 16 px), or overflowing weights
        return _stop(f"error: {err}", 2)
    except (RuntimeError, MemoryError) as err:
        if isinstance(err, RuntimeError) and not out_of_memory(err):
            raise  # a bug: the traceback says where
        return _stop(f"error: out of memory ({first_line(err)}); try a smaller checkpoint or a machine with more "
                     "memory", 2)
    except KeyboardInterrupt:  # Ctrl-C: the pairs printed so far stand, as with the CLI
        return _stop("interrupted", 130)
    except BrokenPipeError:  # the reader went away (`... | head -1`): quietly, as the CLI
        return _stop(None, 141)  # 128 + SIGPIPE
    except OSError as err:  # a full disk, for the clips or under stdout
        return _stop(f"error: could not write {err.filename or 'the output'}: {err.strerror or err}", 1)
    return 0


def _stop(message: str | None, status: int) -> int:
    """End the tour early: what it printed goes out if stdout can still take it (else stdout is pointed nowhere, or
    Python's own flush at exit would fail a second time), then `message` on stderr."""
    try:
        sys.stdout.flush()
    except OSError:
        write_nowhere(sys.stdout)
    if message:
        say(message)  # stderr gone too (`... 2>&1 | head -1`): best effort
    return status


def _scored(clip, name: str, model):
    """Write `clip` as a real mp4 file and read it back, as `python -m jepa_demo surprise` reads a file: (the read clip
    (frames, and which frame of the file each one is: a clip longer than the model reads is thinned), its surprise)."""
    with tempfile.TemporaryDirectory(prefix="jepa-demo-") as tmp:
        path = Path(tmp) / f"{name}.mp4"
        write_video(path, clip.frames)
        read = read_for(model, path)
    result = model.surprise(read.frames, progress=True)
    check_finite(result.per_step)  # weights that overflow: one line, not a failed sparkline
    return read, result


def _print_pair(results: dict, clips: dict, violation_frame: int, kind: str) -> bool:
    """Frame numbers are the file's, as the violation's is (the CLI's `peak_frame` too), not the read clip's."""
    print(f"\n{kind} at frame {violation_frame}:")
    values = np.concatenate([r.per_step for r in results.values()])
    low, high = float(values.min()), float(values.max())
    for name, result in results.items():
        peak = int(clips[name].source_frames[result.step_frames[result.peak_step]])
        print(f"  {name:>13}  {sparkline(result.per_step, low, high)}  score {result.score:.4f}  (peak frame {peak})")
    frames = clips["plausible"].source_frames[results["plausible"].step_frames]
    print(f"  {'frames':>13}  {frames[0]} .. {frames[-1]}")
    if violation_frame < frames[0]:  # a pass-through at the first collision in view can come that early
        print(f"  {'':>13}  (the violation comes before the first predicted frame: only what follows it is scored)")
    return results[kind].score > results["plausible"].score


if __name__ == "__main__":
    sys.exit(main())
