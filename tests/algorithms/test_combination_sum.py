"""J4 combination sum I/II: ordered backtracking equals brute-force enumeration."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab import registry
from paperlab.algorithms import combination_search, combination_sum, combination_sum2
from paperlab.errors import ArgumentError, ArgumentTypeError

pytestmark = pytest.mark.note("J4", reference="brute force")


def registered(name: str):
    """The object registered as ``algorithm/name``, read without importing all of paperlab."""
    return registry._TABLE["algorithm"][name]


def brute_sum1(candidates: list[int], target: int) -> list[list[int]]:
    values = sorted(set(candidates))
    if not values:
        return [[]] if target == 0 else []
    found = set()
    for r in range(target // min(values) + 1):
        for combo in itertools.combinations_with_replacement(values, r):
            if sum(combo) == target:
                found.add(combo)
    return sorted(list(c) for c in found)


def brute_sum2(candidates: list[int], target: int) -> list[list[int]]:
    found = set()
    for r in range(len(candidates) + 1):
        for positions in itertools.combinations(range(len(candidates)), r):
            combo = tuple(sorted(candidates[p] for p in positions))
            if sum(combo) == target:
                found.add(combo)
    return sorted(list(c) for c in found)


def well_formed(result: list[list[int]]) -> bool:
    return (
        result == sorted(result)
        and all(c == sorted(c) for c in result)
        and len({tuple(c) for c in result}) == len(result)
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 10), max_size=5), st.integers(0, 15))
def test_sum1_matches_brute_force(candidates, target):
    result = combination_sum(candidates, target)
    assert result == brute_sum1(candidates, target)
    assert well_formed(result)
    unpruned = combination_search(candidates, target, reuse=True, prune=False)
    pruned = combination_search(candidates, target, reuse=True)
    assert unpruned.combinations == pruned.combinations == result
    assert pruned.nodes <= unpruned.nodes


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 8), max_size=10), st.integers(0, 20))
def test_sum2_matches_brute_force(candidates, target):
    result = combination_sum2(candidates, target)
    assert result == brute_sum2(candidates, target)
    assert well_formed(result)
    unpruned = combination_search(candidates, target, reuse=False, prune=False)
    pruned = combination_search(candidates, target, reuse=False)
    assert unpruned.combinations == pruned.combinations == result
    assert pruned.nodes <= unpruned.nodes


def test_note_examples_and_edges():
    assert combination_sum([2, 3, 6, 7], 7) == [[2, 2, 3], [7]]
    assert combination_sum([2, 3, 5], 8) == [[2, 2, 2, 2], [2, 3, 3], [3, 5]]
    assert combination_sum2([10, 1, 2, 7, 6, 1, 5], 8) == [[1, 1, 6], [1, 2, 5], [1, 7], [2, 6]]
    assert combination_sum2([2, 5, 2, 1, 2], 5) == [[1, 2, 2], [5]]
    assert combination_sum([3, 3, 2], 6) == [[2, 2, 2], [3, 3]]  # duplicates merged
    assert combination_sum([], 0) == [[]] and combination_sum2([4], 0) == [[]]
    assert combination_sum([], 3) == [] and combination_sum2([4], 3) == []
    assert combination_sum([1], 3000) == [[1] * 3000]  # deep tree, no RecursionError
    for name, fn in [("combination-sum", combination_sum), ("combination-sum2", combination_sum2)]:
        assert registered(name).obj is fn


@pytest.mark.parametrize("fn", [combination_sum, combination_sum2])
@pytest.mark.parametrize(
    ("candidates", "target", "error", "match"),
    [
        ([2, 0, 3], 5, ArgumentError, r"candidates\[1\] must be a positive int, got 0"),
        ([-1], 5, ArgumentError, r"candidates\[0\] must be a positive int, got -1"),
        ([2, 3.0], 5, ArgumentTypeError, r"candidates\[1\] must be an int, got float"),
        (7, 5, ArgumentTypeError, r"candidates must be a sequence of ints"),
        ([2, 3], -1, ArgumentError, r"target must be >= 0, got -1"),
        ([2, 3], 5.5, ArgumentTypeError, r"target must be an int, got float"),
    ],
)
def test_bad_input_names_the_argument(fn, candidates, target, error, match):
    with pytest.raises(error, match=match):
        fn(candidates, target)
