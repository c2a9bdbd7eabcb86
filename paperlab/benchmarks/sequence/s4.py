"""S4D benchmark (note C3): convolution against recurrence.

``s4d-conv``: one S4D layer's SSM over a sequence of length L, computed as a convolution
(Vandermonde kernel + FFT, O(L log L), all positions at once) against the recurrence (one
state update per token, O(L) but sequential): the reason S4 trains by convolution.
"""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark
from paperlab.sequence.s4 import S4DLayer, fft_conv, s4d_recurrence


@export_benchmark("s4d-conv", group="sequence", note="C3")
def bench_s4d_conv(ctx: BenchContext) -> list[BenchRow]:
    """S4D SSM by FFT convolution (ours) vs by recurrence, H=64, d_state=64, B=4, float32."""
    lengths = [1024, 4096] if ctx.quick else [1024, 4096, 16384]
    torch.manual_seed(0)
    layer = S4DLayer(64, 64).to(ctx.device)
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.no_grad():
        A, B, C, dt = layer.ssm()
        for length in lengths:
            u = torch.randn(4, 64, length, generator=g).to(ctx.device)

            def conv(u: torch.Tensor = u) -> torch.Tensor:
                return fft_conv(u, layer.kernel(u.shape[-1]))

            def recurrence(u: torch.Tensor = u) -> torch.Tensor:
                return s4d_recurrence(u, A, B, C, dt)[0]

            rows.append(compare(ctx, "S4D conv (kernel + FFT)", f"L={length}", conv, recurrence,
                                "S4D recurrence (paperlab, token loop)"))
    return rows
