"""What a run ran on, in the words its records give (model cards, the evaluation report, benchmark JSON): wall times
and float results are only comparable on the same kind of hardware, and "2 CPU threads" does not say which."""

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name (Linux), else the architecture."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def usable_cpus() -> int:
    """The CPU cores this process may run on (Linux: its affinity, which a container or taskset narrows)."""
    if hasattr(os, "sched_getaffinity"):  # not on macOS or Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe_hardware(device: torch.device, processes: int = 1) -> str:
    """`device`'s name (a GPU's, else this process's CPU threads and the CPU's model), times `processes` (DDP ranks)."""
    if device.type == "cuda":
        one = torch.cuda.get_device_name(device)
    else:
        one = f"{torch.get_num_threads()} CPU threads ({cpu_model()})"
    return one if processes == 1 else f"{processes} processes x {one}"
