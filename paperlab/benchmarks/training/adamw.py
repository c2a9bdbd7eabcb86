"""AdamW benchmark (note I1): our AdamW step against ``torch.optim.AdamW``.
"""

from __future__ import annotations

import torch
from torch import nn

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark
from paperlab.training.adamw import AdamW


def transformer_like_params(
    width: int, layers: int, device: str, generator: torch.Generator
) -> list[nn.Parameter]:
    """Parameters shaped like ``layers`` transformer blocks of ``width`` (attention, MLP, norms),
    each with a random gradient: about ``12 * width**2 * layers`` numbers."""
    shapes = []
    for _ in range(layers):
        shapes += [(3 * width, width), (3 * width,), (width, width), (width,)]  # attention
        shapes += [(4 * width, width), (4 * width,), (width, 4 * width), (width,)]  # MLP
        shapes += [(width,)] * 4  # two layer norms
    params = []
    for shape in shapes:
        p = nn.Parameter(torch.randn(shape, generator=generator).to(device))
        p.grad = torch.randn(shape, generator=generator).to(device) * 1e-2
        params.append(p)
    return params


@export_benchmark("adamw", group="training", note="I1")
def bench_adamw(ctx: BenchContext) -> list[BenchRow]:
    """One AdamW step (lr 1e-3, wd 0.1) over transformer-shaped parameters, ours vs torch."""
    sizes = [(256, 1)] if ctx.quick else [(256, 1), (512, 3)]  # ~0.8M and ~9.5M numbers
    gen = torch.Generator().manual_seed(0)
    rows = []
    for width, layers in sizes:
        for foreach in (True, False):
            ours_p = transformer_like_params(width, layers, ctx.device, gen)
            ref_p = [nn.Parameter(p.detach().clone()) for p in ours_p]
            for p, q in zip(ours_p, ref_p, strict=True):
                q.grad = p.grad.clone()
            ours = AdamW(ours_p, lr=1e-3, weight_decay=0.1, foreach=foreach)
            ref = torch.optim.AdamW(ref_p, lr=1e-3, weight_decay=0.1, foreach=foreach)
            numel = sum(p.numel() for p in ours_p)
            path = "foreach" if foreach else "per-parameter loop"
            rows.append(compare(
                ctx, f"AdamW step, {path}", f"{numel / 1e6:.1f}M params in {len(ours_p)} tensors",
                ours.step, ref.step, f"torch.optim.AdamW(foreach={foreach})",
            ))
    return rows
