"""uv.lock: current with every pyproject.toml, and bounded where the code leans on internals."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy.manifests import ROOT

UV = str(Path(sys.executable).with_name("uv"))

# Where the code uses a library's private names, the member caps that library (a release may
# change them without notice); the locked version must sit inside the cap.
LEANS_ON_INTERNALS = {
    ("libs/common", "pynetdicom"): "dicom/scu.py replaces Association._serve_request",
    ("services/receiver", "pynetdicom"): "server.py and bounded_dul.py override DUL internals",
    ("services/inference", "highdicom"): "seg.py overrides _check_and_cast_pixel_array",
    ("services/api", "uvicorn"): "service.py overrides uvicorn.Server.capture_signals",
}


def _requirements(member: str) -> dict[str, Requirement]:
    with (ROOT / member / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    return {Requirement(r).name: Requirement(r) for r in project["dependencies"]}


def _locked_version(name: str) -> str:
    with (ROOT / "uv.lock").open("rb") as fh:
        packages = tomllib.load(fh)["package"]
    return str(next(p["version"] for p in packages if p["name"] == name))


def test_uv_lock_matches_every_pyproject() -> None:
    check = subprocess.run(
        [UV, "lock", "--check", "--offline", "--project", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, f"uv.lock is stale: run `.venv/bin/uv lock`\n{check.stderr}"


@pytest.mark.parametrize(("member", "library"), list(LEANS_ON_INTERNALS), ids=str)
def test_a_library_whose_internals_the_code_uses_is_capped(member: str, library: str) -> None:
    requirement = _requirements(member)[library]
    caps = [s for s in requirement.specifier if s.operator in {"<", "<=", "==", "~="}]
    assert caps, f"{member}: {library} needs an upper bound ({LEANS_ON_INTERNALS[member, library]})"
    assert requirement.specifier.contains(_locked_version(library))


def test_every_member_is_in_the_workspace_and_the_lock() -> None:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        members = tomllib.load(fh)["tool"]["uv"]["workspace"]["members"]
    on_disk = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("*/*/pyproject.toml"))
    assert sorted(members) == on_disk
    with (ROOT / "uv.lock").open("rb") as fh:
        locked = set(tomllib.load(fh)["manifest"]["members"])
    for member in members:
        with (ROOT / member / "pyproject.toml").open("rb") as fh:
            assert tomllib.load(fh)["project"]["name"] in locked, member
