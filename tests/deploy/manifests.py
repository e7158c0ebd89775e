"""Loading deploy/ files for the deployment tests: compose YAML, kustomize builds, Dockerfiles."""

import copy
import functools
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
SERVICES = ["receiver", "router", "inference", "sender", "api"]
OVERLAYS = ["cpu", "gpu"]


class Reset(list[Any]):
    """A compose ``!reset`` value: the override removes what the base file set."""


class ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus compose's merge tags ``!reset`` and ``!override``."""


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!reset", _reset)
ComposeLoader.add_constructor("!override", _override)


def load_compose(name: str) -> dict[str, Any]:
    """One compose file as compose reads it (YAML anchors and ``<<`` merge keys resolved)."""
    with (DEPLOY / name).open() as fh:
        return yaml.load(fh, Loader=ComposeLoader)


def merge_compose(base: Any, override: Any) -> Any:
    """The compose-spec merge, as far as PulmoGate's override file needs it.

    Mappings merge key by key, a ``!reset`` value removes the key, and any other value of the
    override replaces the base's (compose appends some sequences, e.g. ``ports``; the CPU
    override sets none of those).
    """
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge_compose(merged[key], value)
            else:
                merged[key] = value
        return merged
    return override


def kustomize_command() -> list[str] | None:
    """The real kustomize: a ``kustomize`` binary, else ``kubectl kustomize`` (kustomize inside)."""
    if path := shutil.which("kustomize"):
        return [path, "build"]
    if path := shutil.which("kubectl"):
        return [path, "kustomize"]
    return None


def kustomize_build(overlay: str) -> list[dict[str, Any]]:
    """The manifests ``kubectl apply -k deploy/k8s/overlays/<overlay>`` would apply (a copy)."""
    return copy.deepcopy(_kustomize_build(overlay))


@functools.cache
def _kustomize_build(overlay: str) -> list[dict[str, Any]]:
    command = kustomize_command()
    assert command is not None
    result = subprocess.run(
        [*command, str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def install_steps(dockerfile: Path) -> list[dict[str, Any]]:
    """Each build stage's ``scripts/install.sh`` run: its stage, ENV, COPY sources and arguments."""
    steps: list[dict[str, Any]] = []
    stage: dict[str, Any] = {}
    for keyword, args in dockerfile_instructions(dockerfile):
        if keyword == "FROM":
            stage = {"stage": args.split()[-1], "env": {}, "copied": []}
        elif keyword == "ENV":
            stage["env"].update(dict(word.split("=", 1) for word in shlex.split(args)))
        elif keyword == "COPY" and not args.startswith("--from"):
            stage["copied"] += args.split()[:-1]
        elif keyword == "RUN" and "scripts/install.sh" in args:
            command = shlex.split(args.split("&&")[0])
            assert command[:2] == ["bash", "scripts/install.sh"], command
            steps.append({**stage, "venv": command[2], "options": command[3:]})
    return steps


def _lock() -> dict[str, Any]:
    with (ROOT / "uv.lock").open("rb") as fh:
        return tomllib.load(fh)


def _locked(packages: list[str], extras: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The uv.lock entries ``packages`` install (with their ``extras``), dependencies included."""
    by_name = {p["name"]: p for p in _lock()["package"]}
    needed: dict[str, dict[str, Any]] = {}
    todo = [(name, extras or []) for name in packages]
    while todo:
        name, wanted = todo.pop()
        if name in needed:
            continue
        package = needed[name] = by_name[name]
        deps = list(package.get("dependencies", []))
        for extra in wanted:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        todo += [(dep["name"], dep.get("extra", [])) for dep in deps]
    return needed


def locked_closure(packages: list[str], extras: list[str] | None = None) -> set[str]:
    """Names of every distribution uv.lock installs for ``packages``."""
    return set(_locked(packages, extras))


def locked_members(packages: list[str]) -> dict[str, str]:
    """Workspace members (name: folder) that ``packages`` need, after uv.lock's dependencies."""
    members = {}
    for name, package in _locked(packages).items():
        source = package["source"]
        if "editable" in source or "virtual" in source:
            members[name] = source.get("editable", source.get("virtual"))
    return members
