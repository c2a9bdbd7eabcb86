"""The main job runs on a core install: every third-party import of ``paperlab/`` is a core
dependency, or an optional one behind a guard that names the extra to install.

A core install is README command 1 (``pip install -e .``). Whatever ``paperlab tour``, an
experiment or a shipped recipe imports must therefore be in ``[project] dependencies``. An
optional feature (a benchmark against HF transformers, say) imports its package either with
``paperlab.errors.require(module, extra=..., purpose=...)`` or inside ``try: ... except
ImportError:`` whose handler raises a message naming ``paperlab[EXTRA]``; then a missing
package gives one line, never a traceback. This test reads the source (not ``tests/``), so
it also sees imports inside functions that no test happens to call.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
import tomllib

from paperlab.errors import MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
STDLIB = set(sys.stdlib_module_names) | {"__future__", "paperlab"}


def _dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _import_names(requirements: list[str]) -> set[str]:
    """The top-level module names that the distributions in ``requirements`` provide."""
    wanted = {_dist_name(r) for r in requirements}
    names = set()
    for module, dists in md.packages_distributions().items():
        if any(d.lower().replace("_", "-") in wanted for d in dists):
            names.add(module)
    missing = wanted - {d.lower().replace("_", "-") for ds in md.packages_distributions().values()
                        for d in ds}
    assert not missing, f"core dependencies not installed here: {sorted(missing)}"
    return names


CORE = _import_names(PYPROJECT["dependencies"])
EXTRAS = {name: {_dist_name(r) for r in reqs}
          for name, reqs in PYPROJECT["optional-dependencies"].items()}


def _guarded(tree: ast.AST, source: str) -> set[int]:
    """ids of nodes inside a ``try`` whose ImportError handler names ``paperlab[...]``."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        for handler in node.handlers:
            caught = handler.type
            names = [caught] if not isinstance(caught, ast.Tuple) else list(caught.elts)
            if not any(getattr(n, "id", None) in ("ImportError", "ModuleNotFoundError")
                       for n in names):
                continue
            text = "".join(ast.get_source_segment(source, s) or "" for s in handler.body)
            if "paperlab[" in text:
                for stmt in node.body:
                    ids.update(id(sub) for sub in ast.walk(stmt))
    return ids


def _third_party_imports() -> list[tuple[str, int, str, bool]]:
    rows = []
    for path in sorted((ROOT / "paperlab").rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        guarded = _guarded(tree, source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in STDLIB:
                    rel = str(path.relative_to(ROOT))
                    rows.append((rel, node.lineno, top, id(node) in guarded))
    return rows


def test_every_unguarded_import_is_a_core_dependency():
    bad = [f"{f}:{line} imports {top}" for f, line, top, guarded in _third_party_imports()
           if top not in CORE and not guarded]
    assert not bad, (
        "imports outside the core dependencies, not behind a guard naming the extra "
        "(a core install would crash there):\n  " + "\n  ".join(bad)
    )


def test_the_main_job_needs_no_extra():
    """The modules that experiments, recipes and the CLI reach import only core packages."""
    used = {top for f, _, top, guarded in _third_party_imports() if not guarded}
    assert used <= CORE
    # the tokenisers and image I/O are part of the main job (bert-mlm, clip-*, the recipes)
    assert {"tokenizers", "PIL"} <= CORE


def _require_calls() -> list[tuple[str, int, str, str]]:
    calls = []
    for path in sorted((ROOT / "paperlab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                extra = next((k.value.value for k in node.keywords if k.arg == "extra"), None)
                calls.append((str(path.relative_to(ROOT)), node.lineno, node.args[0].value, extra))
    return calls


def test_require_names_an_extra_that_provides_the_module():
    calls = _require_calls()
    assert calls, "expected the HF benchmarks to import transformers through require()"
    provided = md.packages_distributions()
    for f, line, module, extra in calls:
        assert extra in EXTRAS, f"{f}:{line}: extra {extra!r} is not in pyproject's extras"
        dists = {d.lower().replace("_", "-") for d in provided.get(module.split(".")[0], [])}
        assert dists & EXTRAS[extra], f"{f}:{line}: paperlab[{extra}] does not install {module}"


def test_require_gives_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes the import fail
    with pytest.raises(MissingExtraError) as info:
        require("transformers", extra="hf", purpose="benchmark 'bert'")
    message = str(info.value)
    assert "\n" not in message
    assert "benchmark 'bert' needs transformers" in message
    assert "pip install 'paperlab[hf]'" in message
    assert isinstance(info.value, ImportError)
    assert require("json", extra="hf", purpose="x").dumps([1]) == "[1]"


def test_a_missing_extra_is_one_line_in_the_cli(monkeypatch, capsys, tmp_path):
    from paperlab.cli import main

    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "bert", "--quick"])
    err = capsys.readouterr()
    text = err.out + err.err
    assert "pip install 'paperlab[hf]'" in text
    assert "Traceback" not in text
    assert code != 0
