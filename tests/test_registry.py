"""The export registry (note J1): decorator semantics, partial shorthands, lookup errors."""

from __future__ import annotations

import functools

import pytest

import paperlab
from paperlab import registry
from paperlab.errors import ArgumentError, UnknownNameError

pytestmark = pytest.mark.note("J1")


@pytest.fixture
def scratch(monkeypatch):
    """A registry table of our own so tests do not touch the real entries."""
    table = {kind: {} for kind in registry.KINDS}
    monkeypatch.setattr(registry, "_TABLE", table)
    monkeypatch.setattr(registry, "_loaded", True)
    return table


def test_export_returns_object_unchanged_and_registers(scratch):
    def f(x):
        """Double it."""
        return 2 * x

    g = registry.export("algorithm", "double", note="J0")(f)
    assert g is f
    entry = registry.get("algorithm", "double")
    assert entry.obj is f and entry.meta == {"note": "J0"} and entry.summary == "Double it."


def test_shorthands_are_partials_of_export():
    for kind in registry.KINDS:
        short = getattr(registry, f"export_{kind}")
        assert isinstance(short, functools.partial)
        assert short.func is registry.export and short.args == (kind,)


def test_create_builds_with_kwargs(scratch):
    @registry.export_model("pair")
    class Pair:
        def __init__(self, a, b=1):
            self.a, self.b = a, b

    p = paperlab.create("model", "pair", a=3, b=4)
    assert (p.a, p.b) == (3, 4)


def test_unknown_name_lists_close_matches(scratch):
    registry.export_experiment("knapsack")(lambda ctx: None)
    registry.export_experiment("heap")(lambda ctx: None)
    with pytest.raises(UnknownNameError, match="did you mean knapsack"):
        registry.get("experiment", "knapsak")
    with pytest.raises(UnknownNameError, match="known: heap, knapsack"):
        registry.get("experiment", "zzz")
    with pytest.raises(UnknownNameError, match="unknown kind"):
        registry.get("widget", "x")


def test_duplicate_name_for_a_different_object_is_an_error(scratch):
    registry.export_loss("l")(lambda: 1)
    with pytest.raises(ArgumentError, match="already registered"):

        def other():
            return 2

        registry.export_loss("l")(other)


def test_bad_kind_and_name_are_rejected(scratch):
    with pytest.raises(ArgumentError, match="kind must be one of"):
        registry.export("widget", "x")
    with pytest.raises(ArgumentError, match="name must be"):
        registry.export("model", "two words")


def test_real_registry_loads_and_every_entry_is_documented():
    entries = registry.entries()
    assert entries, "load_all() registered nothing"
    for e in entries:
        assert e.summary, f"{e.kind}/{e.name} ({e.module}) has no docstring"
    experiments = registry.entries("experiment")
    for e in experiments:
        assert e.meta.get("note"), f"experiment {e.name} does not name its note"
        assert e.meta.get("tags"), f"experiment {e.name} has no tags"
