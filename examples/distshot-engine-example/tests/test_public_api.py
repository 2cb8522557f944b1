"""The package uses distshot's public plug-in API only: ``distshot.enginekit``."""

from __future__ import annotations

import ast
from pathlib import Path

import distshot_engine_cdp

PACKAGE = Path(distshot_engine_cdp.__file__).parent


def _distshot_imports(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in names if name.split(".")[0] == "distshot"]


def test_only_enginekit_is_imported_from_distshot() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert modules
    for module in modules:
        for name in _distshot_imports(module.read_text()):
            assert name == "distshot.enginekit" or name.startswith("distshot.enginekit."), (
                f"{module.name} imports {name}: a plug-in may use distshot.enginekit only"
            )
