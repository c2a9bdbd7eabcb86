"""Performer benchmark (note B3).

Causal FAVOR+ (``performer_attention``, m = 128 features, D = 64) against torch's fused causal
``scaled_dot_product_attention``, forward + backward, B = 1, H = 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperlab.attention.performer import draw_projection, performer_attention
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark


@export_benchmark("performer", group="attention", note="B3")
def bench_performer(ctx: BenchContext) -> list[BenchRow]:
    """Causal FAVOR+ (m=128) fwd+bwd vs fused causal SDPA, B=1 H=4 D=64."""
    b, h, d, m = 1, 4, 64, 128
    sizes = [1024, 2048] if ctx.quick else [1024, 2048, 4096, 8192]
    g = torch.Generator().manual_seed(0)
    w = draw_projection(m, d, generator=g).to(ctx.device)
    rows = []
    for n in sizes:
        q, k, v = (torch.randn(b, h, n, d, generator=g).to(ctx.device).requires_grad_()
                   for _ in range(3))

        def ours(q=q, k=k, v=v):
            performer_attention(q, k, v, features=w, causal=True).sum().backward()

        def reference(q=q, k=k, v=v):
            F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

        rows.append(compare(ctx, f"causal fwd+bwd B={b} H={h} D={d} m={m}", f"N={n}", ours,
                            reference, "torch scaled_dot_product_attention(is_causal=True)"))
    return rows
