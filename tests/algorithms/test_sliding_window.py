"""J2 sliding-window maximum: the monotonic deque equals the naive O(n k) window scan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab import registry
from paperlab.algorithms import sliding_window_max
from paperlab.errors import ArgumentError, ArgumentTypeError

pytestmark = pytest.mark.note("J2", reference="brute force")


def registered(name: str):
    """The object registered as ``algorithm/name``, read without importing all of paperlab."""
    return registry._TABLE["algorithm"][name]


def naive_window_max(nums: list[int], k: int) -> list[int]:
    out = []
    for i in range(len(nums) - k + 1):
        best = nums[i]
        for x in nums[i + 1 : i + k]:
            best = x if x > best else best
        out.append(best)
    return out


@st.composite
def nums_and_k(draw):
    nums = draw(st.lists(st.integers(-50, 50), min_size=1, max_size=60))
    k = draw(st.integers(1, len(nums)))
    return nums, k


@settings(max_examples=300, deadline=None)
@given(nums_and_k())
def test_matches_naive_window(case):
    nums, k = case
    assert sliding_window_max(nums, k) == naive_window_max(nums, k)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(), min_size=1, max_size=30))
def test_edge_windows(nums):
    assert sliding_window_max(nums, 1) == nums
    assert sliding_window_max(nums, len(nums)) == [max(nums)]
    assert sliding_window_max(tuple(nums), 1) == nums  # any sequence


def test_note_example_and_registry():
    assert sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3) == [3, 3, 5, 5, 6, 7]
    assert sliding_window_max([1], 1) == [1]
    assert registered("sliding-window-max").obj is sliding_window_max


@pytest.mark.parametrize(
    ("nums", "k", "error", "match"),
    [
        ([1, 2, 3], 0, ArgumentError, r"k must be >= 1, got 0"),
        ([1, 2, 3], -2, ArgumentError, r"k must be >= 1"),
        ([1, 2, 3], 4, ArgumentError, r"k must be <= len\(nums\) = 3, got 4"),
        ([], 1, ArgumentError, r"k must be <= len\(nums\) = 0"),
        ([1, 2.5, 3], 2, ArgumentTypeError, r"nums\[1\] must be an int, got float"),
        ([1, True], 1, ArgumentTypeError, r"nums\[1\] must be an int, got bool"),
        ("abc", 1, ArgumentTypeError, r"nums must be a sequence of ints"),
        ([1, 2, 3], 2.0, ArgumentTypeError, r"k must be an int, got float"),
        ([1, 2, 3], None, ArgumentTypeError, r"k must be an int"),
    ],
)
def test_bad_input_names_the_argument(nums, k, error, match):
    with pytest.raises(error, match=match):
        sliding_window_max(nums, k)
    assert issubclass(error, (ValueError, TypeError))
