"""Maximum-gap benchmark (note J3): buckets (pure Python, O(n)) against ``sorted`` (C,
O(n log n)) plus one pass. Ratios are ours / reference.
"""

from __future__ import annotations

import random

from paperlab.algorithms import max_gap
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.experiments.algorithms.max_gap import sorted_max_gap
from paperlab.registry import export_benchmark


@export_benchmark("max-gap", group="algorithms", note="J3")
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
