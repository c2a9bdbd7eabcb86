"""Recurrent-model benchmarks: paperlab's LSTM/GRU vs torch's, and S4D convolution vs recurrence.

``lstm-gru``: forward + backward of paperlab's LSTM and GRU (a Python loop over time) against
``torch.nn.LSTM``/``GRU`` (fused C++/cuDNN kernels) with the same weights. Ours is expected to
be slower; the ratio says by how much.

``s4d-conv``: one S4D layer's SSM over a sequence of length L, computed as a convolution
(Vandermonde kernel + FFT, O(L log L), all positions at once) against the recurrence (one state
update per token, O(L) but sequential): the reason S4 trains by convolution.
"""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark
from paperlab.sequence.recurrent import GRU, LSTM
from paperlab.sequence.s4 import S4DLayer, fft_conv, s4d_recurrence


@export_benchmark("lstm-gru", group="sequence", note="C2")
def bench_lstm_gru(ctx: BenchContext) -> list[BenchRow]:
    """LSTM and GRU forward+backward, ours vs torch.nn, float32, B=16, input = hidden size."""
    batch = 16
    cases = [(32, 64)] if ctx.quick else [(32, 64), (128, 64), (128, 256)]
    g = torch.Generator().manual_seed(0)
    rows = []
    for ours_cls, ref_cls in ((LSTM, torch.nn.LSTM), (GRU, torch.nn.GRU)):
        for steps, hidden in cases:
            ref = ref_cls(hidden, hidden).to(ctx.device)
            ours = ours_cls(hidden, hidden).to(ctx.device)
            ours.load_state_dict(ref.state_dict())
            x = torch.randn(steps, batch, hidden, generator=g).to(ctx.device)

            def run(module: torch.nn.Module, x: torch.Tensor = x) -> None:
                out, _ = module(x)
                out.sum().backward()

            rows.append(compare(ctx, f"{ours_cls.__name__} fwd+bwd", f"T={steps} H={hidden}",
                                lambda m=ours: run(m), lambda m=ref: run(m),
                                f"torch.nn.{ours_cls.__name__}"))
    return rows


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
