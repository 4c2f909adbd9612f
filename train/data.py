"""Training batches as a pure function of (seed, step, rank), so resuming at step k replays exactly the same data.

Two sources: the synthetic physics world rendered on the fly, or a folder of video files (searched recursively).
Either way frames go through `jepa_demo.preprocess`, the same path the app and the CLI use. A `DataLoader` over step
indices gives worker processes and pinned memory for free when `num_workers > 0`.
"""

import dataclasses
import functools
import hashlib
import os
import select
import signal
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from jepa_demo.cli import one_line_name, say
from jepa_demo.config import PreprocessConfig
from jepa_demo.preprocess import preprocess_batch, preprocess_video
from jepa_demo.video import VideoError, folder_label, list_videos, read_video, video_info, with_path
from jepa_demo.world import WorldConfig, render_clip

from .config import CLIP_SEED_STRIDE


class WorldBatches(Dataset):
    """Batch `step` of this rank: clips of the synthetic world, a share of them with irrelevant detail."""

    def __init__(self, preprocess: PreprocessConfig, batch_size: int, seed: int, rank: int, world_size: int,
                 max_objects: int, detail_prob: float, noise_std: float):
        self.preprocess, self.batch_size = preprocess, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.detail_prob = detail_prob
        self.clean = WorldConfig(size=preprocess.img_size, num_frames=preprocess.num_frames, max_objects=max_objects)
        self.detailed = dataclasses.replace(self.clean, noise_std=noise_std, background="mixed")

    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, step: int) -> torch.Tensor:
        first = (step * self.world_size + self.rank) * self.batch_size
        rng = np.random.default_rng((self.seed, step, self.rank))
        with_detail = rng.random(self.batch_size) < self.detail_prob
        clips = [render_clip(self.seed * CLIP_SEED_STRIDE + first + i, self.detailed if d else self.clean).frames
                 for i, d in enumerate(with_detail)]
        return preprocess_batch(np.stack(clips), self.preprocess)  # (B, 3, T, S, S)


class FolderBatches(Dataset):
    """Batch `step` of this rank: clips drawn (with replacement) from the video files under `root`, each from a
    random stretch of its file (a quarter of it to all of it, and never fewer frames than a clip takes), so that a
    file gives new clips at other speeds instead of the same frames at every draw. At inference a clip's frames span
    all of it (`embed`) or windows of a quarter of it (`surprise`): the crops cover both."""

    MIN_SPAN = 0.25

    def __init__(self, root: str, preprocess: PreprocessConfig, batch_size: int, seed: int, rank: int):
        self.files = readable_videos(root, report=rank == 0)
        names = [str(path.relative_to(root)) for path in self.files]
        self.files_fingerprint = f"{len(self.files)} files, sha256 {_digest(names)}"
        # and their sizes, apart, so that runs recorded with names alone still resume: a file re-encoded under its
        # name gives other clips too
        self.sizes_fingerprint = f"sha256 {_digest(str(path.stat().st_size) for path in self.files)}"
        labels = Counter(folder_label(path, root) for path in self.files)
        # sub-folders only (files in the root itself have none), before sorting: None and a name do not compare
        self.label_counts = dict(sorted((label, n) for label, n in labels.items() if label is not None))
        self.preprocess, self.batch_size, self.seed, self.rank = preprocess, batch_size, seed, rank
        self.reported: set[Path] = set()  # files found damaged past the start check, each reported once a process

    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, step, self.rank))
        picks = rng.integers(0, len(self.files), self.batch_size)
        lengths = rng.uniform(self.MIN_SPAN, 1.0, self.batch_size)
        starts = rng.uniform(0.0, 1.0 - lengths)
        spans = [(start, min(1.0, start + length)) for start, length in zip(starts, lengths)]
        clips = [self._read(int(pick), span, (step, i)) for i, (pick, span) in enumerate(zip(picks, spans))]
        return torch.stack([preprocess_video(c, self.preprocess) for c in clips])  # (B, 3, T, S, S)

    def _read(self, pick: int, span: tuple[float, float], draw: tuple[int, int]) -> np.ndarray:
        """The stretch `span` of file `pick`, or of another that reads: the start check decoded only each file's
        first frame, and one damaged stream should not stop a run hours in (nor its --resume, at the same step).
        Another file is drawn at random for the `draw` (step, clip) as the pick was, not the next in order: a label's
        folder that fails (its linked drive gone) would give all its share to the file after it. A failed file is
        tried again in later batches: a file damaged in one stretch reads in others, and skipping it from then on
        would make the batches depend on what this process read before, not on the step alone (a resumed run, or
        another data worker, would draw others)."""
        failed = []
        for index in self._in_order_of_trial(pick, draw):
            path = self.files[index]
            try:  # decoded straight to the model's short side: a 1080p file is never held at full size
                clip = read_video(path, num_frames=self.preprocess.num_frames, size=self.preprocess.resize_to,
                                  span=span)
            except VideoError as err:
                failed.append((path, err))
                continue
            for path, err in failed:  # said once some file reads: a lost drive is one line (below), not one a file
                if path not in self.reported:
                    self.reported.add(path)
                    self._say_skipped(path, err)
            return clip
        raise DataLost(one_line_name(f"data: none of the {len(self.files)} video files can be read any more (first: "
                                     f"{with_path(failed[0][1], failed[0][0])})"))

    def _in_order_of_trial(self, pick: int, draw: tuple[int, int]):
        """`pick`, then every other file in an order drawn for this clip (only when the pick fails)."""
        yield pick
        others = np.random.default_rng((self.seed, *draw, self.rank, 1)).permutation(len(self.files))
        yield from (int(index) for index in others if index != pick)

    def _say_skipped(self, path: Path, err: VideoError) -> None:
        """A line for the 1st, 2nd, 4th, 8th... file found unreadable in this process: a label's folder lost
        mid-run is a few lines, not one a file."""
        count = len(self.reported)
        if count & (count - 1) == 0:
            so_far = f"; {count} files skipped so far" if count > 1 else ""
            say(one_line_name(f"data: skipping {path} where it cannot be read ({err}){so_far}"))


