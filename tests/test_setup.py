"""The install files agree: `make install` installs requirements*.txt at the versions constraints.txt records."""
from pathlib import Path

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
        assert name in pins, f"{req.name} is not in constraints.txt: run make constraints after make test"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name} {pins[name]}, which {req} does not allow"


def test_constraints_leave_torch_to_requirements():
    assert "torch" not in _constraints()
