"""J6 heap: the same operations on two lists, ours and ``heapq``, leave the same lists.

Items compare by key only and carry a tag, so ties are distinguishable: matching lists means
the same algorithm (same sifts, same tie-breaking), not merely a valid heap.
"""

from __future__ import annotations

import heapq
from functools import total_ordering

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab import registry
from paperlab.algorithms import heap as ours
from paperlab.errors import ArgumentTypeError

FUNCTIONS = (
    "heappush",
    "heappop",
    "heapify",
    "heapreplace",
    "heappushpop",
    "nsmallest",
    "nlargest",
)


def registered(name: str):
    """The object registered as ``algorithm/name``, read without importing all of paperlab."""
    return registry._TABLE["algorithm"][name]


@total_ordering
class Tagged:
    """An item ordered by ``key`` alone; ``tag`` tells equal keys apart."""

    def __init__(self, key: int, tag: int) -> None:
        self.key, self.tag = key, tag

    def __lt__(self, other: Tagged) -> bool:
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tagged) and self.key == other.key

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"T({self.key},{self.tag})"


def run(module, heap: list, op: tuple):
    """Apply one operation; return its result or the exception's type and message."""
    name, arg = op
    try:
        if name == "extend+heapify":  # break the invariant, then repair it
            heap.extend(arg)
            return module.heapify(heap)
        if name in ("heappop",):
            return module.heappop(heap)
        if name in ("nsmallest", "nlargest"):
            n, key = arg
            return getattr(module, name)(n, iter(heap), key=key)
        return getattr(module, name)(heap, arg)
    except Exception as exc:  # noqa: BLE001 - the exception is the result being compared
        return ("raised", type(exc), str(exc))


def same(a: object, b: object) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
    return a is b or a == b


def key_fn(x):
    return x.key % 3 if isinstance(x, Tagged) else x


@st.composite
def operations(draw, items):
    ops = []
    for _ in range(draw(st.integers(0, 40))):
        name = draw(
            st.sampled_from(
                [
                    "heappush",
                    "heappush",
                    "heappop",
                    "heapreplace",
                    "heappushpop",
                    "extend+heapify",
                    "nsmallest",
                    "nlargest",
                ]
            )
        )
        if name == "extend+heapify":
            ops.append((name, draw(st.lists(items, max_size=12))))
        elif name in ("nsmallest", "nlargest"):
            ops.append((name, (draw(st.integers(-2, 25)), draw(st.sampled_from([None, key_fn])))))
        else:
            ops.append((name, draw(items) if name != "heappop" else None))
    return ops


def tagged_items():
    counter = iter(range(10**9))
    return st.integers(0, 6).map(lambda k: Tagged(k, next(counter)))


def check_side_by_side(start: list, ops: list) -> None:
    a, b = list(start), list(start)
    for op in ops:
        ra, rb = run(ours, a, op), run(heapq, b, op)
        assert same(ra, rb), (op, ra, rb)
        assert same(a, b), (op, a, b)


@settings(max_examples=200, deadline=None)
@given(st.lists(tagged_items(), max_size=20), operations(tagged_items()))
def test_random_operations_match_heapq_with_ties(start, ops):
    check_side_by_side(start, [("extend+heapify", [])] + ops)


@settings(max_examples=150, deadline=None)
@given(operations(st.one_of(st.integers(0, 9), st.sampled_from(["a", "b"]))))
def test_failing_comparisons_leave_the_same_list(ops):
    """int < str raises TypeError in the middle of a sift: both leave the same partial state."""
    check_side_by_side([], ops)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=40),
    st.integers(-3, 45),
    st.sampled_from([None, lambda t: t[0], lambda t: -t[1], sum]),
)
def test_nsmallest_nlargest_are_stable_sorts(data, n, key):
    for make in (list, iter, tuple, lambda d: (x for x in d)):
        small = ours.nsmallest(n, make(data), key=key)
        large = ours.nlargest(n, make(data), key=key)
        assert small == heapq.nsmallest(n, make(data), key=key)
        assert large == heapq.nlargest(n, make(data), key=key)
        m = max(n, 0)
        # identity, not just equality: the earlier of equal items comes first
        assert same(small, sorted(data, key=key)[:m])
        assert same(large, sorted(data, key=key, reverse=True)[:m])


def test_heapify_matches_heapq_on_large_lists():
    import random

    rng = random.Random(0)
    for n in (2499, 2500, 2501, 5000, 10007):  # heapq switches to a cache-friendly order > 2500
        data = [Tagged(rng.randrange(50), i) for i in range(n)]
        a, b = list(data), list(data)
        ours.heapify(a)
        heapq.heapify(b)
        assert same(a, b)
        assert [ours.heappop(a) for _ in range(n)] == [heapq.heappop(b) for _ in range(n)]


def test_empty_heap_errors_match_heapq():
    for name, args in [("heappop", ()), ("heapreplace", (1,))]:
        with pytest.raises(IndexError) as mine:
            getattr(ours, name)([], *args)
        with pytest.raises(IndexError) as ref:
            getattr(heapq, name)([], *args)
        assert str(mine.value) == str(ref.value) == "index out of range"
    assert ours.heappushpop([], 3) == 3
    assert ours.nsmallest(3, []) == [] and ours.nlargest(2, iter([])) == []
    assert ours.nsmallest(1, []) == [] and ours.nlargest(1, [5, 7, 7]) == [7]


@pytest.mark.parametrize("name", ["heappush", "heappop", "heapify", "heapreplace", "heappushpop"])
@pytest.mark.parametrize("bad", [(1, 2), None, "abc", {1: 2}])
def test_non_list_heap_raises_heapqs_type_error(name, bad):
    args = (bad,) if name in ("heappop", "heapify") else (bad, 1)
    with pytest.raises(TypeError) as ref:
        getattr(heapq, name)(*args)
    with pytest.raises(ArgumentTypeError) as mine:
        getattr(ours, name)(*args)
    assert str(mine.value) == str(ref.value)


def test_bad_n_names_the_argument():
    for fn in (ours.nsmallest, ours.nlargest):
        with pytest.raises(ArgumentTypeError, match=r"n must be an int, got float 2.0"):
            fn(2.0, [1, 2, 3])
    assert ours.nsmallest(True, [3, 1, 2]) == heapq.nsmallest(True, [3, 1, 2]) == [1]  # bool is int
    assert ours.nlargest(True, [3, 1, 2]) == heapq.nlargest(True, [3, 1, 2]) == [3]


def test_registered():
    for name in FUNCTIONS:
        assert registered(name).obj is getattr(ours, name)
