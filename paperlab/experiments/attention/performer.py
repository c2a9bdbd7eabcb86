"""Experiment ``performer-approximation`` (note B3): FAVOR+ error against the feature count.

Softmax attention (B=1, H=2, N tokens, D=16, q, k, v ~ N(0, 0.5^2), float64) is estimated
with m random features, m = 16 .. 4096, for positive/trigonometric features x iid/orthogonal
directions, averaged over several draws of W. Measured: mean |estimate - exact| of the
attention output.

Claims: (1) the error falls with m: the log-log slope of error vs m for positive orthogonal
features is below -0.3 (Monte Carlo gives -0.5 asymptotically); (2) orthogonal features are
at least as accurate as iid ones at the largest m (positive features); (3) where the kernel
value exp(q . k) is small (q . k < -2 after scaling), the positive estimator's relative error
of the kernel is below the trigonometric one's (the paper's variance argument: the positive
estimator's variance vanishes with the kernel, the trigonometric one's does not).
"""

from __future__ import annotations

import torch

from paperlab.attention import scaled_dot_product_attention
from paperlab.attention.performer import draw_projection, kernel_estimate, performer_attention
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.timing import fit_power_law

D = 16
VARIANTS = [("positive", True), ("positive", False), ("trig", True), ("trig", False)]


def _label(kind: str, orthogonal: bool) -> str:
    return f"{kind}-{'orthogonal' if orthogonal else 'iid'}"


@export_experiment(
    "performer-approximation",
    note="B3 Performer (FAVOR+)",
    title="FAVOR+ approximates softmax attention better with more, orthogonal, positive features",
    tags=("attention", "performer"),
)
def performer_approximation(ctx: Context) -> Result:
    """Output error vs number of random features; small-kernel relative error positive vs trig."""
    sizes = ctx.pick(smoke=[16, 64, 256], quick=[16, 64, 256, 1024, 4096],
                     full=[16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192])
    draws = ctx.pick(smoke=2, quick=6, full=20)
    n = ctx.pick(smoke=32, quick=128, full=256)
    g = ctx.generator()
    q, k, v = (torch.randn(1, 2, n, D, generator=g, dtype=torch.float64) * 0.5 for _ in range(3))
    exact = scaled_dot_product_attention(q, k, v)
    errors: dict[str, list[float]] = {}
    for kind, orth in ctx.track(VARIANTS, label="variants"):
        errs = []
        for m in sizes:
            e = 0.0
            for _ in range(draws):
                w = draw_projection(m, D, orthogonal=orth, generator=g, dtype=torch.float64)
                out = performer_attention(q, k, v, features=w, kind=kind)
                e += float((out - exact).abs().mean())
            errs.append(e / draws)
        errors[_label(kind, orth)] = errs
    slopes = {name: fit_power_law(sizes, errs) for name, errs in errors.items()}

    # kernel values near zero: pairs with strongly negative scaled dot products
    qs, ks = q[0, 0] * D**-0.25, k[0, 0] * D**-0.25
    ks = torch.cat((ks, -qs * 2.0))  # add keys pointing away from the queries
    dots = qs @ ks.T
    small = dots < -2.0
    true_kernel = dots.exp()
    m_small = sizes[-1]
    rel: dict[str, float] = {}
    for kind in ("positive", "trig"):
        r = 0.0
        for _ in range(draws):
            w = draw_projection(m_small, D, generator=g, dtype=torch.float64)
            est = kernel_estimate(qs, ks, w, kind=kind)
            r += float(((est - true_kernel).abs() / true_kernel)[small].mean())
        rel[kind] = r / draws

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, errs in errors.items():
        ax.loglog(sizes, errs, "o-", label=f"{name} (slope {slopes[name]:.2f})")
    ax.set_xlabel("number of random features m")
    ax.set_ylabel("mean |FAVOR - softmax attention|")
    ax.set_title(f"Attention output error, N={n}, D={D}")
    ax.legend(fontsize=8)
    ax2.bar(list(rel), list(rel.values()))
    ax2.set_yscale("log")
    ax2.set_ylabel("mean relative kernel error")
    ax2.set_title(f"Small kernel values (q.k < -2), m={m_small}")
    ctx.savefig(fig, "performer_approximation")

    largest = {name: errs[-1] for name, errs in errors.items()}
    claims = [
        Claim.check("positive-orthogonal: log-log slope of output error vs m < -0.3",
                    slopes["positive-orthogonal"], "<", -0.3),
        Claim.check("positive features: orthogonal error / iid error at the largest m <= 1",
                    largest["positive-orthogonal"] / largest["positive-iid"], "<=", 1.0),
        Claim.check("small kernel values: positive / trigonometric relative error < 1",
                    rel["positive"] / rel["trig"], "<", 1.0),
    ]
    summary = (
        f"error at m={sizes[-1]}: " + ", ".join(f"{k} {v:.4f}" for k, v in largest.items())
        + f"; slope pos-orth {slopes['positive-orthogonal']:.2f}; small-kernel rel. error "
        f"positive {rel['positive']:.3g} vs trig {rel['trig']:.3g}"
    )
    metrics = {"sizes": sizes, **{f"error {k}": v for k, v in errors.items()},
               **{f"slope {k}": v for k, v in slopes.items()},
               "small_kernel_rel_error_positive": rel["positive"],
               "small_kernel_rel_error_trig": rel["trig"], "small_pairs": int(small.sum())}
    return Result(summary=summary, metrics=metrics, claims=claims)
