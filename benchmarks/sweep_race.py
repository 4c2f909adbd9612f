"""The app's file sweep against requests that return the same picture again: how many fetches it refuses.

    python benchmarks/sweep_race.py [--seconds 30] [--threads 4] [--pictures 8] [--json benchmarks/sweep_race.json]

Gradio names the pictures it caches by their content, so a request returning a picture again rewrites the same path
and re-adds it to the allowed set a moment later. Here request threads do exactly that through Gradio's own cache
writer, then fetch at once (allowed only if in the set, then read), while a sweep runs flat out with a 20 ms
lifetime. A fetch within 20 ms of its write that is refused is the sweep's fault. Two sweeps run in turn: a plain
check-age, remove, discard (the app's before it renamed old files aside) and the app's `sweep_files`. Run it beside
a CPU-bound process too: contention stretches the app's remaining window, between renaming an old file aside and
renaming it back. A request whose own write fails (into a folder the sweep removed, say) is listed and the exit
status is 1. Prints a table and writes JSON.
"""

import argparse
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402
from jepa_demo.hardware import cpu_model, usable_cpus  # noqa: E402

LIFETIME = 0.02  # seconds; a fetch comes about 1 ms after its write


def plain_sweep(app, age: float) -> None:
    """Check the age, remove, discard: a request rewriting the file in between loses it (404) or its right (403)."""
    for files in list(app.temp_file_sets):
        for path in set(files):
            try:
                if time.time() - os.lstat(path).st_ctime > age:
                    os.remove(path)
                    files.discard(path)
            except FileNotFoundError:
                files.discard(path)


def race(sweep, seconds: float, threads: int, pictures: int) -> dict:
    import gradio as gr
    from gradio import processing_utils

    shades = [np.full((8, 8, 3), shade, np.uint8) for shade in range(pictures)]
    stop, fetches, refused, failed = threading.Event(), [0] * threads, {"403": 0, "404": 0}, []
    counting = threading.Lock()  # `+=` on a shared dict is a read and a write: two threads could lose one

    def serve(index: int, cache: str) -> None:
        rng = np.random.default_rng(index)
        while not stop.is_set():
            started = time.time()
            try:
                path = processing_utils.save_img_array_to_cache(shades[rng.integers(pictures)], cache)
            except OSError as err:  # the sweep broke Gradio's own write: that request would fail outright
                failed.append(f"{type(err).__name__}: {err}")
                return
            time.sleep(0.001)  # Gradio's event loop adds the path a moment after the worker thread wrote it
            ui.upload_file_set.add(path)
            allowed, present = path in ui.upload_file_set, os.path.exists(path)
            if not (allowed and present) and time.time() - started < LIFETIME:
                with counting:
                    refused["403" if not allowed else "404"] += 1
            fetches[index] += 1

    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, GRADIO_TEMP_DIR=cache):
        with gr.Blocks() as ui:  # its folder is `cache` (read now), which app.sweep_files scans for placeholders
            gr.Image()
        workers = [threading.Thread(target=serve, args=(index, cache)) for index in range(threads)]
        for worker in workers:
            worker.start()
        passes = 0
        try:
            end = time.time() + seconds
            while time.time() < end:
                sweep(ui, LIFETIME)
                passes += 1
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    # Passes too: a sweep that did more work per pass would get fewer chances to race a request
    return {"fetches": sum(fetches), "sweep_passes": passes, "refused_403": refused["403"],
            "refused_404": refused["404"], "failed_writes": failed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="per sweep")
    parser.add_argument("--threads", type=int, default=4, help="request threads")
    parser.add_argument("--pictures", type=int, default=8, help="distinct pictures the requests return")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "sweep_race.json"))
    args = parser.parse_args(argv)
    # would overwrite the recorded run with zeros; nan compares false with everything, so it is named
    if not 0 < args.seconds < math.inf or min(args.threads, args.pictures) < 1:
        parser.error("--seconds, --threads and --pictures must be above 0 (--seconds a finite number)")
    if args.pictures > 256:  # each picture is one grey level of 8 bits
        parser.error("--pictures can be at most 256: each is one shade of grey")
    out = _report.check_output(parser, args.json)
    import app

    rows = [{"sweep": name, **race(sweep, args.seconds, args.threads, args.pictures)}
            for name, sweep in (("check, remove, discard", plain_sweep), ("app.sweep_files", app.sweep_files))]
    print(f"{args.threads} request threads, {args.pictures} pictures, lifetime {LIFETIME * 1000:.0f} ms, "
          f"{args.seconds:g} s per sweep")
    print(f"{'sweep':<24}{'fetches':>9}{'sweep passes':>14}{'refused 403':>13}{'refused 404':>13}")
    for row in rows:
        print(f"{row['sweep']:<24}{row['fetches']:>9}{row['sweep_passes']:>14}{row['refused_403']:>13}"
              f"{row['refused_404']:>13}")
    report = {"command": _report.command(__file__, argv), "threads": args.threads, "pictures": args.pictures,
              "lifetime_s": LIFETIME, "seconds": args.seconds, "rows": rows, "machine": cpu_model(),
              "cpus": usable_cpus(), **_report.versions("gradio")}
    _report.write(out, report)
    for row in rows:
        for error in row["failed_writes"]:
            print(f"{row['sweep']}: a request's write failed: {error}", file=sys.stderr)
    return 1 if any(row["failed_writes"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
