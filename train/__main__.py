"""Train a video JEPA and write a checkpoint folder.

    python -m train --config train/configs/cpu.yaml                       # the shipped default, on CPU
    python -m train --config train/configs/cpu.yaml steps=50 out_dir=runs/try
    python -m train --config train/configs/cpu.yaml --resume              # continue exactly where it stopped
    torchrun --nproc_per_node 2 -m train --config train/configs/gpu.yaml  # DDP (nccl on GPUs, gloo on CPU)

Overrides are key=value pairs typed by `train.config.TrainConfig`; an unknown key is an error.
"""

import argparse
import shlex
import sys

from .config import load_config
from .loop import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="recipe YAML (only what differs from the defaults)")
    parser.add_argument("--resume", action="store_true", help="continue from out_dir's last save")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        out = run(cfg, resume=args.resume, command=_command_line(argv))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"checkpoint written to {out}")
    return 0


def _command_line(argv) -> str:
    return "python -m train " + shlex.join(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
