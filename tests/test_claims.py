"""``Claim``: a measured value against a threshold, with its control and its seeds."""

from __future__ import annotations

import math

import pytest

from paperlab.errors import ArgumentError
from paperlab.experiments.base import Claim, Context


def test_check_records_the_control():
    c = Claim.check("error below the mean image's", 0.3, "<=", 0.8, control=1.0)
    assert c.passed and c.control == 1.0 and c.per_seed is None
    assert c.to_dict()["control"] == 1.0 and "per_seed" not in c.to_dict()
    assert "control" not in Claim.check("x", 1, ">", 0).to_dict()


def test_over_seeds_every_seed_must_hold_and_the_worst_is_reported():
    c = Claim.over_seeds("accuracy", [0.95, 0.91, 0.97], ">=", 0.93, control=0.1)
    assert not c.passed and c.value == 0.91 and c.per_seed == (0.95, 0.91, 0.97)
    c = Claim.over_seeds("accuracy", [0.95, 0.94, 0.97], ">=", 0.93)
    assert c.passed and c.value == 0.94
    c = Claim.over_seeds("error", [0.1, 0.3, 0.2], "<", 0.25)
    assert not c.passed and c.value == 0.3
    d = Claim.over_seeds("gap", [1.0, 2.0, 3.0], ">", 0.5, control=[0.0, 0.1, 0.2]).to_dict()
    assert d["mean"] == 2.0 and d["sd"] == pytest.approx(1.0)
    assert d["per_seed"] == [1.0, 2.0, 3.0] and d["control"] == [0.0, 0.1, 0.2]


def test_over_seeds_nan_never_holds():
    c = Claim.over_seeds("accuracy", [0.99, float("nan"), 0.98], ">", 0.5)
    assert not c.passed and math.isnan(c.value)
    assert not Claim.check("x", float("nan"), "<", 1.0).passed


def test_over_seeds_refuses_bad_arguments():
    with pytest.raises(ArgumentError, match="op"):
        Claim.over_seeds("x", [1.0], "==", 1.0)
    with pytest.raises(ArgumentError, match="at least one"):
        Claim.over_seeds("x", [], ">", 1.0)


def test_context_seeds_follow_the_context_seed():
    assert Context(seed=0).seeds() == [0, 1, 2]
    assert Context(seed=1).seeds(3) == [1, 2, 3]
