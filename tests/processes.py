"""Running a command that starts processes of its own (an app server, torchrun's workers) from a test."""

import os
import signal
import subprocess


def run_whole(command: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True, timeout=timeout)`, except that on a timeout the
    command's whole process group is killed: subprocess.run kills only the command, and the processes it started would
    outlive the test, holding a port, memory and files for the rest of the suite."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its group: start_new_session made the command its leader
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
