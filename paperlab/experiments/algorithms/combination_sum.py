"""J4 combination sum I/II: ordered, pruned backtracking visits a small fraction of the tree.

Search-tree nodes are counted exactly (deterministic) for three searches over a sweep of
targets:

- *brute force*: every candidate multiset with counts ``0..target // c`` (I), or every subset
  of positions, ``2^m`` (II), each checked for its sum;
- *ordered, unpruned*: the note's ordered backtracking, entering children that overshoot;
- *ordered, pruned*: with sorted candidates, the loop stops at the first ``c > remaining``.

All three return the same combinations (checked against the brute-force enumeration). Wall
times of the three are in the figure.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence

from paperlab.algorithms import combination_search
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.timing import fit_power_law, interleaved_times


def brute_sum1(candidates: Sequence[int], target: int) -> list[list[int]]:
    """Every vector of counts (each ``0 .. target // c``) whose weighted sum is ``target``."""
    values = sorted(set(candidates))
    found = []
    for counts in itertools.product(*(range(target // c + 1) for c in values)):
        if sum(c * k for c, k in zip(values, counts, strict=True)) == target:
            found.append([c for c, k in zip(values, counts, strict=True) for _ in range(k)])
    return sorted(found)


def brute_sum2_table(candidates: Sequence[int]) -> dict[int, list[list[int]]]:
    """All ``2^m`` subsets of positions, grouped by sum (duplicates merged): target -> answer."""
    by_sum: dict[int, set[tuple[int, ...]]] = defaultdict(set)
    for r in range(len(candidates) + 1):
        for positions in itertools.combinations(range(len(candidates)), r):
            combo = tuple(sorted(candidates[p] for p in positions))
            by_sum[sum(combo)].add(combo)
    return {t: sorted(list(c) for c in combos) for t, combos in by_sum.items()}


@export_experiment(
    "combination-sum",
    note="J4 combination sum I/II (ordered backtracking, pruning)",
    title="Combination sum: ordered, pruned backtracking against brute-force enumeration",
    tags=("algorithms", "backtracking"),
)
def combination_sum_experiment(ctx: Context) -> Result:
    """Count search nodes of pruned / unpruned / brute-force search over a target sweep."""
    rng = ctx.rng()
    cands1 = sorted(rng.sample(range(2, 31), 6))
    targets1 = ctx.pick(
        smoke=[10, 20, 30], quick=[10, 20, 30, 40, 50, 60], full=[10, 20, 30, 40, 50, 60, 80, 100]
    )
    m = ctx.pick(smoke=10, quick=16, full=18)
    cands2 = [rng.randint(1, 12) for _ in range(m)]
    targets2 = ctx.pick(
        smoke=[5, 10, 15, 20],
        quick=[5, 10, 15, 20, 25, 30, 35, 40],
        full=[5, 10, 15, 20, 25, 30, 35, 40, 50],
    )

    mismatches = 0
    pruned1, unpruned1, brute1 = [], [], []
    timed = {}
    for t in ctx.track(targets1, label="sum I targets"):
        p = combination_search(cands1, t, reuse=True)
        u = combination_search(cands1, t, reuse=True, prune=False)
        mismatches += not (p.combinations == u.combinations == brute_sum1(cands1, t))
        pruned1.append(p.nodes)
        unpruned1.append(u.nodes)
        brute1.append(math.prod(t // c + 1 for c in cands1))
        timed[f"pruned {t}"] = lambda t=t: combination_search(cands1, t, reuse=True)
        timed[f"unpruned {t}"] = lambda t=t: combination_search(cands1, t, reuse=True, prune=False)
        timed[f"brute {t}"] = lambda t=t: brute_sum1(cands1, t)

    table2 = brute_sum2_table(cands2)
    pruned2, unpruned2 = [], []
    for t in ctx.track(targets2, label="sum II targets"):
        p = combination_search(cands2, t, reuse=False)
        u = combination_search(cands2, t, reuse=False, prune=False)
        mismatches += not (p.combinations == u.combinations == table2.get(t, []))
        pruned2.append(p.nodes)
        unpruned2.append(u.nodes)

    times = interleaved_times(timed, repeats=ctx.pick(smoke=3, quick=5, full=7), min_time=0.002)
    t_pruned = [times[f"pruned {t}"] for t in targets1]
    t_unpruned = [times[f"unpruned {t}"] for t in targets1]
    t_brute = [times[f"brute {t}"] for t in targets1]

    to_brute1 = pruned1[-1] / brute1[-1]
    to_brute2 = pruned2[-1] / 2**m
    prune_ratio1 = sum(pruned1) / sum(unpruned1)
    prune_ratio2 = sum(pruned2) / sum(unpruned2)
    exp_pruned = fit_power_law(targets1, pruned1)
    exp_brute = fit_power_law(targets1, brute1)

    plt = pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
    ax1.semilogy(targets1, brute1, "x--", label="brute force (count vectors)")
    ax1.semilogy(targets1, unpruned1, "s-", label="ordered, unpruned")
    ax1.semilogy(targets1, pruned1, "o-", label="ordered, pruned")
    ax1.set_title(f"I (reuse), candidates {cands1}")
    ax2.semilogy(targets2, [2**m] * len(targets2), "x--", label=f"brute force (2^{m} subsets)")
    ax2.semilogy(targets2, unpruned2, "s-", label="ordered, unpruned")
    ax2.semilogy(targets2, pruned2, "o-", label="ordered, pruned")
    ax2.set_title(f"II (each once), {m} candidates in 1..12")
    for ax in (ax1, ax2):
        ax.set_xlabel("target")
        ax.set_ylabel("nodes visited / candidates checked")
        ax.legend(fontsize=8)
    ax3.semilogy(targets1, t_brute, "x--", label="brute force")
    ax3.semilogy(targets1, t_unpruned, "s-", label="ordered, unpruned")
    ax3.semilogy(targets1, t_pruned, "o-", label="ordered, pruned")
    ax3.set_xlabel("target")
    ax3.set_ylabel("seconds (median)")
    ax3.set_title("I: wall time")
    ax3.legend(fontsize=8)
    ctx.savefig(fig, "combination_sum_nodes")

    claims = [
        Claim.check(
            f"I: pruned ordered search visits < 10% of the brute-force candidates "
            f"(nodes / count vectors at target {targets1[-1]})",
            round(to_brute1, 5),
            "<",
            0.1,
        ),
        Claim.check(
            f"II: pruned ordered search visits < 10% of the 2^{m} subsets "
            f"(nodes / subsets at target {targets2[-1]})",
            round(to_brute2, 5),
            "<",
            0.1,
        ),
        Claim.check(
            "I: the c > remaining cut at least halves the ordered search "
            "(pruned / unpruned nodes over the target sweep)",
            round(prune_ratio1, 4),
            "<",
            0.5,
        ),
        Claim.check(
            "II: the c > remaining cut at least halves the ordered search "
            "(pruned / unpruned nodes over the target sweep)",
            round(prune_ratio2, 4),
            "<",
            0.5,
        ),
        Claim.check(
            "pruned, unpruned and brute-force searches return the same combinations "
            "(mismatching targets)",
            mismatches,
            "==",
            0,
        ),
    ]
    return Result(
        summary=(
            f"I: at target {targets1[-1]} pruned search visits {pruned1[-1]} nodes vs "
            f"{unpruned1[-1]} unpruned vs {brute1[-1]} brute-force vectors (node growth exponent "
            f"{exp_pruned:.1f} vs {exp_brute:.1f}); II: {pruned2[-1]} vs {unpruned2[-1]} vs "
            f"2^{m}; pruning keeps {prune_ratio1:.0%} (I) / {prune_ratio2:.0%} (II) of the "
            f"nodes; {mismatches} mismatches"
        ),
        metrics={
            "candidates_1": cands1,
            "targets_1": targets1,
            "pruned_nodes_1": pruned1,
            "unpruned_nodes_1": unpruned1,
            "brute_force_vectors_1": brute1,
            "candidates_2": cands2,
            "targets_2": targets2,
            "pruned_nodes_2": pruned2,
            "unpruned_nodes_2": unpruned2,
            "brute_force_subsets_2": 2**m,
            "pruned_seconds_1": t_pruned,
            "unpruned_seconds_1": t_unpruned,
            "brute_seconds_1": t_brute,
            "node_exponent_pruned_1": exp_pruned,
            "node_exponent_brute_1": exp_brute,
            "mismatches": mismatches,
        },
        claims=claims,
    )
