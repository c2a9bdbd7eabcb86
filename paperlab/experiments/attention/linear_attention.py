"""Experiment ``linear-attention-scaling`` (note B1): removing the softmax makes attention O(n).

Claim 1 -- cost. Causal attention over n tokens (B=1, H=2 heads of D=64) is timed at doubling
lengths: softmax attention (torch's fused SDPA, the fastest softmax we have, and our
written-out function while its n x n score matrix fits) against causal linear attention
(chunked form, chunk 64), which runs to twice the largest length softmax runs at. The growth
exponent b of time ~ n^b, fitted over the three largest lengths each method ran at, is below
1.3 for linear attention and above 1.5 for softmax attention; the crossover length (from which
linear attention stays faster) is measured, and at the largest length both ran linear
attention is faster. Memory is counted, not measured: the largest
intermediate is the (B, H, n, n) score matrix for written-out softmax and, for chunked linear
attention, the (B, H, n/64, D, D+1) chunk states plus (B, H, n, 64) in-chunk scores.

Claim 2 -- the RNN view. The causal recurrent form (one token at a time, a D x Dv state) and
the parallel forms (masked quadratic; chunked) give the same output: max |difference| in
float64 is below 1e-10.

Timing runs on one thread (restored afterwards) so that a busy two-core machine distorts the
growth exponents as little as possible; every size times the methods interleaved and takes
the median.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from paperlab.attention import (
    linear_attention,
    linear_attention_recurrent,
    scaled_dot_product_attention,
)
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.timing import crossover, describe_crossover, growth_exponent, time_sweep

HEADS, HEAD_DIM, CHUNK = 2, 64, 64


def recurrent_vs_parallel(n: int, g: torch.Generator) -> dict[str, float]:
    """Max |recurrent - parallel| (masked quadratic and chunked forms), float64."""
    q, k, v = (torch.randn(1, 2, n, 16, generator=g, dtype=torch.float64) for _ in range(3))
    recurrent = linear_attention_recurrent(q, k, v)
    quadratic = linear_attention(q, k, v, causal=True, chunk_size=n)
    chunked = linear_attention(q, k, v, causal=True, chunk_size=CHUNK)
    return {
        "quadratic": float((recurrent - quadratic).abs().max()),
        "chunked": float((recurrent - chunked).abs().max()),
    }


def _score_bytes(n: int) -> float:
    return HEADS * n * n * 4.0


def _linear_bytes(n: int) -> float:
    chunks = math.ceil(n / CHUNK)
    return HEADS * (chunks * HEAD_DIM * (HEAD_DIM + 1) + n * CHUNK) * 4.0


@export_experiment(
    "linear-attention-scaling",
    note="B1 remove softmax (linear attention)",
    title="Linear attention grows linearly with length; its recurrent form equals the parallel",
    tags=("attention", "linear"),
)
def linear_attention_scaling(ctx: Context) -> Result:
    """Time vs length of softmax and linear attention; recurrent == parallel in float64."""
    sizes = ctx.pick(
        smoke=[128, 256, 512],
        quick=[256, 512, 1024, 2048, 4096, 8192, 16384],
        full=[256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
    )
    sdpa_max = ctx.pick(smoke=512, quick=8192, full=32768)  # the n^2 methods stop earlier
    written_max = ctx.pick(smoke=512, quick=2048, full=8192)
    repeats = ctx.pick(smoke=1, quick=3, full=7)
    g = ctx.generator()

    def make(n: int) -> dict[str, Callable[[], object]]:
        q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM, generator=g) for _ in range(3))
        fns: dict[str, Callable[[], object]] = {
            "linear (chunked)": lambda: linear_attention(q, k, v, causal=True, chunk_size=CHUNK),
        }
        if n <= sdpa_max:
            fns["softmax (torch SDPA)"] = lambda: F.scaled_dot_product_attention(
                q, k, v, is_causal=True
            )
        if n <= written_max:
            fns["softmax (written out)"] = lambda: scaled_dot_product_attention(
                q, k, v, causal=True
            )
        return fns

    with torch.no_grad():
        times = time_sweep(ctx.track(sizes, label="timing"), make, repeats=repeats)
    lin, sdpa = times["linear (chunked)"], times["softmax (torch SDPA)"]
    exponents = {name: growth_exponent(sizes, t) for name, t in times.items()}
    cross = crossover(sizes, lin, sdpa)
    cross_written = crossover(sizes, lin, times["softmax (written out)"])
    both = [i for i, t in enumerate(sdpa) if not math.isnan(t)][-1]  # largest n with both
    speedup = sdpa[both] / lin[both]
    diffs = recurrent_vs_parallel(ctx.pick(smoke=64, quick=256, full=1024), g)
    max_diff = max(diffs.values())

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, t in times.items():
        ax.loglog(sizes, [x * 1e3 for x in t], "o-", label=f"{name}  (n^{exponents[name]:.2f})")
    if not math.isnan(cross):
        ax.axvline(cross, color="grey", ls="--", lw=0.8,
                   label=f"crossover vs SDPA {describe_crossover(cross, sizes)}")
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("ms per causal attention (1 thread)")
    ax.set_title(f"Causal attention, B=1 H={HEADS} D={HEAD_DIM}")
    ax.legend(fontsize=8)
    ax2.loglog(sizes, [_score_bytes(n) / 2**20 for n in sizes], "o-", label="softmax scores")
    ax2.loglog(sizes, [_linear_bytes(n) / 2**20 for n in sizes], "o-",
               label=f"linear: chunk states + scores (C={CHUNK})")
    ax2.set_xlabel("sequence length n")
    ax2.set_ylabel("MiB (largest intermediate, counted)")
    ax2.set_title("Memory of the largest intermediate")
    ax2.legend(fontsize=8)
    ctx.savefig(fig, "linear_attention_scaling")

    metrics = {
        "sizes": list(sizes),
        **{f"ms {name}": [round(x * 1e3, 3) for x in t] for name, t in times.items()},
        **{f"exponent {name}": e for name, e in exponents.items()},
        "crossover_vs_sdpa": cross,
        "crossover_vs_written_out": cross_written,
        "speedup_at_largest_n": speedup,
        "score_matrix_mib": [_score_bytes(n) / 2**20 for n in sizes],
        "linear_intermediate_mib": [_linear_bytes(n) / 2**20 for n in sizes],
        "recurrent_vs_quadratic_max_abs": diffs["quadratic"],
        "recurrent_vs_chunked_max_abs": diffs["chunked"],
    }
    claims = [
        Claim.check(
            "causal linear attention (chunked): time growth exponent over the 3 largest n < 1.3",
            exponents["linear (chunked)"],
            "<",
            1.3,
        ),
        Claim.check(
            "causal softmax attention (torch SDPA): time growth exponent over the 3 largest n "
            "> 1.5",
            exponents["softmax (torch SDPA)"],
            ">",
            1.5,
        ),
        Claim.check(
            f"at the largest n both ran ({sizes[both]}), linear attention is faster than SDPA "
            f"(speed-up SDPA time / linear time)",
            speedup,
            ">",
            1.0,
        ),
        Claim.check(
            "causal recurrent form == parallel forms (quadratic and chunked): "
            "max abs difference in float64",
            max_diff,
            "<",
            1e-10,
        ),
    ]
    summary = (
        f"growth n^{exponents['linear (chunked)']:.2f} (linear) vs "
        f"n^{exponents['softmax (torch SDPA)']:.2f} (SDPA); crossover vs SDPA at n"
        f"{describe_crossover(cross, sizes)} (vs written-out softmax "
        f"{describe_crossover(cross_written, sizes)}); x{speedup:.1f} faster at n={sizes[both]}; "
        f"recurrent vs parallel max diff {max_diff:.1e}"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
