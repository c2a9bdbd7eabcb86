"""Maximum gap between neighbours in sorted order, in linear time (note J3, LeetCode 164).

The problem
-----------
Given an unsorted list of n integers, return the largest difference between two elements
that are adjacent once the list is sorted; 0 when there are fewer than two numbers.
Sorting first solves it in O(n log n); the note's point is that the bucket (pigeonhole) idea
solves it in O(n) without sorting.

The idea
--------
Let ``lo = min(nums)``, ``hi = max(nums)``. The n numbers cut ``[lo, hi]`` into n - 1 gaps
whose lengths add up to ``hi - lo``, so the largest gap is at least the average

    G >= (hi - lo) / (n - 1) >= size,  with  size = max(1, (hi - lo) // (n - 1)).

Split ``[lo, hi]`` into buckets of width ``size``: number ``x`` goes to bucket
``(x - lo) // size``, and there are ``(hi - lo) // size + 1`` buckets (the ``+ 1`` gives
``hi`` its own bucket). Two numbers in the same bucket differ by at most ``size - 1 < G``, so
the maximum gap never lies inside a bucket: it is the distance from the maximum of one
non-empty bucket to the minimum of the next non-empty bucket. Each bucket therefore keeps
only its minimum and maximum, and one pass over the buckets finds the answer.

Because ``floor(x) >= x / 2`` for ``x >= 1``, ``size >= (hi - lo) / (2 (n - 1))`` whenever the
average gap is at least 1 (and ``size = 1`` with at most ``n - 1`` buckets otherwise), so there
are at most ``2n - 1`` buckets: the method is O(n) time and O(n) memory. Integers keep every
step exact (no floating-point bucket indices).

Shapes: ``nums`` a sequence of n ints (any sign); the result is a non-negative int.
"""

from __future__ import annotations

from collections.abc import Sequence

from paperlab.errors import check_int_list
from paperlab.registry import export_algorithm

__all__ = ["max_gap"]


@export_algorithm("max-gap", note="J3 maximum gap (bucket / pigeonhole idea)")
def max_gap(nums: Sequence[int]) -> int:
    """Largest difference between successive elements of ``sorted(nums)``, in O(n).

    Returns 0 for fewer than two numbers. ``nums`` must be a sequence of ints (a non-int
    raises ``ArgumentTypeError`` naming its index).
    """
    values = check_int_list("nums", nums)
    n = len(values)
    if n < 2:
        return 0
    lo, hi = min(values), max(values)
    if lo == hi:
        return 0
    size = max(1, (hi - lo) // (n - 1))
    count = (hi - lo) // size + 1
    bucket_min: list[int | None] = [None] * count
    bucket_max: list[int | None] = [None] * count
    for x in values:
        b = (x - lo) // size
        low = bucket_min[b]
        if low is None:
            bucket_min[b] = bucket_max[b] = x
        elif x < low:
            bucket_min[b] = x
        elif x > bucket_max[b]:  # type: ignore[operator]
            bucket_max[b] = x

    best = 0
    previous_max = lo  # the first bucket holds lo, so it is never empty
    for low, high in zip(bucket_min, bucket_max, strict=True):
        if low is None:
            continue
        best = max(best, low - previous_max)
        previous_max = high  # type: ignore[assignment]
    return best
