"""Position-encoding benchmarks: paperlab's rotary application against HF transformers'."""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.errors import require
from paperlab.position.rope import apply_rotary, rotary_cos_sin, rotary_inv_freq
from paperlab.registry import export_benchmark


@export_benchmark("rope", group="attention", note="A2")
def bench_rope(ctx: BenchContext) -> list[BenchRow]:
    """apply_rotary on q and k (half-split) vs HF Llama's apply_rotary_pos_emb, B=4 H=8 D=64."""
    llama = require(
        "transformers.models.llama.modeling_llama", extra="hf", purpose="benchmark 'rope'"
    )
    apply_rotary_pos_emb = llama.apply_rotary_pos_emb
    b, h, d = 4, 8, 64
    sizes = [256, 1024] if ctx.quick else [256, 512, 1024, 2048, 4096]
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in sizes:
        q = torch.randn(b, h, n, d, generator=g).to(ctx.device)
        k = torch.randn(b, h, n, d, generator=g).to(ctx.device)
        positions = torch.arange(n, device=ctx.device)[None].expand(b, n)
        cos, sin = rotary_cos_sin(positions, rotary_inv_freq(d))  # (B, N, D) float32, HF's layout

        def ours(q=q, k=k, cos=cos, sin=sin):
            return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        def reference(q=q, k=k, cos=cos, sin=sin):
            return apply_rotary_pos_emb(q, k, cos, sin)

        rows.append(compare(ctx, "q,k half-split float32", f"N={n}", ours, reference,
                            "transformers Llama apply_rotary_pos_emb"))
    return rows
