"""A binary min-heap on plain Python lists, with exactly ``heapq``'s semantics (note J6).

The structure
-------------
A heap is a complete binary tree stored level by level in a list: the children of index
``i`` sit at ``2i + 1`` and ``2i + 2``, its parent at ``(i - 1) // 2``. The *heap invariant*
is ``heap[parent] <= heap[child]`` everywhere, so ``heap[0]`` is the smallest item. Only the
``<`` operator is ever used to compare items, as in ``heapq``.

The two sifts
-------------
- *Sift up* (toward the root; ``heapq`` calls it ``_siftdown``): an item placed at the bottom
  swaps with its parent while it is smaller. Used by ``heappush``: O(log n) comparisons.
- *Sift down* (toward the leaves; ``heapq``'s ``_siftup``): used when the root is replaced
  (``heappop``, ``heapreplace``, ``heappushpop``) and by ``heapify``. The textbook version
  compares the item with both children at every level (two comparisons per level). The
  replacement item usually came from the bottom of the heap and belongs near the bottom again,
  so ``heapq`` (after Floyd; Knuth vol. 3, ex. 5.2.3-18) does better: it first moves the
  *smaller child* up at every level until it reaches a leaf (one comparison per level), puts
  the item in that leaf, and sifts it up the few levels it may need. Both orders give a valid
  heap; this module follows ``heapq``'s, so it leaves the very same list as ``heapq`` does
  (and the same partial state when a comparison raises: every move is a swap).

``heapify`` in O(n)
-------------------
Leaves are already heaps. Sifting down every internal node from the last one (``n // 2 - 1``)
back to the root makes each subtree a heap once both child subtrees are. A node at height h
costs O(h), and at most ``n / 2^(h+1)`` nodes have height h, so the total is
``sum_h h n / 2^(h+1) = n``: O(n), not the O(n log n) of n ``heappush`` calls (which, fed
items in decreasing order, sift every new item all the way to the root). The experiment
counts the comparisons.

``nsmallest`` and ``nlargest``
------------------------------
``nsmallest(n, it, key)`` equals ``sorted(it, key=key)[:n]`` and ``nlargest`` equals
``sorted(it, key=key, reverse=True)[:n]``, stable among equal keys. They keep the n best items
seen so far in a heap whose root is the *worst* of them (a max-heap for ``nsmallest``), so a
new item costs one comparison with the root and, only if it beats it, an O(log n) replacement:
O(len log n) in all, O(n) memory, one pass over any iterable. Each stored entry is
``(key, order, item)``: the insertion order breaks ties (keeping the sort stable) and means
the items themselves are never compared. ``n == 1`` uses ``min``/``max``; when ``n`` is at least
the input's length, sorting is cheaper.

Errors match ``heapq`` (the C module ``_heapq``, which is what ``import heapq`` gives):

- popping or replacing on an empty heap: ``IndexError('index out of range')``;
- a non-list heap: a ``TypeError`` (here the ``ArgumentTypeError`` subclass) with ``heapq``'s
  message;
- a comparison that changes the length of the list being sifted (an item whose ``__lt__``
  clears, appends to or pops from the heap): ``RuntimeError('list changed size during
  iteration')``, raised right after that comparison, whether it returned true or false, by
  ``heappush``, ``heappop``, ``heapreplace``, ``heapify`` and the sift of ``heappushpop``;
- ``heappushpop`` whose first comparison (root < item) empties the heap:
  ``IndexError('index out of range')``.

A comparison that mutates the list without changing its length goes on: the sifts read the
list afresh at every step and swap whatever sits at the two positions then, as the C code
does, so the list ends in the same state. (The pure-Python ``heapq`` fallback caches items
and writes into holes instead; it raises ``IndexError`` from its index assignments in the
cases above and leaves different lists.) ``nsmallest``/``nlargest`` follow ``heapq``'s
control flow (``n == 1`` first, then the ``sorted`` shortcut for sized inputs), accept any
integer-like ``n`` (NumPy ints too), and name ``n`` in a ``TypeError`` otherwise, where
``heapq`` raises a ``TypeError`` from ``range`` or slicing.

Where this module still differs: a ``list`` *subclass* that overrides ``__getitem__``,
``__setitem__``, ``__len__``, ``append`` or ``pop`` has its overrides called here; the C code
reaches past them into the list's storage.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, TypeVar

from paperlab.errors import ArgumentTypeError
from paperlab.registry import export_algorithm

__all__ = [
    "heapify",
    "heappop",
    "heappush",
    "heappushpop",
    "heapreplace",
    "nlargest",
    "nsmallest",
]

T = TypeVar("T")


def _not_a_list(function: str, heap: object, *, only_argument: bool) -> ArgumentTypeError:
    which = "argument" if only_argument else "argument 1"
    got = "None" if heap is None else type(heap).__name__
    return ArgumentTypeError(f"{function}() {which} must be list, not {got}")


def _empty() -> IndexError:
    return IndexError("index out of range")


# ---------------------------------------------------------------------------------- the sifts
#
# The sifts read the list afresh at every step (never a cached item), and check its size after
# every comparison, as ``_heapqmodule.c`` does: a comparison is user code and may mutate the
# very list being sifted. The checks are what make the errors ``heapq``'s.


def _changed_size() -> RuntimeError:
    return RuntimeError("list changed size during iteration")


def _sift_up(heap: list[Any], start: int, pos: int) -> None:
    """Swap ``heap[pos]`` with its parent while it is smaller, stopping at index ``start``.

    ``heapq``'s ``_siftdown``. Raises ``IndexError`` if ``pos`` is past the end and
    ``RuntimeError`` if a comparison changed the list's length.
    """
    size = len(heap)
    if pos >= size:
        raise _empty()
    while pos > start:
        parent_pos = (pos - 1) >> 1
        smaller = bool(heap[pos] < heap[parent_pos])
        if len(heap) != size:
            raise _changed_size()
        if not smaller:
            break
        heap[parent_pos], heap[pos] = heap[pos], heap[parent_pos]
        pos = parent_pos


def _sift_down(heap: list[Any], pos: int) -> None:
    """Restore the heap below ``pos``: smaller child up until a leaf, then sift the item up.

    ``heapq``'s ``_siftup``, with the same ``IndexError`` / ``RuntimeError`` as ``_sift_up``.
    """
    end = len(heap)
    if pos >= end:
        raise _empty()
    start = pos
    limit = end >> 1  # the first index without children
    while pos < limit:
        child = 2 * pos + 1
        if child + 1 < end:
            left_smaller = bool(heap[child] < heap[child + 1])
            if len(heap) != end:
                raise _changed_size()
            if not left_smaller:
                child += 1  # the right child is the smaller one (or they tie)
        heap[pos], heap[child] = heap[child], heap[pos]
        pos = child
    _sift_up(heap, start, pos)


def _sift_up_max(heap: list[Any], start: int, pos: int) -> None:
    """``_sift_up`` for a max-heap (parents >= children)."""
    size = len(heap)
    if pos >= size:
        raise _empty()
    while pos > start:
        parent_pos = (pos - 1) >> 1
        larger = bool(heap[parent_pos] < heap[pos])
        if len(heap) != size:
            raise _changed_size()
        if not larger:
            break
        heap[parent_pos], heap[pos] = heap[pos], heap[parent_pos]
        pos = parent_pos


def _sift_down_max(heap: list[Any], pos: int) -> None:
    """``_sift_down`` for a max-heap: the larger child moves up."""
    end = len(heap)
    if pos >= end:
        raise _empty()
    start = pos
    limit = end >> 1
    while pos < limit:
        child = 2 * pos + 1
        if child + 1 < end:
            right_smaller = bool(heap[child + 1] < heap[child])
            if len(heap) != end:
                raise _changed_size()
            if not right_smaller:
                child += 1
        heap[pos], heap[child] = heap[child], heap[pos]
        pos = child
    _sift_up_max(heap, start, pos)


def _heapify_order(n: int) -> Iterable[int]:
    """The order in which ``heapify`` sifts the internal nodes of an ``n``-item list.

    Up to 2500 items, ``heapq`` sifts them from ``n // 2 - 1`` back to the root. Above, it
    uses a cache-friendly order: once both children of a node are sifted, the node is sifted
    at once (while they are still in cache). Either order sifts every child heap before its
    parent, so both build the same heap with the same comparisons; only the order of the
    comparisons differs, which decides the partial state when one of them raises.
    """
    if n <= 2500:
        yield from reversed(range(n >> 1))
        return
    m = n >> 1  # the first childless node
    leftmost = (1 << ((m + 1).bit_length() - 1)) - 1  # the leftmost node in m's row
    for low, high in ((m >> 1, leftmost - 1), (leftmost, m - 1)):
        for i in range(high, low - 1, -1):
            j = i
            yield j
            while j & 1:  # a left child: its sibling is done, so is its parent's subtree
                j >>= 1
                yield j


# ----------------------------------------------------------------------- the heapq functions


@export_algorithm("heappush", note="J6 heapq: push, sift up")
def heappush(heap: list[T], item: T) -> None:
    """Push ``item`` onto ``heap``, keeping the heap invariant (O(log n))."""
    if not isinstance(heap, list):
        raise _not_a_list("heappush", heap, only_argument=False)
    heap.append(item)
    _sift_up(heap, 0, len(heap) - 1)


@export_algorithm("heappop", note="J6 heapq: pop the smallest, sift down")
def heappop(heap: list[T]) -> T:
    """Pop and return the smallest item; ``IndexError`` if ``heap`` is empty (O(log n))."""
    if not isinstance(heap, list):
        raise _not_a_list("heappop", heap, only_argument=True)
    if not heap:
        raise _empty()
    last = heap.pop()
    if not heap:
        return last
    smallest = heap[0]
    heap[0] = last
    _sift_down(heap, 0)
    return smallest


@export_algorithm("heapreplace", note="J6 heapq: pop then push, one sift")
def heapreplace(heap: list[T], item: T) -> T:
    """Pop the smallest item, then push ``item`` (one sift); ``IndexError`` if empty.

    The returned item may be larger than ``item``: it is the old root, whatever ``item`` is.
    """
    if not isinstance(heap, list):
        raise _not_a_list("heapreplace", heap, only_argument=False)
    if not heap:
        raise _empty()
    smallest = heap[0]
    heap[0] = item
    _sift_down(heap, 0)
    return smallest


@export_algorithm("heappushpop", note="J6 heapq: push then pop, one sift")
def heappushpop(heap: list[T], item: T) -> T:
    """Push ``item``, then pop and return the smallest item, with at most one sift.

    ``item`` itself comes back when it is not larger than the root (the heap is untouched);
    otherwise the root as it is after the comparison does. ``IndexError`` if that comparison
    emptied the heap.
    """
    if not isinstance(heap, list):
        raise _not_a_list("heappushpop", heap, only_argument=False)
    if not heap or not heap[0] < item:
        return item
    if not heap:  # the comparison emptied it
        raise _empty()
    smallest = heap[0]
    heap[0] = item
    _sift_down(heap, 0)
    return smallest


@export_algorithm("heapify", note="J6 heapq: heapify in O(n) by bottom-up sift-down")
def heapify(x: list[Any]) -> None:
    """Rearrange the list ``x`` into a heap, in place, in O(n) comparisons."""
    if not isinstance(x, list):
        raise _not_a_list("heapify", x, only_argument=True)
    for pos in _heapify_order(len(x)):
        _sift_down(x, pos)


# ------------------------------------------------------------------ nsmallest and nlargest


def _check_n(n: object) -> int:
    """``n`` as an int: anything ``range`` accepts (ints, bools, NumPy integers), as in heapq."""
    try:
        return operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentTypeError(f"n must be an int, got {type(n).__name__} {n!r}") from None


_MISSING = object()


@export_algorithm("nsmallest", note="J6 heapq: n smallest items with a bounded max-heap")
def nsmallest(n: int, iterable: Iterable[T], key: Callable[[T], Any] | None = None) -> list[T]:
    """The ``n`` smallest items of ``iterable``: ``sorted(iterable, key=key)[:n]``, stably."""
    if n == 1:  # first, as in heapq (so n=1.0 works there and here)
        first = min(iter(iterable), default=_MISSING, key=key)  # type: ignore[call-overload]
        return [] if first is _MISSING else [first]
    n = _check_n(n)
    try:
        size = len(iterable)  # type: ignore[arg-type]
    except (TypeError, AttributeError):
        pass
    else:
        if n >= size:
            return sorted(iterable, key=key)[:n]  # type: ignore[type-var, arg-type]

    it = iter(iterable)
    if n <= 0:
        return []
    # (key, order, item) with the worst of the kept ones at the root of a max-heap
    kept = [(x if key is None else key(x), i, x) for i, x in enumerate(islice(it, n))]
    if not kept:
        return []
    for pos in _heapify_order(len(kept)):
        _sift_down_max(kept, pos)
    worst = kept[0][0]
    for i, x in enumerate(it, start=n):
        k = x if key is None else key(x)
        if k < worst:  # strictly better: on a tie the earlier item stays (stability)
            kept[0] = (k, i, x)
            _sift_down_max(kept, 0)
            worst = kept[0][0]
    kept.sort()
    return [x for _, _, x in kept]


@export_algorithm("nlargest", note="J6 heapq: n largest items with a bounded min-heap")
def nlargest(n: int, iterable: Iterable[T], key: Callable[[T], Any] | None = None) -> list[T]:
    """The ``n`` largest items: ``sorted(iterable, key=key, reverse=True)[:n]``, stably."""
    if n == 1:  # first, as in heapq (so n=1.0 works there and here)
        first = max(iter(iterable), default=_MISSING, key=key)  # type: ignore[call-overload]
        return [] if first is _MISSING else [first]
    n = _check_n(n)
    try:
        size = len(iterable)  # type: ignore[arg-type]
    except (TypeError, AttributeError):
        pass
    else:
        if n >= size:
            return sorted(iterable, key=key, reverse=True)[:n]  # type: ignore[type-var, arg-type]

    it = iter(iterable)
    if n <= 0:
        return []
    # (key, -order, item) with the worst (smallest) of the kept ones at the root of a min-heap;
    # -order makes the earlier of two equal keys the larger entry, so it sorts first below
    kept = [(x if key is None else key(x), -i, x) for i, x in enumerate(islice(it, n))]
    if not kept:
        return []
    for pos in _heapify_order(len(kept)):
        _sift_down(kept, pos)
    worst = kept[0][0]
    for i, x in enumerate(it, start=n):
        k = x if key is None else key(x)
        if worst < k:
            kept[0] = (k, -i, x)
            _sift_down(kept, 0)
            worst = kept[0][0]
    kept.sort(reverse=True)
    return [x for _, _, x in kept]
