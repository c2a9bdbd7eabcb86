"""FLASH benchmark (note B5).

A FLASH layer (``gau.py``, chunk 256, S = 128, expansion 2) forward + backward against a
softmax Transformer encoder layer (``torch.nn.TransformerEncoderLayer``, C = 256, 4 heads, MLP
4C, fused SDPA inside: the fastest reference we have), both causal, B = 1. FLASH replaces
attention + MLP, so the two are compared layer for layer.
"""

from __future__ import annotations

import torch

from paperlab.attention.gau import FLASH
from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark


@export_benchmark("flash", group="attention", note="B5")
def bench_flash(ctx: BenchContext) -> list[BenchRow]:
    """Causal FLASH layer fwd+bwd vs torch.nn.TransformerEncoderLayer, C=256."""
    c = 256
    sizes = [1024, 2048] if ctx.quick else [1024, 2048, 4096, 8192]
    torch.manual_seed(0)
    flash = FLASH(c, causal=True, chunk_size=256).to(ctx.device)
    ref = torch.nn.TransformerEncoderLayer(c, 4, 4 * c, dropout=0.0, batch_first=True,
                                           norm_first=True).to(ctx.device)
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in sizes:
        x = torch.randn(1, n, c, generator=g).to(ctx.device).requires_grad_()
        mask = torch.nn.Transformer.generate_square_subsequent_mask(n, device=ctx.device)

        def ours(x=x):
            flash(x).sum().backward()

        def reference(x=x, mask=mask):
            ref(x, src_mask=mask, is_causal=True).sum().backward()

        rows.append(compare(ctx, f"causal layer fwd+bwd B=1 C={c}", f"N={n}", ours, reference,
                            "torch.nn.TransformerEncoderLayer"))
    return rows
