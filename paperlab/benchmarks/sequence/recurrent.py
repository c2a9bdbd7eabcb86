"""LSTM/GRU benchmark (notes C1-C2): paperlab's LSTM and GRU against ``torch.nn.LSTM``/``GRU``.

``lstm-gru``: forward + backward with the same weights against torch's fused C++/oneDNN/cuDNN
kernels. The ratio (ours / torch) says how close a readable implementation comes. Rows
``fwd+bwd`` use the default hand-written BPTT (``sequence/bptt.py``); rows ``fwd+bwd
(autograd)`` the autograd definition, to show what writing the backward out buys.
"""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.registry import export_benchmark
from paperlab.sequence.recurrent import GRU, LSTM


@export_benchmark("lstm-gru", group="sequence", note="C2")
def bench_lstm_gru(ctx: BenchContext) -> list[BenchRow]:
    """LSTM and GRU forward+backward, ours vs torch.nn, float32, B=16, input = hidden size."""
    batch = 16
    cases = [(32, 64)] if ctx.quick else [(32, 64), (128, 64), (128, 256)]
    g = torch.Generator().manual_seed(0)
    rows = []
    for ours_cls, ref_cls in ((LSTM, torch.nn.LSTM), (GRU, torch.nn.GRU)):
        for backward, label in (("bptt", ""), ("autograd", " (autograd)")):
            for steps, hidden in cases:
                ref = ref_cls(hidden, hidden).to(ctx.device)
                ours = ours_cls(hidden, hidden, backward=backward).to(ctx.device)
                ours.load_state_dict(ref.state_dict())
                x = torch.randn(steps, batch, hidden, generator=g).to(ctx.device)

                def run(module: torch.nn.Module, x: torch.Tensor = x) -> None:
                    out, _ = module(x)
                    out.sum().backward()

                rows.append(compare(ctx, f"{ours_cls.__name__} fwd+bwd{label}",
                                    f"T={steps} H={hidden}", lambda m=ours: run(m),
                                    lambda m=ref: run(m), f"torch.nn.{ours_cls.__name__}"))
    return rows
