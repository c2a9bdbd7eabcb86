"""The algorithms package: layering (ground level), docstrings, registration."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import paperlab.algorithms

PACKAGE = Path(paperlab.algorithms.__file__).parent
MODULES = sorted(p for p in PACKAGE.glob("*.py"))
ALLOWED = {"paperlab.errors", "paperlab.registry", "paperlab.algorithms"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_ground_level_paperlab_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] == "paperlab":
                assert any(name == a or name.startswith(a + ".") for a in ALLOWED), (
                    f"{path.name} imports {name}; algorithms/ may import only {sorted(ALLOWED)}"
                )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_docstring_and_registered_functions(path):
    module = importlib.import_module(f"paperlab.algorithms.{path.stem}")
    assert module.__doc__ and len(module.__doc__) > 200, f"{path.name} lacks its note's idea"
    from paperlab import registry

    table = registry._TABLE["algorithm"]  # read directly: no load_all of unrelated modules
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if callable(obj) and not isinstance(obj, type):
            assert any(e.obj is obj for e in table.values()), f"{name} is not registered"
            assert any(e.obj is obj and e.meta["note"].startswith("J") for e in table.values())
