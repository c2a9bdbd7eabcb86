"""A pytest plugin that records parity results: which note, which reference, how close.

Parity tests assert that ours equals an independent reference; this plugin keeps what they
measured. With ``pytest --parity-report [DIR]`` (or ``PAPERLAB_PARITY_REPORT=DIR``) every test
that names a note, by ``@pytest.mark.note("B1")`` (a module's ``pytestmark``) or by
``assert_parity(..., note="B1")``, becomes one entry of ``DIR/<stamp>.json`` (default
``runs/parity/``):

    test, file, notes, references (the packages the test imported through conftest's
    ``require``, with their versions, plus any named by the marker's ``reference=`` or by
    ``assert_parity(reference=...)``), comparisons (how many, their dtypes), worst (the
    comparison that used most of its tolerance: max abs and rel error, atol, rtol, used =
    max err / (atol + rtol |ref|)), outcome (passed / failed / skipped), error (the
    assertion message of a failed test)

A failing assertion is recorded as failed, with its error, never dropped. ``--notes B1,C3``
runs only the tests of those notes (``paperlab tour`` uses it for the notes it covers).
Without the option nothing is recorded and the run is as fast as ever.

``pyproject.toml`` loads it for every run (``pythonpath = ["tests"]``, ``-p parity_report``),
so ``pytest --parity-report`` works from the repository root with no path given.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import parity
import pytest

ENV = "PAPERLAB_PARITY_REPORT"
DEFAULT_DIR = "runs/parity"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("paperlab")
    group.addoption("--parity-report", nargs="?", const=DEFAULT_DIR, default=None,
                    metavar="DIR", help=f"record parity results to DIR/<stamp>.json "
                    f"(default {DEFAULT_DIR}; also ${ENV})")
    group.addoption("--notes", default=None, metavar="IDS",
                    help="run only the tests marked with these notes, e.g. B1,C3")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "note(*ids, reference=None): the notes a test gives parity evidence for")
    folder = config.getoption("--parity-report") or os.environ.get(ENV) or None
    config.stash[_DIR] = folder
    config.stash[_ENTRIES] = []


_DIR = pytest.StashKey[Any]()
_ENTRIES = pytest.StashKey[list]()


def marked_notes(item: pytest.Item) -> tuple[list[str], list[str]]:
    """(note ids, references) named by the item's ``note`` markers."""
    notes: list[str] = []
    refs: list[str] = []
    for mark in item.iter_markers("note"):
        notes.extend(str(a) for a in mark.args)
        if mark.kwargs.get("reference"):
            refs.append(str(mark.kwargs["reference"]))
    return notes, refs


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("--notes")
    if not wanted:
        return
    ids = {w.strip() for w in wanted.split(",") if w.strip()}
    keep, drop = [], []
    for item in items:
        (keep if ids & set(marked_notes(item)[0]) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.config.stash[_DIR]:
        parity.start_record()


def _version(module: str) -> str:
    """``module==version`` from the installed distribution that provides ``module``."""
    top = module.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return module


def _error(call: pytest.CallInfo) -> str:
    if call.excinfo is None:
        return ""
    text = call.excinfo.exconly().strip()
    return text if len(text) <= 600 else text[:599] + "…"


def _entry(item: pytest.Item, record: dict[str, list[Any]], outcome: str, error: str):
    notes, refs = marked_notes(item)
    notes = list(dict.fromkeys(notes + record["notes"]))
    if not notes:
        return None
    comparisons = record["comparisons"]
    used = [c for c in comparisons if c["used"] is not None]
    worst = max(used, key=lambda c: c["used"]) if used else (
        comparisons[-1] if comparisons else None)
    failed = [c for c in comparisons if not c["passed"]]
    return {
        "test": item.nodeid,
        "file": item.location[0],
        "notes": notes,
        "references": list(dict.fromkeys(refs + record["references"])),
        "comparisons": len(comparisons),
        "dtypes": sorted({c["dtype"] for c in comparisons}),
        "worst": failed[0] if failed else worst,
        "outcome": outcome,
        "error": error,
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if not item.config.stash[_DIR] or parity.CURRENT is None:
        return
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and not report.passed):
        record = parity.take_record()
        record["references"] = [
            r if "==" in r or " " in r else _version(r) for r in record["references"]]
        entry = _entry(item, record, report.outcome, _error(call) if report.failed else "")
        if entry is not None:
            item.config.stash[_ENTRIES].append(entry)


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = session.config.stash.get(_DIR, None)
    entries = session.config.stash.get(_ENTRIES, [])
    if not folder or not entries:
        return
    now = dt.datetime.now(dt.timezone.utc)
    path = Path(folder) / f"parity-{now.strftime('%Y%m%d-%H%M%S-%f')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    import torch

    payload = {
        "started": now.isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "entries": entries,
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"parity report: {path} ({len(entries)} tests)")
