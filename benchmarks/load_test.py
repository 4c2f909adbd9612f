"""Many users at once: launch the app (`python app.py`) on 127.0.0.1 and send it users x requests from gradio_client.

    python benchmarks/load_test.py [--users 32] [--requests 5] [--rounds 6] [--json benchmarks/load_test.json]

Each user is its own `gradio_client.Client` in its own thread, with one of 7 synthetic clips (plausible and one per
violation kind; users 7 apart share one, which Gradio then stores once), and goes round the four endpoints. Before
the load, every (clip, endpoint) answer is recorded with one user alone; under load each answer must equal the one
for *its* clip, so a lost request, a failed one, or an answer computed on another clip is counted (not one computed
for another user of the same clip, which is the same answer). Memory: the server's resident set before the load
and, after each round, its resident set and peak (VmRSS, VmHWM), so that memory that keeps growing shows round
after round.
Afterwards: the time one more request takes, whether the uploads were removed from Gradio's folder once their
lifetime passed, and whether the app, stopped with SIGTERM, exits cleanly and leaves that folder empty.
Also how long the app took from launch to answering HTTP. The app gets an empty cache folder ($JEPA_LENS_CACHE) of
its own, as on a fresh clone, and the report lists what it wrote there before answering. The app's stderr goes to a
log file, whose tail is shown if the app fails to start.
Prints a table and writes JSON.
"""

import argparse
import json
import math
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402
from jepa_demo import write_video  # noqa: E402
from jepa_demo.hardware import cpu_model, usable_cpus  # noqa: E402
from jepa_demo.world import VIOLATIONS, WorldConfig, make_pair  # noqa: E402

# Endpoint -> (its inputs after the video file, which output holds the numbers to compare).
ENDPOINTS = {
    "/predict_masked": (("multiblock", 0.75, 0, "default"), 5),
    "/neighbors": ((8, "default"), 1),
    "/embedding_map": (("num_objects", "default"), 1),
    "/surprise": (("default",), 2),
}


def make_clips(folder: Path) -> list[Path]:
    """One plausible clip and one per violation kind (64 px, 32 frames), each with answers of its own."""
    cfg = WorldConfig(size=64, num_frames=32)
    clips = {"plausible": make_pair(100, VIOLATIONS[0], cfg)[0]}
    clips.update({kind: make_pair(100 + i, kind, cfg)[1] for i, kind in enumerate(VIOLATIONS)})
    paths = []
    for name, clip in clips.items():
        write_video(folder / f"{name}.mp4", clip.frames)
        paths.append(folder / f"{name}.mp4")
    return paths


class AppFailed(RuntimeError):
    """The app exited or did not answer at start, did not answer one user alone, or exited during the load: said in
    one line (any other RuntimeError is a bug, a traceback)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, temp_dir: Path, cache: Path, file_lifetime: int, log: Path,
                 timeout: float = 600) -> subprocess.Popen:
    """`python app.py` on 127.0.0.1:port, its Gradio files in `temp_dir`, its cache in `cache` and its stderr in
    `log`; returns once it answers HTTP. The app's and Gradio's settings of this shell are left out
    (`_report.without_app_settings`)."""
    env = {**_report.without_app_settings(), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_TEMP_DIR": str(temp_dir), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "JEPA_LENS_FILE_LIFETIME": str(file_lifetime), "JEPA_LENS_CACHE": str(cache)}
    # A file, not a pipe: Gradio prints a traceback for every refused request, and a pipe nobody reads fills up
    # (64 KiB) and then blocks the app's event loop
    with log.open("w") as stderr:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=stderr)
    try:
        _wait_for_answer(server, port, log, timeout)
    except BaseException:  # this script stopped meanwhile (Ctrl-C, SIGTERM) too: the app must not outlive it
        if server.poll() is None:
            server.kill()
            server.wait()
        raise
    return server


def _wait_for_answer(server: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise AppFailed(f"the app exited with status {server.returncode}; its log ends: {_last_line(log)}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AppFailed(f"the app did not answer within {timeout:.0f} s; its log ends: {_last_line(log)}")


def _last_line(log: Path) -> str:
    """The log's last line that holds anything: the error an app that stopped ends it with."""
    return next((line.strip() for line in reversed(log.read_text(errors="replace").splitlines()) if line.strip()),
                "(empty)")


