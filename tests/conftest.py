"""Shared test set-up.

``require(module)`` imports an optional reference package. Missing, it fails the test in CI
(``CI`` set) and skips it elsewhere with the reason printed, as DESIGN.md asks.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `from parity import ...`

import parity  # noqa: E402  (the parity-report plugin, -p parity_report in pyproject.toml)

IN_CI = bool(os.environ.get("CI"))


def require(module: str, why: str = "parity reference") -> ModuleType:
    """Import ``module`` or fail (in CI) / skip (elsewhere) the calling test."""
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        msg = f"{why} {module!r} is not installed ({exc}); pip install -e '.[test]'"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    parity.declare(reference=module)  # named in the parity report, when one is written
    return found


@pytest.fixture(autouse=True)
def _torch_threads():
    """One intra-op thread: tiny tensor ops run faster and steadier than with two on 2 cores."""
    try:
        import torch
    except ImportError:  # pure-Python tests do not need torch
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
