"""J2 sliding-window maximum: the monotonic deque is O(n) whatever k, the naive scan O(n k).

At a fixed length n, the window size k is swept. Comparisons are counted exactly with
``CountingInt`` (deterministic): the deque makes fewer than 2 per element at every k, the
naive scan makes ``(n - k + 1)(k - 1)``. Wall times (interleaved over every (method, k) pair,
median of rounds) give the fitted growth exponent against k: about 0 for the deque, about 1
for the naive scan. Both return the same maxima.

The sweep starts at k = 16: the naive scan also pays a fixed cost per window (slicing, loop
set-up, append) worth several element comparisons, which at smaller k dilutes its measured
exponent (about 0.7 over k = 8..512 on the development machine) without changing its O(n k)
growth.
"""

from __future__ import annotations

from collections.abc import Sequence

from paperlab.algorithms import sliding_window_max
from paperlab.experiments.algorithms.heap import CountingInt
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.timing import fit_power_law, interleaved_times


def naive_window_max(nums: Sequence[int], k: int) -> list[int]:
    """The O(n k) reference: scan every window, comparing each element with the running max."""
    out = []
    for i in range(len(nums) - k + 1):
        best = nums[i]
        for x in nums[i + 1 : i + k]:
            if x > best:
                best = x
        out.append(best)
    return out


def _comparisons(fn: object, nums: list[int], k: int) -> int:
    counted = [CountingInt(x) for x in nums]
    CountingInt.reset()
    fn(counted, k)  # type: ignore[operator]
    return CountingInt.comparisons


@export_experiment(
    "sliding-window-max",
    note="J2 sliding-window maximum (monotonic deque)",
    title="Sliding-window maximum: the deque is O(n) in k, the naive scan O(n k)",
    tags=("algorithms", "sliding-window"),
)
def sliding_window_max_experiment(ctx: Context) -> Result:
    """Sweep k at fixed n: count comparisons and time the deque against the naive scan."""
    n = ctx.pick(smoke=1000, quick=4000, full=20000)
    ks = ctx.pick(
        smoke=[16, 32, 64, 128],
        quick=[16, 32, 64, 128, 256, 512],
        full=[16, 32, 64, 128, 256, 512, 1024, 2048],
    )
    rng = ctx.rng()
    nums = [rng.randrange(-(10**6), 10**6) for _ in range(n)]

    mismatches = 0
    deque_cmp, naive_cmp = [], []
    timed = {}
    for k in ctx.track(ks, label="window sizes"):
        mismatches += sliding_window_max(nums, k) != naive_window_max(nums, k)
        deque_cmp.append(_comparisons(sliding_window_max, nums, k))
        naive_cmp.append(_comparisons(naive_window_max, nums, k))
        timed[f"deque {k}"] = lambda k=k: sliding_window_max(nums, k)
        timed[f"naive {k}"] = lambda k=k: naive_window_max(nums, k)
    for _ in range(ctx.pick(smoke=50, quick=300, full=1000)):  # small random cases too
        m = rng.randint(1, 40)
        xs = [rng.randint(-5, 5) for _ in range(m)]
        k = rng.randint(1, m)
        mismatches += sliding_window_max(xs, k) != naive_window_max(xs, k)

    times = interleaved_times(timed, repeats=ctx.pick(smoke=5, quick=7, full=9), min_time=0.004)
    t_deque = [times[f"deque {k}"] for k in ks]
    t_naive = [times[f"naive {k}"] for k in ks]
    exp_deque = fit_power_law(ks, t_deque)
    exp_naive = fit_power_law(ks, t_naive)
    max_per_item = max(c / n for c in deque_cmp)
    exp_naive_cmp = fit_power_law(ks, naive_cmp)

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.loglog(ks, t_deque, "o-", label=f"monotonic deque, slope {exp_deque:.2f}")
    ax1.loglog(ks, t_naive, "s-", label=f"naive O(nk) scan, slope {exp_naive:.2f}")
    ax1.set_xlabel("window size k")
    ax1.set_ylabel("seconds (median)")
    ax1.set_title(f"wall time at n = {n}")
    ax1.legend(fontsize=8)
    ax2.loglog(ks, [c / n for c in deque_cmp], "o-", label="monotonic deque")
    ax2.loglog(ks, [c / n for c in naive_cmp], "s-", label="naive scan")
    ax2.axhline(2, color="grey", ls=":", lw=0.8, label="2 per element")
    ax2.set_xlabel("window size k")
    ax2.set_ylabel("comparisons / n")
    ax2.set_title("comparisons per element (exact counts)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(ks, [str(x) for x in ks])
        ax.minorticks_off()
    fig.tight_layout()
    ctx.savefig(fig, "sliding_window_growth")

    claims = [
        Claim.check(
            "the deque's time is flat in k: |fitted exponent of time vs k| < 0.3",
            round(abs(exp_deque), 3),
            "<",
            0.3,
        ),
        Claim.check(
            "the naive scan's time grows with k: fitted exponent of time vs k > 0.7",
            round(exp_naive, 3),
            ">",
            0.7,
        ),
        Claim.check(
            "the deque makes fewer than 2 comparisons per element at every k (max over k)",
            round(max_per_item, 4),
            "<",
            2.0,
        ),
        Claim.check(
            "the deque and the naive scan return the same maxima (mismatching cases)",
            mismatches,
            "==",
            0,
        ),
    ]
    return Result(
        summary=(
            f"n={n}, k={ks[0]}..{ks[-1]}: deque time exponent {exp_deque:.2f} "
            f"(<= {max_per_item:.2f} comparisons/element), naive exponent {exp_naive:.2f} "
            f"(comparisons exponent {exp_naive_cmp:.2f}); at k={ks[-1]} the deque is "
            f"{t_naive[-1] / t_deque[-1]:.0f}x faster; {mismatches} mismatches"
        ),
        metrics={
            "n": n,
            "k": ks,
            "deque_seconds": t_deque,
            "naive_seconds": t_naive,
            "deque_time_exponent": exp_deque,
            "naive_time_exponent": exp_naive,
            "deque_comparisons": deque_cmp,
            "naive_comparisons": naive_cmp,
            "naive_comparison_exponent": exp_naive_cmp,
            "mismatches": mismatches,
        },
        claims=claims,
    )
