"""Services talk only through pulmogate.common: no service module imports another service."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("receiver", "router", "inference", "sender", "api")


def imported_modules(path: Path) -> list[str]:
    """Every absolute module name a source file imports."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def foreign_imports(service: str) -> list[str]:
    """The imports of one service's sources that reach another service or the tools."""
    forbidden = [f"pulmogate.{other}" for other in SERVICES if other != service]
    forbidden.append("pulmogate.tools")
    found = []
    for path in sorted((ROOT / "services" / service / "src").rglob("*.py")):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    return found


def test_no_service_imports_another_service_or_the_tools() -> None:
    assert {s: foreign_imports(s) for s in SERVICES} == {s: [] for s in SERVICES}


def test_common_imports_no_service() -> None:
    found = []
    for path in sorted((ROOT / "libs" / "common" / "src").rglob("*.py")):
        for name in imported_modules(path):
            if any(name.startswith(f"pulmogate.{s}") for s in (*SERVICES, "tools")):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    assert found == []


def test_the_scan_sees_a_cross_service_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("from pulmogate.router.jobs import decide\nimport pulmogate.common.events\n")
    assert imported_modules(source) == ["pulmogate.router.jobs", "pulmogate.common.events"]
