"""Benchmarks of the algorithms family (notes J2-J6): ours against the fastest reference.

- ``heap``: our pure-Python heap against ``heapq`` (C): heapify, n pushes then n pops,
  ``nsmallest(10)``. Expect a large ratio: the same algorithm, interpreted vs compiled.
- ``sliding-window-max``: the monotonic deque against the naive ``max(nums[i:i+k])`` scan
  (O(n k), but its inner ``max`` runs in C) and against NumPy's
  ``sliding_window_view(a, k).max(axis=1)`` on a ready array (vectorised O(n k), the fastest
  reference).
- ``max-gap``: buckets (pure Python, O(n)) against ``sorted`` (C, O(n log n)) plus one pass.
- ``knapsack``: the 1-D reverse-iteration DP against the 2-D table (both pure Python, O(N V)).

Ratios are ours / reference: above 1 means the reference is faster.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from paperlab.algorithms import heap as ours
from paperlab.algorithms import knapsack_01_1d, knapsack_01_table, max_gap, sliding_window_max
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.experiments.max_gap import sorted_max_gap
from paperlab.registry import export_benchmark


def _shuffled(n: int, seed: int = 0) -> list[int]:
    data = list(range(n))
    random.Random(seed).shuffle(data)
    return data


def _push_then_pop(module: Any, data: list[int]) -> Callable[[], object]:
    push, pop = module.heappush, module.heappop

    def run() -> list[int]:
        heap: list[int] = []
        for x in data:
            push(heap, x)
        return [pop(heap) for _ in range(len(data))]

    return run


@export_benchmark("heap", group="algorithms")
def bench_heap(ctx: BenchContext) -> list[BenchRow]:
    """Pure-Python heap vs heapq (C): heapify, push/pop sequence, nsmallest."""
    rows = []
    for n in [1000, 10000] if ctx.quick else [1000, 10000, 100000]:
        data = _shuffled(n)
        size = f"n={n}"
        rows.append(
            compare(
                ctx,
                "heapify",
                size,
                lambda d=data: ours.heapify(d.copy()),
                lambda d=data: heapq.heapify(d.copy()),
                "heapq",
            )
        )
        rows.append(
            compare(
                ctx,
                "n pushes + n pops",
                size,
                _push_then_pop(ours, data),
                _push_then_pop(heapq, data),
                "heapq",
            )
        )
        rows.append(
            compare(
                ctx,
                "nsmallest(10)",
                size,
                lambda d=data: ours.nsmallest(10, d),
                lambda d=data: heapq.nsmallest(10, d),
                "heapq",
            )
        )
    return rows


def _naive_max(nums: list[int], k: int) -> list[int]:
    return [max(nums[i : i + k]) for i in range(len(nums) - k + 1)]


@export_benchmark("sliding-window-max", group="algorithms")
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


@export_benchmark("max-gap", group="algorithms")
def bench_max_gap(ctx: BenchContext) -> list[BenchRow]:
    """Bucket method (pure Python, O(n)) vs sorted() (C, O(n log n)) plus a pass."""
    rows = []
    rng = random.Random(0)
    for n in [10000, 100000] if ctx.quick else [10000, 100000, 1000000]:
        nums = [rng.randrange(10**9) for _ in range(n)]
        rows.append(
            compare(
                ctx,
                "buckets vs sorting",
                f"n={n}",
                lambda d=nums: max_gap(d),
                lambda d=nums: sorted_max_gap(d),
                "sorted()",
            )
        )
    return rows


@export_benchmark("knapsack", group="algorithms")
def bench_knapsack(ctx: BenchContext) -> list[BenchRow]:
    """1-D reverse-iteration DP vs the 2-D table (value only, and with item reconstruction)."""
    rows = []
    rng = random.Random(0)
    for n, cap in [(50, 1000)] if ctx.quick else [(50, 1000), (100, 5000)]:
        vols = [rng.randint(1, cap // 4) for _ in range(n)]
        vals = [rng.randint(1, 1000) for _ in range(n)]
        size = f"N={n} V={cap}"
        rows.append(
            compare(
                ctx,
                "value",
                size,
                lambda v=vols, w=vals, c=cap: knapsack_01_1d(v, w, c),
                lambda v=vols, w=vals, c=cap: knapsack_01_table(v, w, c),
                "2-D table",
            )
        )
        rows.append(
            compare(
                ctx,
                "value + items",
                size,
                lambda v=vols, w=vals, c=cap: knapsack_01_1d(v, w, c, return_items=True),
                lambda v=vols, w=vals, c=cap: knapsack_01_table(v, w, c, return_items=True),
                "2-D table",
            )
        )
    return rows
