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

pytestmark = pytest.mark.note("J6", reference="heapq")

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


# ------------------------------------------- comparisons that mutate the heap being sifted
#
# A comparison is user code: it can clear, grow, shrink or rewrite the very list being
# sifted. The C heapq reads the list afresh after every comparison and checks its length;
# these tests replay the same mutations against ours and heapq and compare the outcome
# (result or exception type and message) and the list afterwards, item by item.


class Meddler:
    """An item ordered by ``key`` whose ``__lt__`` runs the next action of a shared plan."""

    plan: list = []  # one action per comparison, in call order; None: do nothing
    calls = 0
    target: list | None = None  # the list under test

    def __init__(self, key: int, tag: int) -> None:
        self.key, self.tag = key, tag

    def __lt__(self, other: Meddler) -> bool:
        cls = Meddler
        action = cls.plan[cls.calls] if cls.calls < len(cls.plan) else None
        cls.calls += 1
        heap = cls.target
        if action is not None and heap is not None:
            what, arg = action
            if what == "clear":
                heap.clear()
            elif what == "append":
                heap.append(arg)
            elif what == "pop" and heap:
                heap.pop()
            elif what == "set" and heap:
                heap[arg[0] % len(heap)] = arg[1]
            elif what == "raise":
                raise ValueError(f"comparison {cls.calls} refused")
        return self.key < other.key

    def __repr__(self) -> str:
        return f"M({self.key},{self.tag})"


def run_meddled(module, heap: list, op: tuple, plan: list):
    """``run`` with the comparisons following ``plan`` from its start."""
    Meddler.plan, Meddler.calls, Meddler.target = plan, 0, heap
    try:
        return run(module, heap, op)
    finally:
        Meddler.target = None


@st.composite
def meddling(draw):
    counter = iter(range(10**9))
    item = st.integers(0, 6).map(lambda k: Meddler(k, next(counter)))
    start = draw(st.lists(item, max_size=15))
    name = draw(st.sampled_from(["heappush", "heappop", "heapreplace", "heappushpop", "heapify"]))
    op = (name, None if name in ("heappop",) else draw(item))
    if name == "heapify":
        op = ("extend+heapify", draw(st.lists(item, max_size=6)))
    action = st.one_of(
        st.none(),
        st.none(),
        st.none(),
        st.just(("clear", None)),
        st.tuples(st.just("append"), item),
        st.just(("pop", None)),
        st.tuples(st.just("set"), st.tuples(st.integers(0, 20), item)),
        st.just(("raise", None)),
    )
    plan = draw(st.lists(action, max_size=12))
    return start, op, plan


@settings(max_examples=400, deadline=None)
@given(meddling())
def test_mutating_comparisons_match_heapq(case):
    start, op, plan = case
    a, b = list(start), list(start)
    ra, rb = run_meddled(ours, a, op, plan), run_meddled(heapq, b, op, plan)
    assert same(ra, rb), (op, plan, ra, rb)
    assert same(a, b), (op, plan, a, b)


class Clearing(int):
    """The brief's case: an int whose comparison empties the heap it sits in."""

    heap: list | None = None

    def __lt__(self, other):
        if Clearing.heap is not None:
            Clearing.heap.clear()
        return int.__lt__(self, other)


# function, heap, extra args, the exception the C heapq raises (measured, CPython 3.11)
CLEARING_CASES = [
    ("heappush", [0, 1, 2], (-1,), RuntimeError),
    ("heappush", [0, 1, 2], (5,), RuntimeError),  # raised even when the comparison is false
    ("heappop", [0, 1, 2], (), RuntimeError),
    ("heappop", [0, 1, 2, 3], (), RuntimeError),
    ("heapreplace", [0, 1, 2], (7,), RuntimeError),
    ("heapreplace", [0, 1], (7,), RuntimeError),
    ("heappushpop", [0, 1, 2], (7,), IndexError),  # the root comparison emptied the heap
    ("heappushpop", [0], (7,), IndexError),
    ("heapify", [3, 2, 1], (), RuntimeError),
    ("heapify", [3, 2], (), RuntimeError),
]


@pytest.mark.parametrize(("name", "start", "args", "expected"), CLEARING_CASES)
def test_a_comparison_that_clears_the_heap_raises_as_heapq(name, start, args, expected):
    outcomes = []
    for module in (heapq, ours):
        heap = [Clearing(x) for x in start]
        Clearing.heap = heap
        try:
            with pytest.raises(expected) as info:
                getattr(module, name)(heap, *(Clearing(x) for x in args))
        finally:
            Clearing.heap = None
        outcomes.append((type(info.value), str(info.value), list(heap)))
    assert outcomes[0] == outcomes[1]
    message = "list changed size during iteration" if expected is RuntimeError else "index"
    assert message in outcomes[1][1] and outcomes[1][2] == []


@pytest.mark.parametrize("name", ["heappush", "heappop", "heapreplace", "heappushpop"])
def test_no_comparison_no_check(name):
    """One item (or none): no comparison runs, so nothing is raised, as in heapq."""
    for module in (heapq, ours):
        heap = [Clearing(0)] if name != "heappush" else []
        Clearing.heap = heap
        try:
            args = () if name == "heappop" else (Clearing(-5),)
            getattr(module, name)(heap, *args)
        finally:
            Clearing.heap = None


@pytest.mark.parametrize("n", [2501, 3000, 5003])
@pytest.mark.parametrize("fail_at", [1, 700, 1500, 2900])
def test_heapify_of_large_lists_fails_at_the_same_comparison(n, fail_at):
    """Above 2500 items heapq sifts in a cache-friendly order: a comparison that raises
    midway leaves the same partial list here only if the order is the same."""
    import random

    rng = random.Random(n + fail_at)
    data = [Meddler(rng.randrange(100), i) for i in range(n)]
    plan = [None] * (fail_at - 1) + [("raise", None)]
    a, b = list(data), list(data)
    ra = run_meddled(ours, a, ("extend+heapify", []), plan)
    rb = run_meddled(heapq, b, ("extend+heapify", []), plan)
    assert ra == rb and ra[1] is ValueError
    assert same(a, b)


def test_nsmallest_nlargest_integer_like_n_as_heapq():
    np = pytest.importorskip("numpy")
    data = [5, 3, 8, 1, 9, 2]
    for fn in ("nsmallest", "nlargest"):
        for n in (1.0, np.int64(3), np.int64(1), True, 0, -1):
            assert getattr(ours, fn)(n, data) == getattr(heapq, fn)(n, data), (fn, n)
            assert getattr(ours, fn)(n, iter(data)) == getattr(heapq, fn)(n, iter(data)), (fn, n)
        for n in (0, 3):  # the iterable is still required to be iterable
            with pytest.raises(TypeError):
                getattr(heapq, fn)(n, 5)
            with pytest.raises(TypeError):
                getattr(ours, fn)(n, 5)
