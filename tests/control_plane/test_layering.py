"""Imports run one way between the control plane's packages: a package may not import the
ones that build on it (execution is used by scheduling and triggers, never the reverse; no
domain package knows the gRPC layer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "control_plane"
FORBIDDEN = {
    "execution": {"scheduling", "triggers", "notifications", "api", "app"},
    "notifications": {"execution", "scheduling", "api", "app"},
    "pipelines": {"execution", "scheduling", "triggers", "api", "app"},
    "validation": {"execution", "triggers", "api", "app", "store"},
    "store": {"execution", "scheduling", "triggers", "api", "app", "pipelines"},
    "scheduling": {"triggers", "api", "app"},
    "access": {"execution", "scheduling", "triggers", "app"},
    "lineage": {"execution", "scheduling", "triggers", "api", "app"},
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_does_not_import_what_builds_on_it(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported(path):
            parts = module.split(".")
            if parts[0] == "control_plane" and len(parts) > 1 and parts[1] in FORBIDDEN[package]:
                wrong.append(f"{path.relative_to(ROOT.parent)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_left_loose_in_the_control_plane() -> None:
    loose = {p.name for p in ROOT.glob("*.py")}
    allowed = {"__init__.py", "__main__.py", "app.py", "config.py", "errors.py"}
    allowed |= {"pagination.py", "quoting.py", "statuses.py"}
    assert loose <= allowed, sorted(loose - allowed)
