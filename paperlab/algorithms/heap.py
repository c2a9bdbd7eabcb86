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

Errors match ``heapq``: popping or replacing on an empty heap raises
``IndexError('index out of range')``; a non-list heap raises a ``TypeError`` (here the
``ArgumentTypeError`` subclass) with ``heapq``'s message.
"""

from __future__ import annotations

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


def _sift_up(heap: list[Any], start: int, pos: int) -> None:
    """Swap ``heap[pos]`` with its parent while it is smaller, stopping at index ``start``."""
    item = heap[pos]
    while pos > start:
        parent_pos = (pos - 1) >> 1
        parent = heap[parent_pos]
        if not item < parent:
            break
        heap[parent_pos], heap[pos] = item, parent
        pos = parent_pos


def _sift_down(heap: list[Any], pos: int) -> None:
    """Restore the heap below ``pos``: smaller child up until a leaf, then sift the item up."""
    end = len(heap)
    start = pos
    limit = end >> 1  # the first index without children
    while pos < limit:
        child = 2 * pos + 1
        if child + 1 < end and not heap[child] < heap[child + 1]:
            child += 1  # the right child is the smaller one (or they tie)
        heap[pos], heap[child] = heap[child], heap[pos]
        pos = child
    _sift_up(heap, start, pos)


def _sift_up_max(heap: list[Any], start: int, pos: int) -> None:
    """``_sift_up`` for a max-heap (parents >= children)."""
    item = heap[pos]
    while pos > start:
        parent_pos = (pos - 1) >> 1
        parent = heap[parent_pos]
        if not parent < item:
            break
        heap[parent_pos], heap[pos] = item, parent
        pos = parent_pos


def _sift_down_max(heap: list[Any], pos: int) -> None:
    """``_sift_down`` for a max-heap: the larger child moves up."""
    end = len(heap)
    start = pos
    limit = end >> 1
    while pos < limit:
        child = 2 * pos + 1
        if child + 1 < end and not heap[child + 1] < heap[child]:
            child += 1
        heap[pos], heap[child] = heap[child], heap[pos]
        pos = child
    _sift_up_max(heap, start, pos)


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
    otherwise the old root does.
    """
    if not isinstance(heap, list):
        raise _not_a_list("heappushpop", heap, only_argument=False)
    if heap and heap[0] < item:
        smallest = heap[0]
        heap[0] = item
        _sift_down(heap, 0)
        return smallest
    return item


@export_algorithm("heapify", note="J6 heapq: heapify in O(n) by bottom-up sift-down")
def heapify(x: list[Any]) -> None:
    """Rearrange the list ``x`` into a heap, in place, in O(n) comparisons."""
    if not isinstance(x, list):
        raise _not_a_list("heapify", x, only_argument=True)
    for pos in reversed(range(len(x) // 2)):
        _sift_down(x, pos)


# ------------------------------------------------------------------ nsmallest and nlargest


def _check_n(n: object) -> int:
    if not isinstance(n, int):  # bools are ints here, as in heapq
        raise ArgumentTypeError(f"n must be an int, got {type(n).__name__} {n!r}")
    return n


_MISSING = object()


@export_algorithm("nsmallest", note="J6 heapq: n smallest items with a bounded max-heap")
def nsmallest(n: int, iterable: Iterable[T], key: Callable[[T], Any] | None = None) -> list[T]:
    """The ``n`` smallest items of ``iterable``: ``sorted(iterable, key=key)[:n]``, stably."""
    n = _check_n(n)
    if n <= 0:
        return []
    if n == 1:
        first = min(iter(iterable), default=_MISSING, key=key)  # type: ignore[call-overload]
        return [] if first is _MISSING else [first]
    try:
        size = len(iterable)  # type: ignore[arg-type]
    except (TypeError, AttributeError):
        pass
    else:
        if n >= size:
            return sorted(iterable, key=key)[:n]  # type: ignore[type-var, arg-type]

    it = iter(iterable)
    # (key, order, item) with the worst of the kept ones at the root of a max-heap
    kept = [(x if key is None else key(x), i, x) for i, x in enumerate(islice(it, n))]
    if not kept:
        return []
    for pos in reversed(range(len(kept) // 2)):
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
    n = _check_n(n)
    if n <= 0:
        return []
    if n == 1:
        first = max(iter(iterable), default=_MISSING, key=key)  # type: ignore[call-overload]
        return [] if first is _MISSING else [first]
    try:
        size = len(iterable)  # type: ignore[arg-type]
    except (TypeError, AttributeError):
        pass
    else:
        if n >= size:
            return sorted(iterable, key=key, reverse=True)[:n]  # type: ignore[type-var, arg-type]

    it = iter(iterable)
    # (key, -order, item) with the worst (smallest) of the kept ones at the root of a min-heap;
    # -order makes the earlier of two equal keys the larger entry, so it sorts first below
    kept = [(x if key is None else key(x), -i, x) for i, x in enumerate(islice(it, n))]
    if not kept:
        return []
    for pos in reversed(range(len(kept) // 2)):
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
