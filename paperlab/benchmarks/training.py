"""Training benchmarks (notes I1, I2): our AdamW step against torch.optim.AdamW, and our
activation checkpointing against torch.utils.checkpoint and against no checkpointing."""

from __future__ import annotations

import torch
import torch.utils.checkpoint as torch_checkpoint
from torch import nn

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark
from paperlab.training.adamw import AdamW
from paperlab.training.checkpointing import SavedTensorMeter, checkpoint_sequential, sqrt_segments


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


def _mlp(depth: int, width: int, device: str) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        *[nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)]
    ).to(device)


@export_benchmark("checkpointing", group="training", note="I2")
def bench_checkpointing(ctx: BenchContext) -> list[BenchRow]:
    """Forward + backward of a deep ReLU MLP with sqrt(n) checkpointed segments: ours vs
    torch.utils.checkpoint_sequential, and ours vs no checkpointing (the price of the memory)."""
    depths = [16] if ctx.quick else [16, 36, 64, 100]
    rows = []
    width, batch = 256, 128
    for depth in depths:
        model = _mlp(depth, width, ctx.device)
        x = torch.randn(batch, width, device=ctx.device)
        k = sqrt_segments(depth)

        def ours(model=model, x=x, k=k):
            model.zero_grad(set_to_none=True)
            checkpoint_sequential(model, k, x).square().mean().backward()

        def torch_ref(model=model, x=x, k=k):
            model.zero_grad(set_to_none=True)
            torch_checkpoint.checkpoint_sequential(model, k, x, use_reentrant=False) \
                .square().mean().backward()

        def plain(model=model, x=x):
            model.zero_grad(set_to_none=True)
            model(x).square().mean().backward()

        peaks = []
        for fn in (ours, plain):
            with SavedTensorMeter(exclude=model.parameters()) as meter:
                fn()
            peaks.append(meter.peak)
        size = f"depth {depth}, width {width}, batch {batch}, k={k}"
        rows.append(compare(ctx, "checkpoint_sequential fwd+bwd", size, ours, torch_ref,
                            "torch.utils.checkpoint_sequential(use_reentrant=False)"))
        rows.append(compare(
            ctx, f"checkpointed vs plain fwd+bwd (saved memory {peaks[0] / peaks[1]:.2f}x)",
            size, ours, plain, "no checkpointing",
        ))
    return rows