def stop(server: subprocess.Popen, timeout: float = 60) -> bool:
    """SIGTERM, as `docker stop` sends: the app must stop as on Ctrl-C and sweep everything. One still running after
    `timeout` is killed, never left behind; returns whether it had to be."""
    server.terminate()
    try:
        server.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return True


def memory_mib(pid: int) -> dict:
    """The process's resident set now and its peak so far (Linux /proc), in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "peak_mib": int(fields["VmHWM"].split()[0]) / 1024}


# A request not answered in this long is counted as failed: an app that takes connections and never answers must not
# hang the script (the slowest answer of the recorded run took 12.1 s)
REQUEST_TIMEOUT_S = 300


def call(client, endpoint: str, clip: Path):
    """The numbers part of one endpoint's answer for `clip`; TimeoutError after REQUEST_TIMEOUT_S."""
    from gradio_client import handle_file

    inputs, numbers_at = ENDPOINTS[endpoint]
    job = client.submit(handle_file(str(clip)), *inputs, api_name=endpoint)
    return job.result(timeout=REQUEST_TIMEOUT_S)[numbers_at]


def same(a, b, rel: float = 1e-5) -> bool:
    """Equal answers: the same structure, numbers equal to `rel`, anything else equal and of the same type (a None, a
    string or a bool where the other holds a number is a wrong answer)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k], rel) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y, rel) for x, y in zip(a, b))
    if _is_number(a) and _is_number(b):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
    return type(a) is type(b) and a == b


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _error(where: str, err: Exception) -> str:
    return f"{where}: {type(err).__name__}: {err}"[:300]


_STOPPING = threading.Event()  # the script is stopping: users make no more requests


def user(url: str, index: int, clips: list[Path], requests: int, references: dict, downloads: Path) -> dict:
    """One user: its own client and clip, `requests` calls going round the endpoints. Tallies the outcomes."""
    from gradio_client import Client

    clip = clips[index % len(clips)]
    tally = {"served": 0, "wrong": 0, "failed": 0, "errors": [], "seconds": []}
    try:
        client = Client(url, verbose=False, download_files=str(downloads / f"user{index}"))
    except Exception as err:  # could not connect: each of its requests is lost, counted, never raised
        tally["failed"] = requests
        tally["errors"].append(_error("connecting", err))
        return tally
    endpoints = list(ENDPOINTS)
    for r in range(requests):
        if _STOPPING.is_set():
            break
        endpoint = endpoints[(index + r) % len(endpoints)]
        start = time.perf_counter()
        try:
            answer = call(client, endpoint, clip)
        except Exception as err:  # a lost or refused request: counted and reported, never raised
            tally["failed"] += 1
            tally["errors"].append(_error(endpoint, err))
            continue
        tally["seconds"].append(time.perf_counter() - start)
        correct = same(answer, references[clip.name, endpoint])
        tally["served"] += correct
        tally["wrong"] += not correct
    return tally


def load_round(url: str, clips: list[Path], users: int, requests: int, references: dict, downloads: Path) -> dict:
    start = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=users)
    try:
        tallies = list(pool.map(lambda i: user(url, i, clips, requests, references, downloads), range(users)))
    except BaseException:  # stopped (Ctrl-C, SIGTERM): the users end after their request in flight, and the app is
        _STOPPING.set()  # stopped now (run's finally), not once every user has made all its requests
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    seconds = sorted(s for t in tallies for s in t["seconds"])
    return {"requests": users * requests, "served": sum(t["served"] for t in tallies),
            "wrong": sum(t["wrong"] for t in tallies), "failed": sum(t["failed"] for t in tallies),
            "errors": [e for t in tallies for e in t["errors"]][:10], "wall_s": time.perf_counter() - start,
            # the upper of the two middle values of an even count: a latency some request had
            "median_latency_s": statistics.median_high(seconds) if seconds else None,
            "max_latency_s": seconds[-1] if seconds else None}


def uploads_left(temp_dir: Path, clips: list[Path]) -> int:
    """Copies of the users' clips still in Gradio's folder: the same bytes (the app's example "plausible.mp4", which
    it keeps while it serves, has a user clip's name)."""
    contents = {clip.read_bytes() for clip in clips}
    return sum(_bytes_of(path) in contents for path in temp_dir.rglob("*.mp4"))


def _bytes_of(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:  # swept since the listing
        return None


def run(users: int, requests: int, rounds: int, file_lifetime: int) -> dict:
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        clips = make_clips(tmp / "clips")
        port, temp_dir, cache, log = free_port(), tmp / "gradio", tmp / "cache", tmp / "app-stderr.log"
        launched = time.perf_counter()
        server = start_server(port, temp_dir, cache, file_lifetime, log)
        start_s = time.perf_counter() - launched
        cached = sorted(str(path.relative_to(cache)) for path in cache.rglob("*")) if cache.is_dir() else []
        url = f"http://127.0.0.1:{port}/"
        tempfile.tempdir = str(tmp)  # gradio_client leaves an empty folder in the temp dir per download: keep them here
        try:
            alone = Client(url, verbose=False, download_files=str(tmp / "alone"))
            references = _references(alone, clips, log)
            # the numbers alone: each answer also names its clip (app._labelled), which would make every one distinct
            distinct = len({json.dumps({key: value for key, value in references[clip.name, "/surprise"].items()
                                        if key not in ("checkpoint", "clip")}) for clip in clips})
            before = memory_mib(server.pid)
            report = {"start_s": start_s, "cache_after_start": cached, "users": users, "requests_per_user": requests,
                      "clips": len(clips), "distinct_answers": distinct, "idle_rss_mib": before["rss_mib"],
                      "rounds": []}
            for _ in range(rounds):
                outcome = load_round(url, clips, users, requests, references, tmp / "downloads")
                if server.poll() is not None:  # killed under the load (the OOM killer): its memory is gone too
                    raise AppFailed(f"the app exited with status {server.returncode} during the load; its log "
                                    f"ends: {_last_line(log)}")
                outcome.update(memory_mib(server.pid))  # resident now (rss_mib) and the high-water mark (peak_mib)
                report["rounds"].append(outcome)
            start = time.perf_counter()
            try:
                responsive = same(call(alone, "/surprise", clips[0]), references[clips[0].name, "/surprise"])
            except Exception:  # refused or lost after the load: not answered, as the table says
                responsive = False
            report["after_load"] = {"correct": responsive, "seconds": time.perf_counter() - start}
            report["uploads_in_temp_dir"] = uploads_left(temp_dir, clips)
            report["uploads_left_after_lifetime"] = _wait_for_cleanup(temp_dir, clips, file_lifetime)
        finally:
            tempfile.tempdir = None
            killed = stop(server)
        report["stop_status"], report["killed_after_sigterm"] = server.returncode, killed
        report["left_after_stop"] = left_in(temp_dir)
    return report


def _references(client, clips: list[Path], log: Path) -> dict:
    """Every (clip, endpoint) answer to one user alone, what the load's answers must equal; AppFailed when the app
    does not give them (a checkpoint it cannot load): nothing could be compared."""
    try:
        return {(clip.name, endpoint): call(client, endpoint, clip) for clip in clips for endpoint in ENDPOINTS}
    except Exception as err:  # gradio_client's errors: a refused request (AppError), a lost connection
        said = _error("a reference request", err).splitlines()[0]
        raise AppFailed(f"the app did not answer one user alone ({said}); its log ends: {_last_line(log)}") from None


def left_in(temp_dir: Path) -> list[str]:
    """What is left in Gradio's folder, but the empty vibe_edit_history folder Gradio makes when it is imported."""
    return sorted(str(path.relative_to(temp_dir)) for path in temp_dir.iterdir() if path.name != "vibe_edit_history")


def _wait_for_cleanup(temp_dir: Path, clips: list[Path], file_lifetime: int) -> int:
    """Uploads left once their lifetime (and one sweep more) has passed."""
    deadline = time.time() + 2 * file_lifetime + 5
    while time.time() < deadline and uploads_left(temp_dir, clips):
        time.sleep(0.5)
    return uploads_left(temp_dir, clips)


def print_table(report: dict) -> None:
    print(f"app launched and answering in {report['start_s']:.1f} s")
    print(f"{report['users']} users x {report['requests_per_user']} requests, {report['clips']} clips "
          f"({report['distinct_answers']} distinct surprise answers), "
          f"server {report['idle_rss_mib']:.0f} MiB before the load")
    print(f"{'round':<7}{'requests':>9}{'served':>8}{'wrong':>7}{'failed':>8}{'wall s':>8}{'median s':>10}"
          f"{'max s':>8}{'RSS MiB':>8}{'peak MiB':>9}")
    for i, r in enumerate(report["rounds"], 1):
        median, slowest = (f"{r[key]:.2f}" if r[key] is not None else "n/a"  # none answered: no latency, not 0 s
                           for key in ("median_latency_s", "max_latency_s"))
        print(f"{i:<7}{r['requests']:>9}{r['served']:>8}{r['wrong']:>7}{r['failed']:>8}{r['wall_s']:>8.1f}"
              f"{median:>10}{slowest:>8}{r['rss_mib']:>8.0f}{r['peak_mib']:>9.0f}")
    after = report["after_load"]
    print(f"after the load: one request {after['seconds']:.2f} s, correct: {after['correct']}; uploads in Gradio's "
          f"folder {report['uploads_in_temp_dir']}, after their lifetime {report['uploads_left_after_lifetime']}")
    stopped = "did not exit, killed" if report["killed_after_sigterm"] else "exited"
    print(f"stopped with SIGTERM: {stopped}, exit status {report['stop_status']}, {len(report['left_after_stop'])} "
          "files or folders left in Gradio's folder")
    for error in (e for r in report["rounds"] for e in r["errors"]):
        print("  ", error)


def _exit_on_sigterm(signum, frame):
    """A plain `kill` of this script ends it as Ctrl-C does, through the `finally` that stops the app it started and
    the temporary folder's removal: by default SIGTERM ends Python at once and left the app running."""
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--requests", type=int, default=5, help="per user")
    parser.add_argument("--rounds", type=int, default=6, help="the load repeated: memory must level off")
    parser.add_argument("--file-lifetime", type=int, default=150,
                        help="seconds Gradio keeps uploads and outputs here (the app's default is 900); it must "
                        "outlast the slowest request, or an upload goes before its queued request reads it (in "
                        "commit 5a118ce's runs, before the queue was limited to two model calls: with 32 users on 2 "
                        "slow cores the slowest request took 78 s, and with --file-lifetime 20, 3 of 320 requests "
                        "failed: 'file not found'; the slowest request of the run recorded in "
                        "benchmarks/load_test.json took 12.1 s)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "load_test.json"))
    args = parser.parse_args(argv)
    if min(args.users, args.requests, args.rounds, args.file_lifetime) < 1:
        parser.error("--users, --requests, --rounds and --file-lifetime must be at least 1")
    out = _report.check_output(parser, args.json)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        report = run(args.users, args.requests, args.rounds, args.file_lifetime)
    except AppFailed as err:
        sys.exit(f"error: {err}")
    report.update(command=_report.command(__file__, argv), file_lifetime=args.file_lifetime,
                  machine=cpu_model(), cpus=usable_cpus(), **_report.versions("gradio", "torch"))
    print_table(report)
    _report.write(out, report)
    ok = (all(r["served"] == r["requests"] for r in report["rounds"]) and report["after_load"]["correct"]
          and report["uploads_left_after_lifetime"] == 0 and report["stop_status"] == 0
          and not report["left_after_stop"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
