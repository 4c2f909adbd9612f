"""Shared fixtures: tiny configs and models that run in milliseconds on CPU.

HF_HUB_OFFLINE is set before anything imports huggingface_hub (it is read once at import): no test touches the
network, and an unknown repo id fails at once instead of retrying for ~30 s.
"""

import os
import sys
import tempfile

from benchmarks._report import without_app_settings

TEST_SETTINGS = ("JEPA_LENS_SCREENSHOTS", "JEPA_LENS_REQUIRE_BROWSER")  # read by tests, not by the app

os.environ["HF_HUB_OFFLINE"] = "1"
# Hypothesis keeps its examples in ./.hypothesis unless told otherwise (read when first needed, after this): beside the
# virtual environment's packages, as make test has it, or in the temp folder, rather than in the repository
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(
    sys.prefix if sys.prefix != sys.base_prefix else tempfile.gettempdir(), ".hypothesis"))
# The app's settings in the developer's shell (hosted mode, a server name, a file lifetime) would make the app the tests
# import another one than they describe: the tests that want a setting set it themselves. The same settings as the
# benchmarks leave out of the apps they start, but the tests' own.
for name in set(os.environ) - set(without_app_settings()) - set(TEST_SETTINGS):
    del os.environ[name]
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # else each gr.Blocks asks api.gradio.app for its latest version
# make test runs two pytest-xdist workers: each gets its share of the cores (read by torch at import, and by the
# processes tests start with this environment), so two compute-bound tests do not fight over every core; 2 threads
# each made the suite 17 % slower on 2 cores. The cores this process may use: os.cpu_count() counts the machine's,
# and under `taskset` or a container's cpuset gave each worker all of them
if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import signal  # noqa: E402
import socket  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI (.ci/run) draws the same examples every run, so that a rare one cannot fail an unrelated change there; elsewhere
# Hypothesis draws new ones each run, and keeps those that failed
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

from jepa_demo.config import PreprocessConfig, model_config_from_preset  # noqa: E402
from jepa_demo.model import VideoJEPA  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def temporary_files_stay_in_pytest_folder(tmp_path_factory):
    """gradio_client 2.7 leaves an empty folder in the system temp dir for every file it downloads (~300 a run):
    point the temp dir of this process, and of the processes tests start (an app makes <tmp>/gradio at import), into
    pytest's own folder, which pytest prunes."""
    previous, previous_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))
    yield
    tempfile.tempdir = previous
    if previous_env is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = previous_env


@pytest.fixture(autouse=True)
def signal_handlers_stay_pytests():
    """app.main() makes SIGTERM and SIGHUP stop the app as Ctrl-C does: a test that calls it must not leave that
    for the rest of its worker's tests."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if number}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture
def tiny_cfg():
    return model_config_from_preset("tiny")


@pytest.fixture
def tiny_model(tiny_cfg):
    """Seeded apart from evaluate.random_twin's 0: the "random encoder" it is compared with must be another network."""
    torch.manual_seed(2)
    return VideoJEPA(tiny_cfg)


@pytest.fixture
def tiny_preprocess(tiny_cfg):
    return PreprocessConfig(img_size=tiny_cfg.img_size, num_frames=tiny_cfg.num_frames)


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model, tiny_preprocess):
    """A checkpoint folder holding the tiny random model, as training would write it (step 1)."""
    from jepa_demo.checkpoint import save_checkpoint

    save_checkpoint(tiny_model, tmp_path / "tiny", tiny_preprocess, step=1)
    return tmp_path / "tiny"


@pytest.fixture
def tiny_pixel_checkpoint(tmp_path, tiny_preprocess):
    """A tiny random pixel-baseline checkpoint (objective "pixel"), saved like `tiny_checkpoint`."""
    from jepa_demo.checkpoint import save_checkpoint

    torch.manual_seed(1)
    save_checkpoint(VideoJEPA(model_config_from_preset("tiny", objective="pixel")), tmp_path / "tiny-pixel",
                    tiny_preprocess, step=1)
    return tmp_path / "tiny-pixel"


@pytest.fixture
def tiny_inference(tiny_checkpoint):
    """The tiny checkpoint loaded for inference on CPU, as a user would."""
    from jepa_demo.inference import load_model

    return load_model(tiny_checkpoint, device="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (servers; process groups meet in a file instead)."""
    return _free_port()


@pytest.fixture(scope="session")
def app_blocks(tmp_path_factory):
    """The real app serving on a free port, on the shipped checkpoint (which carries its gallery and threshold), with
    its caches in a temporary folder; its gr.Blocks. One per session: the gradio_client and browser tests share it."""
    cache = tmp_path_factory.mktemp("app-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JEPA_LENS_CACHE", str(cache))
        import app

        app.EXPLORERS.clear()  # an Explorer built elsewhere would keep thumbnails in another cache folder
        app.explorer_for("default").warm_up()  # before any request, so request timeouts measure the app itself
        ui = app.build_app()
        app.launch(ui, server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
        yield ui
        ui.close()
        app.EXPLORERS.clear()


@pytest.fixture(scope="session")
def app_server(app_blocks) -> str:
    """The URL of that app."""
    return app_blocks.local_url


# The files that take longest, started first: under make test's two workers a long file that began last would leave
# one worker idle while the other finished it
LONGEST_FILES = ("test_default_checkpoint.py", "test_benchmarks.py", "test_train.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: each file keeps its own order
