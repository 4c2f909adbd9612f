"""Train a video JEPA and write a checkpoint folder.

    python -m train --config train/configs/cpu.yaml                       # the shipped default's recipe
    python -m train --config train/configs/cpu.yaml steps=50 warmup_steps=5 out_dir=runs/try
    python -m train --config train/configs/cpu.yaml --resume              # continue exactly where it stopped
    torchrun --nproc_per_node 2 -m train --config train/configs/gpu.yaml  # DDP (nccl on GPUs, gloo on CPU)
    python -m train push checkpoints/default --repo-id USER/NAME          # upload a checkpoint to the Hub

Overrides are key=value pairs typed by `train.config.TrainConfig`; an unknown key is an error.
"""

import os
import re
import shlex
import sys
import time
from pathlib import Path

import torch

from jepa_demo.checkpoint import CheckpointError, first_line, push_to_hub, quiet_hub_client
from jepa_demo.cli import (
    Once,
    OneLineParser,
    naming_line,
    one_line_name,
    out_of_memory,
    print_any_name,
    print_result,
    say,
)

from .config import load_config
from .data import DataLost
from .loop import STATE_NAME, SaidByTheMainProcess, TrainingDiverged, run, state_is_this_runs

RESUME = "rerun the same command with --resume to continue"
# The same batches again on the same model: it fits only where more memory is free than was
RESUME_AFTER_OOM = "--resume replays the same batches, so it fits only once more memory is free (another process gone)"


def main(argv=None) -> int:
    print_any_name()  # a closed stderr (2>&-) failed the progress bar's first write, ending the run at step 0
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["push"]:
        return push(words[1:])
    parser = OneLineParser(prog="python -m train", description=__doc__.split("\n")[0],
                                     epilog="python -m train push --help: upload a checkpoint folder to the Hub")
    parser.add_argument("--config", action=Once, help="recipe YAML (only what differs from the defaults)")
    parser.add_argument("--resume", action="store_true", help="continue from out_dir's last save")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)  # key=value pairs may come before and after --resume
    cfg, started = None, time.time()

    def stands(resume: str | None = RESUME) -> str:
        return _what_stands(cfg, started, args.resume, resume)

    try:
        cfg = load_config(args.config, args.overrides)
        out = run(cfg, resume=args.resume, command=_command_line(argv))
    except KeyboardInterrupt:  # Ctrl-C: saves are atomic, so the last complete one stands
        if os.environ.get("RANK", "0") == "0":
            say(f"interrupted: {stands()}")
        return 130
    except TrainingDiverged as err:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process stops here, on the same averaged loss
            say(f"error: {err}; {stands(resume=None)}")
        return 1
    except DataLost as err:  # raised in a data worker too: DataLoader raises the worker's error type again
        say(f"error: {own_message(err)}; {stands()}")
        return 1
    except ValueError as err:
        # a recipe's or an override's error is every process's under torchrun: the first says it, not all eight
        if not isinstance(err, SaidByTheMainProcess) and (cfg is not None or os.environ.get("RANK", "0") == "0"):
            say(f"error: {one_line_name(own_message(err))}")  # it may name a file called a\nb.mp4
        return 2
    except OSError as err:  # e.g. the disk filled up mid-run; saves are atomic, so the last complete one stands
        say(f"error: could not write {err.filename or 'the outputs'}: {err.strerror or own_message(err)}; "
            f"{stands()}")
        return 1
    except RuntimeError as err:
        if data_worker_died(err):  # killed by the kernel's OOM killer, or a bus error on a full /dev/shm
            # --resume keeps the run's batch_size (as below) but takes another num_workers
            say(f"error: {first_line(err, message=own_message(err))} (often out of memory or shared memory, "
                "/dev/shm): fewer num_workers (which --resume takes) or a smaller batch_size (a new run, in another "
                f"out_dir if this one saved) needs less; {stands()}")
            return 1
        if not out_of_memory(err):
            raise
        reason = first_line(err, message=own_message(err))
        # --resume keeps the run's batch_size and model: a smaller one is a new run, in a new out_dir once saved
        on_gpu = isinstance(err, torch.OutOfMemoryError)  # the CPU's allocator raises a plain RuntimeError
        resume = f"{RESUME_AFTER_OOM}{' or with device=cpu' if on_gpu else ''}"
        say(f"error: out of memory ({reason}); a smaller batch_size or model needs less, as a new run (in another "
            f"out_dir if this one saved); {stands(resume=resume)}")
        return 1
    if os.environ.get("RANK", "0") != "0":  # under torchrun: one line for the run, not one per process
        return 0
    return print_result(f"checkpoint written to {one_line_name(str(out))}", "the checkpoint is written")


