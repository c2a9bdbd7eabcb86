"""Experiment ``transnormer-dilution`` (note B4): the two faults of vanilla linear attention.

(1) Attention dilution. On structured inputs (a smooth sequence: x_t a sum of slow sinusoids
of t plus noise, so nearby tokens are similar) and random projections at init, the attention
matrix of each method is read off: softmax(q k^T / sqrt(D)); vanilla linear attention
phi(q) phi(k)^T row-normalised (phi = elu+1, ``linear.py``); NormAttention (the same kernel,
un-normalised, normalised by the output norm -- as a weight matrix it is the linear one up to
a per-row factor, so its locality equals linear attention's); DiagAttention (block-diagonal
softmax). Locality = the mean share of each query's attention mass on keys within distance
r = N/16. The paper: linear attention spreads its mass over far tokens (lower locality than
softmax), and DiagAttention is local.

(2) Unbounded gradients. The vanilla output phi(q)^T S / phi(q)^T z has the gradient
d out_i / d phi(k_j) = phi(q_i) (v_j - out_i)^T / (phi(q_i)^T z), which grows as the
denominator shrinks. Keys' features are scaled by epsilon = 1 .. 1e-8 (the denominator
shrinks with them) and the norm of the output's gradient w.r.t. the key features is measured
for vanilla linear attention (its eps = 1e-6 in the denominator) and for NormAttention
(RMSNorm, eps = 1e-6). Claim: the vanilla gradient grows by more than 100x over the sweep and
NormAttention's maximum gradient stays below the vanilla maximum (the measurement also shows
where NormAttention's own gradient grows: RMSNorm divides by the output's scale until its eps
takes over -- reported, not hidden).
"""

from __future__ import annotations

import math

import torch

from paperlab.attention import attention_weights
from paperlab.attention.linear import elu_plus_one, linear_attention_features
from paperlab.attention.transnormer import norm_attention
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment

D = 32


def _structured(n: int, g: torch.Generator) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64)[:, None]
    freqs = torch.rand(1, 4 * D, generator=g, dtype=torch.float64) * (2 * math.pi / n) * 8
    phase = torch.rand(1, 4 * D, generator=g, dtype=torch.float64) * 2 * math.pi
    x = torch.cos(t * freqs + phase) * 2.0
    return x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)


def _locality(a: torch.Tensor, radius: int) -> float:
    n = a.shape[-1]
    i = torch.arange(n)
    near = (i[:, None] - i[None, :]).abs() <= radius
    a = a / a.sum(dim=-1, keepdim=True)
    return float((a * near).sum(dim=-1).mean())


@export_experiment(
    "transnormer-dilution",
    note="B4 TransNormer",
    title="Vanilla linear attention dilutes attention and has unbounded gradients",
    tags=("attention", "transnormer"),
)
def transnormer_dilution(ctx: Context) -> Result:
    """Locality of attention maps at init; gradient norm as the kernel denominator shrinks."""
    n = ctx.pick(smoke=64, quick=512, full=1024)
    trials = ctx.pick(smoke=2, quick=8, full=32)
    radius, block = n // 16, n // 8
    g = ctx.generator()
    shares: dict[str, list[float]] = {"softmax": [], "linear (elu+1)": [], "norm": [],
                                      "diag": []}
    for _ in ctx.track(range(trials), label="locality"):
        x = _structured(n, g)
        wq, wk = (torch.randn(4 * D, D, generator=g, dtype=torch.float64) / (4 * D) ** 0.5
                  for _ in range(2))
        q, k = (x @ wq)[None, None], (x @ wk)[None, None]
        soft = attention_weights(q, k)[0, 0]
        lin = (elu_plus_one(q) @ elu_plus_one(k).transpose(-1, -2))[0, 0]
        blk = torch.arange(n) // block
        diag = attention_weights(q, k, mask=blk[:, None] == blk[None, :])[0, 0]
        shares["softmax"].append(_locality(soft, radius))
        shares["linear (elu+1)"].append(_locality(lin, radius))
        shares["norm"].append(_locality(lin, radius))  # same kernel, per-row scale only
        shares["diag"].append(_locality(diag, radius))
    locality = {k: sum(v) / len(v) for k, v in shares.items()}
    uniform = (2 * radius + 1) / n

    epsilons = [10.0 ** -e for e in range(0, 9)]
    m = 64
    q, k, v = (torch.randn(1, 1, m, 8, generator=g, dtype=torch.float64) for _ in range(3))
    fq, fk0 = elu_plus_one(q), elu_plus_one(k)
    grads: dict[str, list[float]] = {"linear (elu+1)": [], "norm": []}
    for eps_scale in epsilons:
        for name in grads:
            fk = (fk0 * eps_scale).requires_grad_()
            if name == "norm":
                out = norm_attention(fq, fk, v, feature_map=lambda t: t)
            else:
                out = linear_attention_features(fq, fk, v)
            (gk,) = torch.autograd.grad(out.sum(), fk)
            grads[name].append(float(gk.norm()))
    growth = grads["linear (elu+1)"][-1] / grads["linear (elu+1)"][0]
    max_ratio = max(grads["norm"]) / max(grads["linear (elu+1)"])

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax.bar(list(locality), list(locality.values()))
    ax.axhline(uniform, color="grey", ls="--", label="uniform attention")
    ax.set_ylabel(f"attention mass within |i-j| <= {radius}")
    ax.set_title(f"Locality at init, structured input, N={n}")
    ax.legend(fontsize=8)
    for name, gs in grads.items():
        ax2.loglog(epsilons, gs, "o-", label=name)
    ax2.invert_xaxis()
    ax2.set_xlabel("scale of the key features (denominator shrinks ->)")
    ax2.set_ylabel("|d out / d phi(K)|")
    ax2.set_title("Gradient as the kernel sum shrinks")
    ax2.legend(fontsize=8)
    ctx.savefig(fig, "transnormer_dilution")

    claims = [
        Claim.check("locality: vanilla linear attention / softmax attention < 1 (dilution)",
                    locality["linear (elu+1)"] / locality["softmax"], "<", 1.0),
        Claim.check("locality: DiagAttention / softmax attention >= 1",
                    locality["diag"] / locality["softmax"], ">=", 1.0),
        Claim.check("vanilla linear attention: gradient grows as the denominator shrinks "
                    "(growth over the sweep)", growth, ">", 100.0),
        Claim.check("max gradient over the sweep: NormAttention / vanilla linear < 1",
                    max_ratio, "<", 1.0),
    ]
    summary = (
        "locality " + ", ".join(f"{k} {v:.3f}" for k, v in locality.items())
        + f" (uniform {uniform:.3f}); vanilla grad growth x{growth:.3g}, "
        f"norm/vanilla max grad {max_ratio:.3g}"
    )
    metrics = {"locality": locality, "uniform_share": uniform, "epsilons": epsilons,
               **{f"grad {k}": v for k, v in grads.items()}, "vanilla_growth": growth,
               "norm_over_vanilla_max_grad": max_ratio}
    return Result(summary=summary, metrics=metrics, claims=claims)
