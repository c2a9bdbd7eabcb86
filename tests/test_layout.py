"""The layout rules of docs/architecture.md, checked on the source.

- No import circles between paperlab's modules (imports at module level; ``TYPE_CHECKING``
  blocks and imports inside functions do not run at import time and are left out).
- A package's ``__init__.py`` is its face: a docstring and re-exports, no logic.
- Experiments and benchmarks are grouped like the library: ``experiments/<family>/<note>.py``
  and ``benchmarks/<family>/<technique>.py``, where ``<family>`` is one of the library's
  packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

from paperlab import registry

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "paperlab"
FAMILIES = {p.name for p in PKG.iterdir() if (p / "__init__.py").exists()} - {
    "experiments", "benchmarks", "report", "recipes", "hub", "data"}
# families whose library package lands with a later issue
FAMILIES |= {"face", "detection", "generative", "video", "evaluation"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == (
        "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """paperlab modules imported when this module runs (not in functions or TYPE_CHECKING)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if not _is_type_checking(node):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("paperlab"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name if is_package else name.rsplit(".", 1)[0]
                    for _ in range(node.level - 1):
                        base = base.rsplit(".", 1)[0]
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                if module.startswith("paperlab"):
                    found.add(module)
                    for a in node.names:  # "from paperlab.x import submodule"
                        found.add(f"{module}.{a.name}")

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        deps = _top_level_imports(tree, name, path.name == "__init__.py")
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                dfs(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_package_inits_hold_no_logic():
    bad = []
    for path in PKG.rglob("__init__.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} defines {node.name}")
        assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} has no docstring"
    assert not bad, "a package's __init__ is its face (re-exports only):\n" + "\n".join(bad)


def _grouped(kind: str, folder: str) -> list[str]:
    bad = []
    for entry in registry.entries(kind):
        module = entry.obj.__module__.split(".")
        if len(module) != 4 or module[:2] != ["paperlab", folder] or module[2] not in FAMILIES:
            bad.append(f"{entry.name}: {entry.obj.__module__}")
    return bad


def test_experiments_are_grouped_by_family():
    bad = _grouped("experiment", "experiments")
    assert not bad, "experiments outside experiments/<family>/:\n" + "\n".join(bad)


def test_benchmarks_are_grouped_by_family():
    bad = _grouped("benchmark", "benchmarks")
    assert not bad, "benchmarks outside benchmarks/<family>/:\n" + "\n".join(bad)
