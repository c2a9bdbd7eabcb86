"""Mamba benchmarks (note C3): the chunked parallel selective scan against the sequential loop,
and our Mamba model (which runs the chunked scan) against HF transformers' MambaModel (its
slow, pure-PyTorch path)."""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.errors import require
from paperlab.registry import export_benchmark
from paperlab.sequence.mamba import MambaLM, config_from_hf, load_hf_mamba_state_dict
from paperlab.sequence.selective_scan import selective_scan_parallel, selective_scan_sequential
from paperlab.sequence.selective_scan_parts import auto_chunk


@export_benchmark("selective-scan", group="sequence", note="C3")
def bench_selective_scan(ctx: BenchContext) -> list[BenchRow]:
    """Parallel (chunked two-level) vs sequential selective scan, batch 1, dim 128, N 16,
    D, z, delta_bias and softplus on, forward without grad, the default chunk size (noted per
    row); reference = the sequential loop."""
    b, d, n = 1, 128, 16
    sizes = [256, 512, 1024, 2048] if ctx.quick else [256, 512, 1024, 2048, 4096, 8192]
    g = torch.Generator().manual_seed(0)
    rows = []
    for length in sizes:
        u, delta, z = (torch.randn(b, d, length, generator=g).to(ctx.device) for _ in range(3))
        A = -torch.rand(d, n, generator=g).add(0.1).mul(4).to(ctx.device)
        B, C = (torch.randn(b, n, length, generator=g).to(ctx.device) for _ in range(2))
        D, bias = (torch.randn(d, generator=g).to(ctx.device) for _ in range(2))
        kw = dict(delta_bias=bias, delta_softplus=True)

        def ours(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, kw=kw):
            with torch.no_grad():
                return selective_scan_parallel(u, delta, A, B, C, D, z, **kw)

        def reference(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, kw=kw):
            with torch.no_grad():
                return selective_scan_sequential(u, delta, A, B, C, D, z, **kw)

        chunk = auto_chunk(b, d, n, length)
        rows.append(compare(ctx, f"parallel scan (B={b}, D={d}, N={n}) float32", f"L={length}",
                            ours, reference, "paperlab selective_scan_sequential",
                            note=f"chunks of C={chunk}, K={-(-length // chunk)}"))
    return rows


@export_benchmark("mamba-block", group="sequence", note="C3")
def bench_mamba_block(ctx: BenchContext) -> list[BenchRow]:
    """MambaLM.features vs HF MambaModel (slow path, no cache), d_model 64, 2 layers, N 16,
    the same weights, batch 1, forward without grad."""
    transformers = require("transformers", extra="hf", purpose="benchmark 'mamba-block'")
    hc = transformers.MambaConfig(
        vocab_size=256, hidden_size=64, state_size=16, num_hidden_layers=2, expand=2,
        conv_kernel=4, use_mambapy=False, use_associative_scan=False,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.MambaModel(hc).eval().to(ctx.device)
    ours = MambaLM(config_from_hf(hc)).eval()
    load_hf_mamba_state_dict(ours, hf.state_dict())
    ours.to(ctx.device)
    sizes = [256, 1024] if ctx.quick else [256, 1024, 4096]
    g = torch.Generator().manual_seed(1)
    rows = []
    for length in sizes:
        tokens = torch.randint(0, 256, (1, length), generator=g).to(ctx.device)

        def run_ours(tokens=tokens):
            with torch.no_grad():
                return ours.features(tokens)

        def run_hf(tokens=tokens):
            with torch.no_grad():
                return hf(tokens, use_cache=False).last_hidden_state

        rows.append(compare(ctx, "Mamba 2x(d=64, N=16) forward float32", f"L={length}",
                            run_ours, run_hf, "transformers MambaModel (slow path)"))
    return rows