def push(argv) -> int:
    parser = OneLineParser(prog="python -m train push",
                                     description="Upload a checkpoint folder, with its model card, to the Hub.")
    parser.add_argument("folder", help="a checkpoint folder, e.g. checkpoints/default")
    parser.add_argument("--repo-id", required=True, action=Once,
                        help="USER/NAME of the Hub model repo (created if needed)")
    parser.add_argument("--private", action="store_true", help="make the repo private (one that exists already too)")
    args = parser.parse_args(argv)
    try:
        with quiet_hub_client():  # its retries' warnings would come before the one line that says why it failed
            url = push_to_hub(args.folder, args.repo_id, private=args.private)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except CheckpointError as err:
        say(f"error: {naming_line(err, args.folder)}")
        return 2
    except OSError as err:  # a folder name too long, or one it may not enter
        say(f"error: {one_line_name(args.folder)}: cannot be read ({err.strerror or err})")
        return 2
    return print_result(f"pushed {one_line_name(args.folder)} to {url}; load it with "
                        f"jepa_demo.load_model({args.repo_id!r})", "the push is done")


def own_message(err: Exception) -> str:
    """The error's message. One raised in a data worker (num_workers > 0) comes back with its whole traceback in
    the message ("Caught ValueError in DataLoader worker process 0. Original Traceback ..."), the message last."""
    text = str(err)
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return text
    lines = text.rstrip().splitlines()
    name = type(err).__name__  # the traceback ends "ValueError: message" (or "module.VideoError: ...")
    starts = [i for i, line in enumerate(lines) if re.match(rf"([\w.]+\.)?{name}: ", line)]
    start = starts[-1] if starts else len(lines) - 1
    return "\n".join([lines[start].split(": ", 1)[-1], *lines[start + 1:]])


def data_worker_died(err: RuntimeError) -> bool:
    """torch's words for a DataLoader worker process that is gone ("... is killed by signal: Killed.", "... exited
    unexpectedly with exit code 1. ..."); an error raised inside a worker comes back as "Caught ValueError in ..."."""
    return str(err).startswith("DataLoader worker (pid")


def _what_stands(cfg, started: float, resumed: bool, resume: str | None) -> str:
    """What a stopped run leaves. A training state written since this run `started` is its own (even its last step's,
    whose export --resume finishes), and so is the one a --resume started from; another older one is an earlier
    run's, which --resume continues only when unfinished and with these settings (a new run stopped before it
    replaced that one). `resume`: what to say of --resume after a save that stands; None for a run that would only
    stop the same way again, whose save is not offered to it."""
    state = None if cfg is None else Path(cfg.out_dir) / STATE_NAME
    if state is None or not os.path.isfile(state):  # not Path.is_file: a path it cannot look up must not raise here
        return "nothing was saved yet"
    if state.stat().st_mtime < started and not state_is_this_runs(cfg, resumed):
        return f"nothing of this run was saved; the earlier run's save in {cfg.out_dir} is as it was"
    stands = f"the last complete save in {cfg.out_dir} stands"
    return f"{stands}; {resume}" if resume else stands


def _command_line(argv) -> str:
    """What the model card records: under torchrun, the torchrun command with its process counts."""
    launcher = "python -m train"
    if "RANK" in os.environ:  # set by torchrun, as setup_runtime reads it
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        nodes = int(os.environ.get("WORLD_SIZE", per_node)) // per_node
        launcher = f"torchrun {f'--nnodes {nodes} ' if nodes > 1 else ''}--nproc_per_node {per_node} -m train"
    return f"{launcher} {shlex.join(sys.argv[1:] if argv is None else argv)}"


if __name__ == "__main__":
    sys.exit(main())
