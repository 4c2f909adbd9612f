"""The install files agree: `make install` installs requirements*.txt at the versions constraints.txt records."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _requirements(name: str) -> list[Requirement]:
    lines = (ROOT / name).read_text().splitlines()
    specs = [line.split("#")[0].strip() for line in lines]
    return [Requirement(spec) for spec in specs if spec and not spec.startswith("-r")]


def _constraints() -> dict[str, str]:
    pins = [line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


def test_every_requirement_is_pinned_to_a_version_it_allows():
    pins = _constraints()
    for req in _requirements("requirements.txt") + _requirements("requirements-test.txt"):
        if req.name == "torch":  # pinned in requirements.txt itself; the +cpu build installed here is not on PyPI
            assert str(req.specifier) == "==2.13.0"
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in constraints.txt: run make install-test, then make constraints"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name} {pins[name]}, which {req} does not allow"


def test_constraints_leave_torch_to_requirements():
    assert "torch" not in _constraints()


def test_bare_pytest_finds_the_package_from_any_folder(tmp_path):
    """BUG: the README's `pytest ...` commands (the console script, whose sys.path starts at .venv/bin) stopped at
    conftest's 'No module named jepa_demo'; only `python -m pytest` from the root worked."""
    command = [Path(sys.executable).with_name("pytest"), "--collect-only", "-q", "-p", "no:cacheprovider",
               ROOT / "tests" / "test_masks.py"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


SHELL_SETTINGS = {"JEPA_LENS_HOSTED": "1", "SPACE_ID": "user/space", "GRADIO_SERVER_NAME": "0.0.0.0",
                  "JEPA_LENS_SETTING_ADDED_LATER": "1"}  # the last, one the app may read one day: cleared too


def test_no_app_setting_of_the_shell_reaches_the_tests():
    """Run by the test below with SHELL_SETTINGS exported (no test sets them for good: here they pass anyway)."""
    assert not set(SHELL_SETTINGS) & set(os.environ)


def test_app_settings_exported_in_the_shell_are_cleared_for_the_tests(tmp_path):
    """BUG: `export JEPA_LENS_HOSTED=1` (trying hosted mode) and then `make test` tested the hosted app, failing
    tests of the local one."""
    test = f"{ROOT / 'tests' / 'test_setup.py'}::test_no_app_setting_of_the_shell_reaches_the_tests"
    env = {**os.environ, **SHELL_SETTINGS}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_make_leaves_a_virtual_environment_it_did_not_make_alone(tmp_path):
    """BUG: any .venv without make's install marker was taken for a failed install and removed without a word: one
    that uv, an IDE or `python -m venv .venv` made, with whatever was installed in it."""
    if shutil.which("make") is None:  # a bare pytest on a machine without make (`make test` has it)
        pytest.skip("no make on this machine")
    own = tmp_path / "venv"
    (own / "bin").mkdir(parents=True)
    (own / "bin" / "tool").write_text("installed by hand\n")
    # a Python that passes make's checks (`-c ...`) and makes nothing: a regression cannot start an install here
    python = tmp_path / "python3"
    python.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 0\necho "asked to $*"; exit 3\n')
    python.chmod(0o755)
    done = subprocess.run(["make", "-C", str(ROOT), f"VENV={own}", f"PYTHON={python}", "install"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "asked to" not in done.stdout
    assert f"{own} is not one make made" in done.stdout
    assert (own / "bin" / "tool").read_text() == "installed by hand\n"


def test_make_takes_a_python_given_to_it_not_one_exported_for_other_tools(tmp_path):
    """BUG: `PYTHON ?=` gave way to a PYTHON exported for other tools (node-gyp set-ups): make then said that Python
    was too old, though python3.11 was installed. `make PYTHON=...` still picks one."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    planned = [subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", *given, "install"],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **exported}).stdout
               for given, exported in (([], {"PYTHON": "/elsewhere/python9"}), (["PYTHON=/given/python8"], {}))]
    assert "-m venv" in planned[0] and "/elsewhere/python9" not in planned[0]  # what make would run, run by none
    assert "/given/python8 -m venv" in planned[1]


def test_make_reruns_only_the_step_that_failed_after_a_finished_package_install(tmp_path):
    """BUG: the install marker came after the gallery step: when that step failed (a cache folder it cannot write),
    the next make removed the whole .venv and downloaded everything again, at every retry."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls"
    fake = f'#!/bin/sh\n[ "$1" = -c ] && exit 0\necho "$*" >> {calls}\nexit 0\n'  # records what it is asked to run
    for python in (venv / "bin" / "python", tmp_path / "python3"):
        python.write_text(fake)
        python.chmod(0o755)
    for marker in (".made-by-make", ".packages"):  # the packages went in; the gallery step after them failed
        (venv / marker).touch()
    done = subprocess.run(["make", "-C", str(ROOT), f"VENV={venv}", f"PYTHON={tmp_path / 'python3'}", "install"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls.read_text().splitlines() == ["-m jepa_demo.gallery --checkpoint checkpoints/default"]
    assert (venv / "bin" / "python").exists() and (venv / ".installed").exists()


@pytest.mark.parametrize("marker", [".packages", ".installed"])  # .installed alone: made before .packages existed
def test_make_says_an_installed_venv_whose_python_is_gone_no_longer_works(tmp_path, marker):
    """BUG: a .venv installed before .packages existed was installed over, a dangling bin/python kept by venv: pip
    failed with a bare 'No such file or directory' at every retry, instead of saying what to do."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(tmp_path / "python3.11-uninstalled")
    (venv / marker).touch()
    (venv / ".made-by-make").touch()
    # without .packages, make first checks the Python it would make a venv with: one that passes (`-c ...`), as this
    # machine's own may not (3.10, or one without its venv module, would fail there with another message)
    python = tmp_path / "python3"
    python.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 0\necho "asked to $*"; exit 3\n')
    python.chmod(0o755)
    done = subprocess.run(["make", "-C", str(ROOT), f"VENV={venv}", f"PYTHON={python}", "install"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and f"{venv} no longer works (its Python is gone" in done.stdout, done.stdout
