"""J3 maximum gap: the bucket method is linear in n and agrees with sorting.

Random integers in ``[0, 10^9)`` at growing n. Wall times (interleaved over every
(method, n) pair, median of rounds) give the fitted exponent against n; the element
comparisons, counted exactly with ``CountingInt``, show the linear work deterministically:
a bounded number per element for the buckets (min, max, one or two per bucket update),
``~log2 n`` per element for sorting. The answers equal the sorted-order answer on every
input, including small random lists full of duplicates and negative numbers.

The reference, ``sorted`` plus one pass, runs in C and is faster in wall time at these sizes
despite its O(n log n): the claim is about growth, and the figure shows both.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from paperlab.algorithms import max_gap
from paperlab.experiments.algorithms.heap import CountingInt
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.timing import fit_power_law, interleaved_times


def sorted_max_gap(nums: Sequence[int]) -> int:
    """The O(n log n) reference: sort, then the largest difference of neighbours."""
    return max((b - a for a, b in pairwise(sorted(nums))), default=0)


def _comparisons(fn: object, nums: list[int]) -> int:
    counted = [CountingInt(x) for x in nums]
    CountingInt.reset()
    fn(counted)  # type: ignore[operator]
    return CountingInt.comparisons


@export_experiment(
    "max-gap",
    note="J3 maximum gap (bucket / pigeonhole idea)",
    title="Maximum gap in linear time with buckets, equal to sorting's answer",
    tags=("algorithms", "max-gap"),
)
def max_gap_experiment(ctx: Context) -> Result:
    """Time and count comparisons of the bucket method against sorting over growing n."""
    sizes = ctx.pick(
        smoke=[1000, 2000, 4000, 8000],
        quick=[2000, 4000, 8000, 16000, 32000, 64000],
        full=[2000, 8000, 32000, 128000, 512000],
    )
    rng = ctx.rng()
    mismatches = 0
    bucket_cmp, sort_cmp = [], []
    timed = {}
    for n in ctx.track(sizes, label="sizes"):
        nums = [rng.randrange(10**9) for _ in range(n)]
        mismatches += max_gap(nums) != sorted_max_gap(nums)
        bucket_cmp.append(_comparisons(max_gap, nums))
        sort_cmp.append(_comparisons(sorted_max_gap, nums))
        timed[f"buckets {n}"] = lambda d=nums: max_gap(d)
        timed[f"sorted {n}"] = lambda d=nums: sorted_max_gap(d)
    for _ in range(ctx.pick(smoke=200, quick=2000, full=10000)):
        small = [rng.randint(-20, 20) for _ in range(rng.randint(0, 30))]
        mismatches += max_gap(small) != sorted_max_gap(small)

    times = interleaved_times(timed, repeats=ctx.pick(smoke=3, quick=7, full=7), min_time=0.004)
    t_ours = [times[f"buckets {n}"] for n in sizes]
    t_sort = [times[f"sorted {n}"] for n in sizes]
    exp_ours = fit_power_law(sizes, t_ours)
    exp_sort = fit_power_law(sizes, t_sort)
    per_item = max(c / n for c, n in zip(bucket_cmp, sizes, strict=True))
    sort_per_item = [c / n for c, n in zip(sort_cmp, sizes, strict=True)]

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.loglog(sizes, t_ours, "o-", label=f"buckets (pure Python), slope {exp_ours:.2f}")
    ax1.loglog(sizes, t_sort, "s-", label=f"sorted() (C) + pass, slope {exp_sort:.2f}")
    ax1.set_xlabel("n")
    ax1.set_ylabel("seconds (median)")
    ax1.set_title("wall time")
    ax1.legend(fontsize=8)
    ax2.semilogx(
        sizes, [c / n for c, n in zip(bucket_cmp, sizes, strict=True)], "o-", label="buckets"
    )
    ax2.semilogx(sizes, sort_per_item, "s-", label="sorting (timsort)")
    ax2.set_xlabel("n")
    ax2.set_ylabel("element comparisons / n")
    ax2.set_title("comparisons per element (exact counts)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(sizes, [str(x) for x in sizes])
        ax.minorticks_off()
    fig.tight_layout()
    ctx.savefig(fig, "max_gap_growth")

    claims = [
        Claim.check(
            "the bucket method's time grows linearly: fitted exponent vs n < 1.2",
            round(exp_ours, 3),
            "<",
            1.2,
        ),
        Claim.check(
            "the bucket method makes a bounded number of comparisons per element "
            "(max over n, <= 4: min, max and two per bucket update)",
            round(per_item, 4),
            "<=",
            4.0,
        ),
        Claim.check(
            "the bucket method's answer equals sorting's on every input (mismatches)",
            mismatches,
            "==",
            0,
        ),
    ]
    return Result(
        summary=(
            f"n={sizes[0]}..{sizes[-1]}: buckets time exponent {exp_ours:.2f}, "
            f"<= {per_item:.2f} comparisons/element; sorting {sort_per_item[0]:.1f}->"
            f"{sort_per_item[-1]:.1f} comparisons/element, exponent {exp_sort:.2f}, "
            f"sorted() (C) {t_ours[-1] / t_sort[-1]:.1f}x faster in wall time at n={sizes[-1]}; "
            f"{mismatches} mismatches"
        ),
        metrics={
            "sizes": sizes,
            "buckets_seconds": t_ours,
            "sorted_seconds": t_sort,
            "buckets_time_exponent": exp_ours,
            "sorted_time_exponent": exp_sort,
            "buckets_comparisons": bucket_cmp,
            "sorted_comparisons": sort_cmp,
            "mismatches": mismatches,
        },
        claims=claims,
    )
