"""Experiment ``efficient-attention-tradeoffs`` (note B2): local windows vs low rank vs full.

Two cheap approximations of softmax attention, measured against the exact output:

- local (sliding-window) attention: each query sees the keys within ``window`` positions
  (2 * window - 1 keys);
- Linformer: keys and values projected along the sequence to k rows. Its E, F are learned in
  a trained model; here they are fixed to mean pooling over k equal segments (kernel = stride
  = n/k), one of the projections the Linformer paper lists (section 4), and, for contrast, to
  the untrained Gaussian matrices the module starts from.

Data. Queries and keys are random Fourier features of the position, q_i, k_i ~ c [cos(w i),
sin(w i)] with frequencies w ~ N(0, 1/l^2) plus a little noise, so that the logit q_i.k_j
is about ``PEAK`` * exp(-(i - j)^2 / 2 l^2): attention to keys within a few l of the query.
With l = 3 the data has **local** structure (a sharp band: high rank); with l = n/4 it is
**smooth** (broad, slowly varying along the keys: low rank). Values are a standardised random
walk. Error = ||approx - exact|| / ||exact|| (Frobenius), in float32.

Claims: (1) on local data, local attention's error falls as the window grows, to below 1% at
window 16; (2) on smooth data, Linformer's (pooling) error falls as k grows; (3) at a similar
number of keys per query (local window 16: 31 keys; Linformer k = 32) local attention wins on
local data and (4) Linformer wins on smooth data; (5, 6) for a fixed window (32) and a fixed k
(64) their time grows about linearly with n (exponent < 1.3), while (7) full attention
(torch's SDPA) grows about quadratically (exponent > 1.5). Timing as in
``linear-attention-scaling`` (one thread, interleaved medians; exponents fitted over the three
largest lengths each method ran at -- the O(n) methods run 4x further than full attention).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from paperlab.attention import linformer_attention, local_attention
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.timing import growth_exponent, time_sweep

PEAK = 14.0  # logit of a query against its own position
NOISE = 0.05
HEAD_DIM = 64
TIME_WINDOW, TIME_K, TIME_HEADS = 32, 64, 2
LOCAL_SCALE = 3.0


def kernel_data(
    n: int, length_scale: float, g: torch.Generator, *, batch: int = 2, d: int = HEAD_DIM
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (B, 1, n, d) whose scores decay with |i - j| on ``length_scale``; v a random walk."""
    omega = torch.randn(d // 2, generator=g) / length_scale
    angles = torch.arange(n, dtype=torch.float32)[:, None] * omega[None, :]
    c = math.sqrt(PEAK * math.sqrt(d))  # q.k / sqrt(d) = PEAK at distance 0
    feats = c * math.sqrt(2.0 / d) * torch.cat((angles.cos(), angles.sin()), dim=-1)
    q = feats + NOISE * torch.randn(batch, 1, n, d, generator=g)
    k = feats + NOISE * torch.randn(batch, 1, n, d, generator=g)
    v = torch.randn(batch, 1, n, d, generator=g).cumsum(dim=2)
    v = (v - v.mean(dim=2, keepdim=True)) / v.std(dim=2, keepdim=True)
    return q, k, v


def pooling_projection(r: int, n: int) -> torch.Tensor:
    """(r, n) mean pooling over r contiguous, (nearly) equal segments."""
    edges = [round(i * n / r) for i in range(r + 1)]
    e = torch.zeros(r, n)
    for i in range(r):
        e[i, edges[i] : edges[i + 1]] = 1.0 / (edges[i + 1] - edges[i])
    return e


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).norm() / exact.norm())


def error_sweep(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    windows: list[int],
    ranks: list[int],
    g: torch.Generator,
) -> dict[str, list[float]]:
    """Relative errors of local attention per window and Linformer per k (pool and random)."""
    n = q.shape[-2]
    exact = F.scaled_dot_product_attention(q, k, v)
    out: dict[str, list[float]] = {"local": [], "linformer pool": [], "linformer random": []}
    for w in windows:
        out["local"].append(relative_error(local_attention(q, k, v, w), exact))
    for r in ranks:
        pool = pooling_projection(r, n)
        out["linformer pool"].append(relative_error(linformer_attention(q, k, v, pool, pool),
                                                    exact))
        e, f = (torch.randn(r, n, generator=g) / math.sqrt(r) for _ in range(2))
        out["linformer random"].append(relative_error(linformer_attention(q, k, v, e, f), exact))
    return out


