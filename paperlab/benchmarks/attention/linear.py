"""Linear-attention benchmark (note B1).

Causal chunked linear attention against torch's fused causal ``scaled_dot_product_attention``
at D = 64. The ratio falls with n because one is O(n) and the other O(n^2); the case label
carries the fitted growth exponents (time ~ n^b over the sweep's three largest n) and the
crossover length where the ratio drops below 1.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from paperlab.attention import linear_attention
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark
from paperlab.timing import crossover, describe_crossover, growth_exponent


@export_benchmark("linear-attention", group="attention", note="B1")
def bench_linear_attention(ctx: BenchContext) -> list[BenchRow]:
    """Causal chunked linear attention vs fused causal SDPA, B=1 H=4 D=64 (forward)."""
    b, h, d = 1, 4, 64
    sizes = [512, 1024, 2048, 4096] if ctx.quick else [512, 1024, 2048, 4096, 8192, 16384]
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.no_grad():
        for n in sizes:
            q, k, v = (torch.randn(b, h, n, d, generator=g).to(ctx.device) for _ in range(3))

            def ours(q=q, k=k, v=v):
                return linear_attention(q, k, v, causal=True, chunk_size=64)

            def reference(q=q, k=k, v=v):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

            rows.append(compare(ctx, "", f"N={n}", ours, reference,
                                "torch scaled_dot_product_attention(is_causal=True)"))
    ours_t = [r.ours_s for r in rows]
    ref_t = [r.reference_s for r in rows]
    label = (
        f"causal fwd B={b} H={h} D={d}, chunk 64 | growth n^{growth_exponent(sizes, ours_t):.2f} "
        f"vs n^{growth_exponent(sizes, ref_t):.2f}, crossover N"
        f"{describe_crossover(crossover(sizes, ours_t, ref_t), sizes)}"
    )
    return [dataclasses.replace(r, case=label) for r in rows]
