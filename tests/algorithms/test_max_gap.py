"""J3 maximum gap: the bucket method equals the answer read off the sorted list."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab import registry
from paperlab.algorithms import max_gap
from paperlab.errors import ArgumentTypeError

pytestmark = pytest.mark.note("J3", reference="brute force and sorting")


def registered(name: str):
    """The object registered as ``algorithm/name``, read without importing all of paperlab."""
    return registry._TABLE["algorithm"][name]


def sorted_gap(nums: list[int]) -> int:
    s = sorted(nums)
    return max((b - a for a, b in pairwise(s)), default=0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(10**12), 10**12), max_size=80))
def test_matches_sorting_wide_range(nums):
    assert max_gap(nums) == sorted_gap(nums)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-5, 5), max_size=80))
def test_matches_sorting_many_duplicates(nums):
    assert max_gap(nums) == sorted_gap(nums)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=2, max_size=10), st.integers(1, 10**9))
def test_matches_sorting_with_an_outlier(nums, far):
    nums = nums + [nums[0] + far]
    assert max_gap(nums) == sorted_gap(nums)


def test_small_inputs_and_example():
    assert max_gap([]) == 0
    assert max_gap([7]) == 0
    assert max_gap([4, 4, 4]) == 0
    assert max_gap([3, 6, 9, 1]) == 3
    assert max_gap((10, 1)) == 9
    assert registered("max-gap").obj is max_gap


@pytest.mark.parametrize(
    ("nums", "match"),
    [
        ([1, 2.0, 3], r"nums\[1\] must be an int, got float"),
        ([1, None], r"nums\[1\] must be an int, got NoneType"),
        (5, r"nums must be a sequence of ints, got int"),
        ("12", r"nums must be a sequence of ints, got str"),
    ],
)
def test_bad_input_names_the_argument(nums, match):
    with pytest.raises(ArgumentTypeError, match=match):
        max_gap(nums)
    with pytest.raises(TypeError):
        max_gap(nums)
