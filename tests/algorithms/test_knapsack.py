"""J5 0/1 knapsack: 2-D table == 1-D reverse iteration == exhaustive subset search."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab import registry
from paperlab.algorithms import knapsack_01, knapsack_01_1d, knapsack_01_table
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError

pytestmark = pytest.mark.note("J5", reference="brute force")


def registered(name: str):
    """The object registered as ``algorithm/name``, read without importing all of paperlab."""
    return registry._TABLE["algorithm"][name]


def brute_knapsack(volumes: list[int], values: list[int], capacity: int) -> int:
    best = 0
    for r in range(len(volumes) + 1):
        for subset in itertools.combinations(range(len(volumes)), r):
            if sum(volumes[i] for i in subset) <= capacity:
                best = max(best, sum(values[i] for i in subset))
    return best


@st.composite
def instances(draw):
    n = draw(st.integers(0, 9))
    volumes = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    values = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    capacity = draw(st.integers(0, 40))
    return volumes, values, capacity


@settings(max_examples=200, deadline=None)
@given(instances())
def test_both_forms_match_exhaustive_search(case):
    volumes, values, capacity = case
    best = brute_knapsack(volumes, values, capacity)
    assert knapsack_01(volumes, values, capacity) == best
    assert knapsack_01(volumes, values, capacity, method="2d") == best
    assert knapsack_01_table(volumes, values, capacity) == best
    assert knapsack_01_1d(volumes, values, capacity) == best
    v1, items1 = knapsack_01(volumes, values, capacity, return_items=True, method="1d")
    v2, items2 = knapsack_01(volumes, values, capacity, return_items=True, method="2d")
    assert v1 == v2 == best
    assert items1 == items2 == sorted(set(items1))
    assert sum(volumes[i] for i in items1) <= capacity
    assert sum(values[i] for i in items1) == best


def test_examples_and_registry():
    assert knapsack_01([1, 2, 3, 4], [2, 4, 4, 5], 5) == 8  # AcWing 2's sample
    assert knapsack_01([1, 2, 3, 4], [2, 4, 4, 5], 5, return_items=True) == (8, [1, 2])
    assert knapsack_01([], [], 10, return_items=True) == (0, [])
    assert knapsack_01([5], [9], 4, method="2d", return_items=True) == (0, [])
    assert knapsack_01([0, 3], [2, 5], 0, return_items=True) == (2, [0])  # free item, once
    for name, fn in [
        ("knapsack-01", knapsack_01),
        ("knapsack-01-table", knapsack_01_table),
        ("knapsack-01-1d", knapsack_01_1d),
    ]:
        assert registered(name).obj is fn


@pytest.mark.parametrize("method", ["1d", "2d"])
@pytest.mark.parametrize(
    ("volumes", "values", "capacity", "error", "match"),
    [
        ([1, 2], [3], 5, ShapeError, r"volumes and values must have the same length, got 2 and 1"),
        ([1, 2], [3, 4], -1, ArgumentError, r"capacity must be >= 0, got -1"),
        ([1, -2], [3, 4], 5, ArgumentError, r"volumes\[1\] must be >= 0, got -2"),
        ([1, 2], [-3, 4], 5, ArgumentError, r"values\[0\] must be >= 0, got -3"),
        ([1, 2.5], [3, 4], 5, ArgumentTypeError, r"volumes\[1\] must be an int, got float"),
        ([1, 2], [3, "4"], 5, ArgumentTypeError, r"values\[1\] must be an int, got str"),
        ([1, 2], [3, 4], 5.0, ArgumentTypeError, r"capacity must be an int, got float"),
        (None, [3, 4], 5, ArgumentTypeError, r"volumes must be a sequence of ints"),
    ],
)
def test_bad_input_names_the_argument(method, volumes, values, capacity, error, match):
    with pytest.raises(error, match=match):
        knapsack_01(volumes, values, capacity, method=method)


def test_bad_method():
    with pytest.raises(ArgumentError, match=r"method must be '1d' or '2d', got '3d'"):
        knapsack_01([1], [1], 1, method="3d")  # type: ignore[call-overload]
