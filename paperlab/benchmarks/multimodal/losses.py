"""Contrastive-loss benchmarks (note D6): the chunked SigLIP loss against the full one.

Forward + backward (gradients for both embeddings, the scale and the bias), float32,
d = 64, chunk 256 (quick: 128), across batch sizes. The reference is our full ``siglip_loss``
(the same formula as open_clip's ``SigLipLoss``, which it equals in the tests). Each row's
note gives the peak-memory ratio chunked / full measured for that size (``peak_bytes``:
CUDA's ``max_memory_allocated``, or ``paperlab.memory``'s allocation tracker on the CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.memory import peak_bytes
from paperlab.multimodal.losses import siglip_loss, siglip_loss_chunked
from paperlab.registry import export_benchmark


@export_benchmark("siglip-chunked", group="multimodal", note="D6")
def bench_siglip_chunked(ctx: BenchContext) -> list[BenchRow]:
    """Chunked vs full SigLIP loss, forward + backward; ratio < 1: chunked is faster."""
    d = 64
    chunk = 128 if ctx.quick else 256
    sizes = [512, 1024, 2048] if ctx.quick else [512, 1024, 2048, 4096, 8192]
    g = torch.Generator().manual_seed(0)
    dev = ctx.device
    rows = []
    for n in sizes:
        image = F.normalize(torch.randn(n, d, generator=g), dim=1).to(dev).requires_grad_()
        text = F.normalize(torch.randn(n, d, generator=g), dim=1).to(dev).requires_grad_()
        scale = torch.tensor(10.0, device=dev, requires_grad=True)
        bias = torch.tensor(-10.0, device=dev, requires_grad=True)
        leaves = (image, text, scale, bias)

        def chunked(leaves=leaves):
            return torch.autograd.grad(siglip_loss_chunked(*leaves, chunk), leaves)

        def full(leaves=leaves):
            return torch.autograd.grad(siglip_loss(*leaves), leaves)

        mem_chunked, _ = peak_bytes(chunked, dev)
        mem_full, _ = peak_bytes(full, dev)
        case = f"SigLIP loss fwd+bwd (d={d}, chunk={chunk}) float32"
        note = f"peak memory chunked/full {mem_chunked / mem_full:.3f}"
        rows.append(compare(ctx, case, f"B={n}", chunked, full, "paperlab siglip_loss (full)",
                            note=note))
    return rows
