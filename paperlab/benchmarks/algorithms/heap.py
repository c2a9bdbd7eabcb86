"""Heap benchmark (note J6): our pure-Python heap against ``heapq`` (C).

heapify, n pushes then n pops, ``nsmallest(10)``. Expect a large ratio: the same algorithm,
interpreted vs compiled. Ratios are ours / reference: above 1 means the reference is faster.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from paperlab.algorithms import heap as ours
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
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


@export_benchmark("heap", group="algorithms", note="J6")
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
