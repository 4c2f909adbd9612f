"""Running a command that starts processes of its own (an app server, torchrun's workers) from a test."""

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def run_whole(command: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True, timeout=timeout)`, except that when it stops early (a
    timeout, Ctrl-C) the processes below the command are killed with it: subprocess.run kills only the command, and
    the rest would outlive the test, holding a port, memory and files for the rest of the suite (and torchrun's
    workers, which write to the command's pipes, would keep the test waiting on them). Those it can find at that
    moment: one already handed to init is out of reach."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:
            if process.poll() is None:  # a reaped command's number may already be another process's
                kill_with_descendants(process.pid)
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run_with_its_reader_gone(command: list, gone: str, timeout: float, **kwargs) -> tuple[int, bytes | str]:
    """Run `command` with its `gone` stream ("stdout" or "stderr") a pipe whose reader left before the first write
    (`... | head -1`; `2> >(tee log)` with tee ended by the same Ctrl-C): its exit status and what the other stream
    got. A run that hangs is killed, not left to outlive the test."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    getattr(process, gone).close()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr if gone == "stdout" else stdout


def kill_with_descendants(pid: int, stop: signal.Signals = signal.SIGKILL) -> None:
    """SIGKILL (or `stop`) the processes below `pid`, found through /proc (Linux), then `pid`: killed first, it would
    leave them to init, out of reach. (torchrun starts each worker in a session of its own, so killing a process group
    would miss them.) A process gone or not ours meanwhile is passed over, so that `pid` is always reached."""
    for target in [*reversed(_descendants(pid)), pid]:
        with contextlib.suppress(OSError):  # ProcessLookupError: gone; PermissionError: a number reused by another
            os.kill(target, stop)


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
