"""Sliding-window maximum benchmark (note J2).

The monotonic deque against the naive ``max(nums[i:i+k])`` scan (O(n k), but its inner ``max``
runs in C) and against NumPy's ``sliding_window_view(a, k).max(axis=1)`` on a ready array
(vectorised O(n k), the fastest reference). Ratios are ours / reference.
"""

from __future__ import annotations

import random

from paperlab.algorithms import sliding_window_max
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark


def _naive_max(nums: list[int], k: int) -> list[int]:
    return [max(nums[i : i + k]) for i in range(len(nums) - k + 1)]


@export_benchmark("sliding-window-max", group="algorithms", note="J2")
def bench_sliding_window_max(ctx: BenchContext) -> list[BenchRow]:
    """Monotonic deque vs the naive max-of-slice scan and vs NumPy's sliding_window_view."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    rows = []
    rng = random.Random(0)
    for n in [10000] if ctx.quick else [10000, 100000]:
        nums = [rng.randrange(-(10**6), 10**6) for _ in range(n)]
        arr = np.asarray(nums, dtype=np.int64)
        for k in (16, 256):
            size = f"n={n} k={k}"
            rows.append(
                compare(
                    ctx,
                    "vs naive",
                    size,
                    lambda k=k, d=nums: sliding_window_max(d, k),
                    lambda k=k, d=nums: _naive_max(d, k),
                    "naive max of each slice",
                )
            )
            rows.append(
                compare(
                    ctx,
                    "vs numpy",
                    size,
                    lambda k=k, d=nums: sliding_window_max(d, k),
                    lambda k=k, a=arr: sliding_window_view(a, k).max(axis=1),
                    "numpy sliding_window_view",
                )
            )
    return rows
