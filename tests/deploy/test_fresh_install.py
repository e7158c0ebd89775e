"""Each image's entry command starts from a fresh install of just what its Dockerfile installs.

An image's build stage copies pyproject.toml, uv.lock, scripts/install.sh and the members its
service needs, then runs scripts/install.sh (uv at the locked version; the locked set, --frozen,
non-editable, no dev tools) and starts ``pulmogate <service>`` (ENTRYPOINT + CMD). Here the same:
the files that stage COPYs are copied to an empty folder (the build context as the image sees
it), the same step with that stage's ENV installs into a new virtualenv that sees neither the
project's .venv nor its sources (wheels come from PyPI, or uv's cache, checked against the
lock's hashes), and the entry command read from the Dockerfile is started against the real
Postgres and RabbitMQ: the receiver answers C-ECHO, the api answers /healthz and /readyz, the
bus workers log that they started; then SIGTERM (``docker stop``) must end each process cleanly.
Inference is installed as its CPU target (the GPU one needs CUDA).

All five run by default (about a minute on two busy cores once uv's cache holds the wheels);
name some to run fewer: PULMOGATE_FRESH_INSTALL=api,receiver.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.manifests import (
    ROOT,
    SERVICES,
    dockerfile_instructions,
    install_steps,
    locked_members,
)
from tests.fixtures.infra import PG_ADMIN_DSN, amqp_url, free_port

__all__ = ["amqp_url"]

_CHOSEN = os.environ.get("PULMOGATE_FRESH_INSTALL", "all")
SELECTED = SERVICES if _CHOSEN == "all" else [s for s in SERVICES if s in _CHOSEN.split(",")]
ECHOSCU = "/usr/bin/echoscu"
DOCKERIGNORED = ("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache")


def _packages(options: list[str]) -> list[str]:
    return [options[i + 1] for i, word in enumerate(options[:-1]) if word == "--package"]


@pytest.fixture(scope="module")
def empty_database() -> Iterator[str]:
    """A new Postgres database with no tables, for the migration the migrate container runs."""
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    subprocess.run(["psql", PG_ADMIN_DSN, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    host = PG_ADMIN_DSN.rsplit("/", 1)[0].split("://", 1)[1]
    yield f"postgresql+asyncpg://{host}/{name}"
    subprocess.run(
        ["psql", PG_ADMIN_DSN, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=False
    )


def entry_command(service: str) -> list[str]:
    """ENTRYPOINT + CMD of the service's image (the last stage, i.e. the default target)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for keyword, args in dockerfile_instructions(
        ROOT / "deploy" / "docker" / f"{service}.Dockerfile"
    ):
        if keyword == "FROM":
            entrypoint, cmd = [], []
        elif keyword == "ENTRYPOINT":
            entrypoint = json.loads(args)
        elif keyword == "CMD":
            cmd = json.loads(args)
    assert entrypoint, f"{service}.Dockerfile has no ENTRYPOINT"
    return [*entrypoint, *cmd]


def install_step(service: str) -> dict[str, Any]:
    """The image's install step (for inference, its CPU target's)."""
    steps = install_steps(ROOT / "deploy" / "docker" / f"{service}.Dockerfile")
    return [step for step in steps if "--extra" not in step["options"]][-1]


def fresh_install(service: str, folder: Path) -> Path:
    """A new virtualenv made as the image's build stage makes /opt/pulmogate."""
    step = install_step(service)
    context = folder / "context"
    for path in step["copied"]:
        source, target = ROOT / path, context / path
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(*DOCKERIGNORED))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    venv = folder / "venv"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PULMOGATE_", "UV_", "VIRTUAL"))
    }
    env.update({k: v for k, v in step["env"].items() if k != "UV_NO_CACHE"})  # the shared cache
    env["UV_TOOL_VENV"] = str(folder / "uv")
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    result = subprocess.run(
        ["bash", "scripts/install.sh", str(venv), *step["options"]],
        cwd=context,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return venv


def clean_env(venv: Path, **settings: str) -> dict[str, str]:
    """The process environment of a container: no project paths, only PULMOGATE_* settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULMOGATE_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"PULMOGATE_{k.upper()}": v for k, v in settings.items()})
    return env


class Running:
    """A started entry command whose output is collected line by line."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def events(self) -> list[dict[str, object]]:
        parsed = []
        for line in list(self.lines):
            try:
                parsed.append(json.loads(line))
            except ValueError:
                continue
        return parsed

    def wait_for(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "exited early:\n" + "\n".join(self.lines[-40:])
            if ready():
                return
            time.sleep(0.5)
        pytest.fail("not ready in time:\n" + "\n".join(self.lines[-40:]))

    def stop(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def _echo(port: int) -> bool:
    result = subprocess.run(
        [ECHOSCU, "-aec", "PULMOGATE", "127.0.0.1", str(port)],
        capture_output=True,
        timeout=20,
        check=False,
    )
    # Under the default source policy an unnamed AE is rejected: also an answer.
    return result.returncode == 0 or b"Association Rejected" in result.stderr + result.stdout


def _ready_http(port: int) -> bool:
    try:
        return all(
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=3).status_code == 200
            for path in ("/healthz", "/readyz")
        )
    except httpx.HTTPError:
        return False


@pytest.mark.e2e
@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", SELECTED)
def test_image_entry_command_starts_from_a_fresh_install(
    service: str, empty_database: str, amqp_url: str, tmp_path: Path
) -> None:
    venv = fresh_install(service, tmp_path)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pulmogate_dists = sorted(
        p["name"] for p in json.loads(installed) if p["name"].startswith("pulmogate")
    )
    wanted = locked_members(_packages(install_step(service)["options"]))
    assert pulmogate_dists == sorted(wanted)
    assert f"pulmogate-{service}" in wanted

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    dicom_port, api_port = free_port(), free_port()
    env = clean_env(
        venv,
        data_dir=str(data_dir),
        database_url=empty_database,
        broker_url=amqp_url,
        dicom_host="127.0.0.1",
        dicom_port=str(dicom_port),
        api_host="127.0.0.1",
        api_port=str(api_port),
        execution_provider="cpu",
        log_format="json",
    )
    # What the migrate container (compose) / Job (k8s) runs before any service starts.
    migrate = subprocess.run(
        ["pulmogate", "db", "upgrade"],
        env=env,
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    # The operator's commands come with pulmogate-tools: in the api image only.
    operator = subprocess.run(
        ["pulmogate", "user", "--help"],
        env=env,
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "pulmogate-tools" in wanted:
        assert operator.returncode == 0 and "create" in operator.stdout, operator.stderr
    else:
        assert operator.returncode == 2 and "comes with pulmogate-tools" in operator.stderr

    command = entry_command(service)
    assert command == ["pulmogate", service]
    running = Running(command, env, cwd=data_dir)
    try:
        running.wait_for(
            lambda: any(
                e.get("event") == "service started" and e.get("service") == service
                for e in running.events()
            ),
            timeout=120,
        )
        if service == "receiver":
            running.wait_for(lambda: _echo(dicom_port), timeout=30)
        if service == "api":
            running.wait_for(lambda: _ready_http(api_port), timeout=30)
    finally:
        code = running.stop()
    assert code == 0, "\n".join(running.lines[-40:])
    assert "Traceback" not in "\n".join(running.lines), shlex.join(command)
