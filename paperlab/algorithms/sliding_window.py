"""Sliding-window maximum with a monotonic deque (note J2, LeetCode 239).

The problem
-----------
Given ``nums`` (length n) and a window size ``k``, return the maximum of every window
``nums[i : i + k]`` for ``i = 0 .. n - k``: a list of ``n - k + 1`` numbers. Example:
``nums = [1, 3, -1, -3, 5, 3, 6, 7], k = 3`` gives ``[3, 3, 5, 5, 6, 7]``.

The idea
--------
Recomputing ``max`` for each window costs O(k) per window, O(n k) in all. The monotonic deque
keeps, for the current window, only the indices that can still become a maximum: an element
that has a larger (or equal) element to its right inside the window can never be the maximum
of this or any later window, so it is thrown away. What remains is a deque of indices whose
values strictly decrease from front to back, and its front is the window's maximum.

For each new index ``i``:

1. pop from the back every index whose value is ``<= nums[i]`` (they are dominated);
2. push ``i`` on the back;
3. pop the front if it has slid out of the window (``front <= i - k``);
4. once ``i >= k - 1``, the front is the answer for window ``i - k + 1 .. i``.

Every index is pushed once and popped at most once, so the whole pass costs O(n) time,
independently of ``k``, and O(k) extra memory (the deque never holds more than k indices).
Each element takes part in at most two value comparisons (one that pops it, one that stops
the popping), so the number of comparisons is below 2n.

Shapes: ``nums`` a sequence of n ints, ``1 <= k <= n``; the result is a list of n - k + 1 ints.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from paperlab.errors import ArgumentError, check_int, check_int_list
from paperlab.registry import export_algorithm

__all__ = ["sliding_window_max"]


@export_algorithm("sliding-window-max", note="J2 sliding-window maximum (monotonic deque)")
def sliding_window_max(nums: Sequence[int], k: int) -> list[int]:
    """Maximum of every length-``k`` window of ``nums``, in O(n) with a monotonic deque.

    ``nums`` must be a sequence of ints and ``1 <= k <= len(nums)``; bad input raises
    ``ArgumentTypeError`` (a ``TypeError``) or ``ArgumentError`` (a ``ValueError``).
    """
    values = check_int_list("nums", nums)
    check_int("k", k, minimum=1)
    if k > len(values):
        raise ArgumentError(f"k must be <= len(nums) = {len(values)}, got {k}")

    window: deque[int] = deque()  # indices; their values strictly decrease front to back
    out: list[int] = []
    for i, x in enumerate(values):
        while window and values[window[-1]] <= x:
            window.pop()
        window.append(i)
        if window[0] <= i - k:
            window.popleft()
        if i >= k - 1:
            out.append(values[window[0]])
    return out
