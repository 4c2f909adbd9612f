"""Running a command that starts processes of its own (an app server, torchrun's workers) from a test."""

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def run_whole(command: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True, timeout=timeout)`, except that when it stops early (a
    timeout, Ctrl-C) every process the command started is killed with it: subprocess.run kills only the command, and
    the rest would outlive the test, holding a port, memory and files for the rest of the suite (and torchrun's
    workers, which write to the command's pipes, would keep the test waiting on them)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:
            kill_with_descendants(process.pid)
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_with_descendants(pid: int) -> None:
    """SIGKILL `pid` and every process below it, found through /proc (Linux). Its descendants first: killed first, it
    would leave them to init, out of reach. (torchrun starts each worker in a session of its own, so killing a process
    group would miss them.)"""
    for below in reversed(_descendants(pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(below, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before their children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):  # a process that ended while /proc was read
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after "(name)": state, then the parent
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        below = children.get(queue.pop(0), [])
        found += below
        queue += below
    return found
