"""Activation-checkpointing benchmark (note I2): ours against ``torch.utils.checkpoint`` and
against no checkpointing.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint as torch_checkpoint
from torch import nn

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark
from paperlab.training.checkpointing import SavedTensorMeter, checkpoint_sequential, sqrt_segments


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
