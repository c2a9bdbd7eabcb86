"""Every registered experiment runs at smoke size and returns well-formed claims and figures.

A claim's pass/fail is the experiment's finding, not the test's: this test checks that the
experiment runs, that each claim is a real comparison of a measured value with a threshold,
and that figures exist. The claims themselves are what ``paperlab tour`` reports.
"""

from __future__ import annotations

import json
import math

import pytest

from paperlab import registry
from paperlab.experiments.runner import run_experiment

NAMES = registry.names("experiment")


@pytest.mark.parametrize("name", NAMES)
def test_experiment_smoke(name, tmp_path):
    rec = run_experiment(name, size="smoke", seed=0, runs=tmp_path, catch=False)
    data = json.loads((rec.folder / "result.json").read_text())
    assert data["summary"]
    assert data["claims"], f"{name} makes no claim"
    for c in data["claims"]:
        assert c["statement"] and c["op"] in ("<", "<=", ">", ">=", "==")
        assert isinstance(c["passed"], bool)
        if isinstance(c["value"], float):
            assert not math.isnan(c["value"]), f"{name}: NaN measured for {c['statement']!r}"
    assert data["figures"], f"{name} draws no figure"
    for f in data["figures"]:
        assert (rec.folder / f).stat().st_size > 1000
    assert data["source"].startswith("paperlab/experiments/")