@export_experiment(
    "efficient-attention-tradeoffs",
    note="B2 efficient-transformer survey",
    title="Local windows win on local structure, low rank on smooth structure; both grow as O(n)",
    tags=("attention", "efficient"),
)
def efficient_attention_tradeoffs(ctx: Context) -> Result:
    """Error vs keys per query (local window, Linformer k) on two data sets, time vs n."""
    n = ctx.pick(smoke=128, quick=1024, full=4096)
    windows = [w for w in (1, 2, 4, 8, 16, 32, 64, 128, 256) if w <= n // 4]
    ranks = [r for r in (4, 8, 16, 32, 64, 128, 256, 512) if r <= n // 4]
    g = ctx.generator()
    errors: dict[str, dict[str, list[float]]] = {}
    with torch.no_grad():
        for name, scale in ctx.track((("local", LOCAL_SCALE), ("smooth", n / 4)), label="error"):
            q, k, v = kernel_data(n, scale, g)
            errors[name] = error_sweep(q, k, v, windows, ranks, g)

    sizes = ctx.pick(
        smoke=[128, 256, 512],
        quick=[512, 1024, 2048, 4096, 8192, 16384],
        full=[512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
    )
    full_max = ctx.pick(smoke=512, quick=4096, full=16384)
    repeats = ctx.pick(smoke=1, quick=3, full=7)

    def make(m: int) -> dict[str, Callable[[], object]]:
        q, k, v = (torch.randn(1, TIME_HEADS, m, HEAD_DIM, generator=g) for _ in range(3))
        pool = pooling_projection(TIME_K, m)
        fns: dict[str, Callable[[], object]] = {
            f"local (window {TIME_WINDOW})": lambda: local_attention(q, k, v, TIME_WINDOW),
            f"Linformer (k={TIME_K})": lambda: linformer_attention(q, k, v, pool, pool),
        }
        if m <= full_max:
            fns["full (torch SDPA)"] = lambda: F.scaled_dot_product_attention(q, k, v)
        return fns

    with torch.no_grad():
        times = time_sweep(ctx.track(sizes, label="timing"), make, repeats=repeats)
    exponents = {name: growth_exponent(sizes, t) for name, t in times.items()}
    local_name, lin_name = f"local (window {TIME_WINDOW})", f"Linformer (k={TIME_K})"

    loc, smo = errors["local"], errors["smooth"]
    w16, k32 = windows.index(min(16, windows[-1])), ranks.index(min(32, ranks[-1]))
    local_drop = [b < a for a, b in zip(loc["local"], loc["local"][1:])]
    at_16 = loc["local"][w16]
    lin_drop = smo["linformer pool"][-1] / smo["linformer pool"][0]
    ratio_local_data = loc["linformer pool"][k32] / loc["local"][w16]
    ratio_smooth_data = smo["local"][w16] / smo["linformer pool"][k32]

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"local": "-", "smooth": "--"}
    for data, errs in errors.items():
        ls = styles[data]
        ax.loglog([2 * w - 1 for w in windows], errs["local"], "o" + ls, color="C0",
                  label=f"local window, {data} data")
        ax.loglog(ranks, errs["linformer pool"], "s" + ls, color="C1",
                  label=f"Linformer pooling, {data} data")
        ax.loglog(ranks, errs["linformer random"], "x" + ls, color="C7", alpha=0.6,
                  label=f"Linformer random E,F, {data} data")
    ax.set_xlabel("keys per query (local: 2w - 1; Linformer: k)")
    ax.set_ylabel("relative error vs full attention")
    ax.set_title(f"Error at n={n} (local data l={LOCAL_SCALE:g}, smooth l=n/4)")
    ax.legend(fontsize=7)
    for name, t in times.items():
        ax2.loglog(sizes, [x * 1e3 for x in t], "o-", label=f"{name}  (n^{exponents[name]:.2f})")
    ax2.set_xlabel("sequence length n")
    ax2.set_ylabel(f"ms per attention (B=1, H={TIME_HEADS}, D={HEAD_DIM}, 1 thread)")
    ax2.set_title("Time")
    ax2.legend(fontsize=8)
    ctx.savefig(fig, "efficient_attention_tradeoffs")

    metrics = {
        "n": n,
        "windows": windows,
        "ranks": ranks,
        **{f"error {data} {method}": errs[method] for data, errs in errors.items()
           for method in errs},
        "timing_sizes": list(sizes),
        **{f"ms {name}": [round(x * 1e3, 3) for x in t] for name, t in times.items()},
        **{f"exponent {name}": e for name, e in exponents.items()},
        "linformer_over_local_error_on_local_data": ratio_local_data,
        "local_over_linformer_error_on_smooth_data": ratio_smooth_data,
    }
    claims = [
        Claim.check(
            "local data: local attention's error falls at every doubling of the window "
            "(fraction of doublings that lower it)",
            sum(local_drop) / len(local_drop),
            "==",
            1.0,
        ),
        Claim.check(
            f"local data: local attention's relative error at window {windows[w16]}",
            at_16,
            "<",
            0.01,
        ),
        Claim.check(
            f"smooth data: Linformer (pooling) error at k={ranks[-1]} / error at k={ranks[0]}",
            lin_drop,
            "<",
            1.0,
        ),
        Claim.check(
            f"local data: Linformer k={ranks[k32]} error / local window {windows[w16]} error "
            f"(local attention wins)",
            ratio_local_data,
            ">",
            1.0,
        ),
        Claim.check(
            f"smooth data: local window {windows[w16]} error / Linformer k={ranks[k32]} error "
            f"(Linformer wins)",
            ratio_smooth_data,
            ">",
            1.0,
        ),
        Claim.check(
            f"{local_name}: time growth exponent over the 3 largest n < 1.3",
            exponents[local_name],
            "<",
            1.3,
        ),
        Claim.check(
            f"{lin_name}: time growth exponent over the 3 largest n < 1.3",
            exponents[lin_name],
            "<",
            1.3,
        ),
        Claim.check(
            "full attention (torch SDPA): time growth exponent over the 3 largest n > 1.5",
            exponents["full (torch SDPA)"],
            ">",
            1.5,
        ),
    ]
    summary = (
        f"n={n}: local data -- window {windows[w16]} error {at_16:.1e} vs Linformer "
        f"k={ranks[k32]} {loc['linformer pool'][k32]:.1e}; smooth data -- window "
        f"{windows[w16]} {smo['local'][w16]:.1e} vs Linformer {smo['linformer pool'][k32]:.1e}; "
        f"time n^{exponents[local_name]:.2f} (local), n^{exponents[lin_name]:.2f} (Linformer), "
        f"n^{exponents['full (torch SDPA)']:.2f} (full)"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