class DataLost(ValueError):
    """Every file of a folder that read at the start fails mid-run (a drive unmounted): not a setting to change, and
    what the run saved stands for --resume once the files are back."""


def _digest(lines) -> str:
    return hashlib.sha256(os.fsencode("\n".join(lines))).hexdigest()[:16]  # fsencode: a name need not be UTF-8


def readable_videos(root: str, report: bool = True) -> list[Path]:
    """The video files under `root` that can be read. One broken file among thousands would otherwise stop a run
    hours in, whenever a batch first drew it: each file is opened once here, and those that fail are left out, with
    one line saying how many and why the first failed (`report`); and one naming the files of a single frame, a still
    picture (a GIF of one frame) each of whose clips never moves, which the run otherwise trains on without a word."""
    files = list_videos(root, what=f"data={root}", hint=" (use data=world for the synthetic world)")
    readable, reasons, stills = [], [], []
    for path in tqdm(files, desc="checking videos", unit="file", leave=False, disable=None if report else True):
        try:
            if video_info(path)["frames"] == 1:
                stills.append(path)
        except VideoError as err:
            reasons.append(with_path(err, path))
            continue
        readable.append(path)
    if not readable:  # one line whatever the names hold (a\nb.mp4), as the CLI's
        raise ValueError(one_line_name(f"data={root}: none of the {len(files)} video files can be read "
                                       f"({reasons[0]})"))
    if reasons and report:
        say(one_line_name(f"data={root}: leaving out {len(reasons)} of {len(files)} video files that cannot be "
                          f"read (first: {reasons[0]})"))
    if stills and report:
        are = "is a still picture" if len(stills) == 1 else "are still pictures"
        say(one_line_name(f"note: data={root}: {len(stills)} of {len(files)} video files {are} (a single frame), "
                          f"trained on as clips that never move (first: {stills[0]})"))
    return readable


def make_loader(dataset: Dataset, start_step: int, steps: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """Iterate batches for steps start_step .. steps-1 in order (each item is already a whole batch)."""
    return DataLoader(dataset, batch_size=None, sampler=range(start_step, steps), num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False,
                      worker_init_fn=functools.partial(_leave_signals_to_the_training_process, os.getpid()))


def _leave_signals_to_the_training_process(trainer: int, worker_id: int) -> None:
    """A terminal's Ctrl-C and its SIGHUP when it closes reach every process of the run, and `timeout`, `pkill`, a
    Slurm job's end or preemption and `systemctl stop` send SIGTERM to every one. The training process takes a first
    one between steps (loop.CtrlC) and stops its data workers itself; a worker that died of it would end the run as if
    it had run out of memory. So a worker ignores Ctrl-C (a worker started by spawn or forkserver, macOS's and Python
    3.14's default, has Python's own handler) and SIGHUP, and stops on SIGTERM only when the training process sends
    it (`trainer`, its process id: a worker started by a forkserver, Python 3.14's default, is not its child): the
    loader's shutdown does, to a worker that has not finished within 5 s (one waiting on a hung read would otherwise
    keep the run from ever exiting). Torch's own handler tells them apart too, but dies of the others."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo"):  # Linux; elsewhere torch's handler stays
        _stop_on_sigterm_from(trainer)


def _stop_on_sigterm_from(trainer: int) -> None:
    """SIGTERM held back from this thread and those it starts (all of a forked worker's) and taken by one that exits
    when the sender is `trainer`, or once `trainer` is gone (any SIGTERM then ends a worker left behind), and drops it
    otherwise: a Python handler cannot see who sent a signal."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    gone = _watch_for_the_end_of(trainer)

    def wait() -> None:
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != trainer and not gone():
            pass
        os._exit(0)  # as torch's handler does: the loader is shutting the worker down

    threading.Thread(target=wait, name="sigterm-from-the-training-process", daemon=True).start()


def _watch_for_the_end_of(pid: int):
    """A call saying whether process `pid` has ended: through a pidfd, which says so of a process killed but not yet
    reaped (its parent stuck reading the pipes this worker holds) and never of another that later takes its number;
    where there is none, by whether it can still be signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or gone already
        return lambda: not _can_signal(pid)
    ended = select.poll()  # not select.select, which refuses a descriptor numbered 1024 or more (many inherited)
    ended.register(pidfd, select.POLLIN)
    return lambda: bool(ended.poll(0))


def _can_signal(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: whether it could be sent
    except (ProcessLookupError, PermissionError):  # gone, or its number another user's process's now
        return False
    return True
