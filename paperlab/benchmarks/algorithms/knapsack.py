"""0/1 knapsack benchmark (note J5): the 1-D reverse-iteration DP against the 2-D table (both
pure Python, O(N V)). Ratios are ours / reference.
"""

from __future__ import annotations

import random

from paperlab.algorithms import knapsack_01_1d, knapsack_01_table
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark


@export_benchmark("knapsack", group="algorithms", note="J5")
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
