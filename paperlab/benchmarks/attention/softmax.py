"""Multi-head attention benchmark (note B1's baseline).

``MultiHeadAttention`` forward + backward against ``torch.nn.MultiheadAttention`` (same sizes,
``need_weights=False``), self-attention, plain and causal.
"""

from __future__ import annotations

import torch

from paperlab.attention import MultiHeadAttention
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark


@export_benchmark("mha", group="attention", note="B1")
def bench_mha(ctx: BenchContext) -> list[BenchRow]:
    """MultiHeadAttention fwd+bwd vs torch.nn.MultiheadAttention, B=2 C=256 H=8."""
    b, c, h = 2, 256, 8
    sizes = [256, 512, 1024] if ctx.quick else [256, 512, 1024, 2048, 4096]
    g = torch.Generator().manual_seed(0)
    rows = []
    for causal in (False, True):
        torch.manual_seed(0)
        ours = MultiHeadAttention(c, h, causal=causal).to(ctx.device)
        ref = torch.nn.MultiheadAttention(c, h, batch_first=True).to(ctx.device)
        for n in sizes:
            x = torch.randn(b, n, c, generator=g).to(ctx.device).requires_grad_()
            mask = (
                torch.ones(n, n, dtype=torch.bool, device=ctx.device).triu(1) if causal else None
            )

            def run_ours(x=x, ours=ours):
                ours(x).sum().backward()

            def run_ref(x=x, mask=mask, ref=ref, causal=causal):
                out = ref(x, x, x, need_weights=False, attn_mask=mask, is_causal=causal)[0]
                out.sum().backward()

            case = f"{'causal' if causal else 'full'} self-attention fwd+bwd B={b} C={c} H={h}"
            rows.append(
                compare(ctx, case, f"N={n}", run_ours, run_ref, "torch.nn.MultiheadAttention")
            )
    return rows
