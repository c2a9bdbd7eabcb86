"""Experiment ``rope-relative`` (note A2): RoPE is relative to float precision, and decays.

Claim 1 -- relativity. For random unit vectors q, k and positions m, n < 4096, rotating both
by their absolute positions gives the same score as rotating only k by the relative position:
max |<R_m q, R_n k> - <q, R_{n-m} k>| is at float64 rounding level (< 1e-10), for the
interleaved (RoFormer) and half-split (Llama) layouts and for 2-D (axial) RoPE. The float32
figures are reported too: with tables rounded from float64 angles (paperlab) and, for
contrast, with the angles themselves computed in float32 (HF Llama's recipe), whose rounding
grows with the position.

Control: relativity holds for *any* rotation whose angles are linear in the position --
including the identity (angle 0), which encodes nothing. So the claim records, as the control
that must fail it, a rotation by angles *not* linear in the position (an absolute rotary
table: independent random angles per position), and two more claims pin down that R_m is
RoPE and that it does something:

Claim 2 -- R_m is Llama's rotary embedding. Ours (``rotary_cos_sin`` + ``apply_rotary``,
half-split layout) equals an independent float64 transcription of HF Llama's formula
written below (``inv_freq = 1 / base^(2i/d)``, ``emb = cat(freqs, freqs)``,
``x cos(emb) + rotate_half(x) sin(emb)``, ``rotate_half(x) = cat(-x2, x1)``): max abs error
< 1e-10 over m < 4096. Control: the identity rotation, which must fail it. The parity with
HF transformers itself (``LlamaRotaryEmbedding``, ``apply_rotary_pos_emb``) is a test,
``tests/position/test_rope.py``: the experiment runs on a core install without transformers.

Claim 3 -- the scores depend on m - n at all. For unit q, k and a random m, the spread (std)
of <R_m q, R_{m+r} k> over r = 0 .. 4095 is far above float64 noise: its minimum over pairs is
above 1e-3 (pilot, seed 100: 0.056; float64 noise is ~1e-16). Control: the identity rotation,
whose spread is exactly 0.

Claim 4 -- long-range decay (RoFormer Fig. 2). With S_j = sum_{k<j} e^{i r theta_k},
theta_k = 10000^(-2k/d), d = 128, the relative upper bound (1/(d/2)) sum_j |S_j| falls from
its value d/4 + 1/2 = 32.5 at r = 0: its mean over r in [200, 250] is below half of that.
Control: the same bound at r = 0 (ratio 1).

None of these is a claim about training: they are exact computations on random inputs.
"""

from __future__ import annotations

import torch

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.position.rope import (
    apply_axial_rotary,
    apply_rotary,
    axial_cos_sin,
    rotary_cos_sin,
    rotary_inv_freq,
)
from paperlab.registry import export_experiment

DIM = 128
MAX_POSITION = 4096


def relative_upper_bound(distances: torch.Tensor, dim: int = DIM, base: float = 10000.0):
    """(1/(d/2)) sum_{j=1}^{d/2} |S_j| for each relative distance, float64."""
    theta = rotary_inv_freq(dim, base)
    phases = torch.exp(1j * distances.to(torch.float64)[:, None] * theta[None, :])
    return phases.cumsum(dim=-1).abs().mean(dim=-1)


def _unit(n: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, DIM, generator=g, dtype=torch.float64)
    return (x / x.norm(dim=-1, keepdim=True)).to(dtype)


def relativity_errors(
    samples: int, *, interleaved: bool, dtype: torch.dtype, g: torch.Generator
) -> torch.Tensor:
    """|<R_m q, R_n k> - <q, R_{n-m} k>| for ``samples`` random (q, k, m, n)."""
    q, k = _unit(samples, dtype, g), _unit(samples, dtype, g)
    m = torch.randint(0, MAX_POSITION, (samples,), generator=g)
    n = torch.randint(0, MAX_POSITION, (samples,), generator=g)
    inv_freq = rotary_inv_freq(DIM)

    def turn(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        cos, sin = rotary_cos_sin(pos, inv_freq, interleaved=interleaved, dtype=dtype)
        return apply_rotary(x, cos, sin, interleaved=interleaved)  # (S, D) as (N, D)

    absolute = (turn(q, m) * turn(k, n)).sum(-1)
    relative = (q * turn(k, n - m)).sum(-1)
    return (absolute - relative).abs().double()


def relativity_errors_float32_angles(samples: int, *, g: torch.Generator) -> torch.Tensor:
    """Half-split float32 with the angles themselves computed in float32 (HF Llama's recipe)."""
    q, k = _unit(samples, torch.float32, g), _unit(samples, torch.float32, g)
    m = torch.randint(0, MAX_POSITION, (samples,), generator=g)
    n = torch.randint(0, MAX_POSITION, (samples,), generator=g)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, DIM, 2, dtype=torch.float32) / DIM))

    def turn(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        angles = pos.float()[:, None] * inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return apply_rotary(x, angles.cos(), angles.sin())

    absolute = (turn(q, m) * turn(k, n)).sum(-1)
    relative = (q * turn(k, n - m)).sum(-1)
    return (absolute - relative).abs().double()


def relativity_errors_2d(samples: int, *, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    """The same for 2-D RoPE: positions (row, col) on a 64 x 64 grid."""
    q, k = _unit(samples, dtype, g), _unit(samples, dtype, g)
    a = torch.randint(0, 64, (samples, 2), generator=g)
    b = torch.randint(0, 64, (samples, 2), generator=g)

    def turn(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        cos, sin = axial_cos_sin(pos, DIM, dtype=dtype)
        return apply_axial_rotary(x, cos, sin)

    absolute = (turn(q, a) * turn(k, b)).sum(-1)
    relative = (q * turn(k, b - a)).sum(-1)
    return (absolute - relative).abs().double()


def _half_split_turn(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate x (S, D) by per-row angles (S, D/2) in the half-split layout, float64."""
    cos, sin = angles.cos(), angles.sin()
    return apply_rotary(x, torch.cat((cos, cos), -1), torch.cat((sin, sin), -1))


def relativity_errors_absolute_angles(samples: int, *, g: torch.Generator) -> torch.Tensor:
    """The control: |<R_m q, R_n k> - <q, R_{n-m} k>| when R_p rotates by independent random
    angles per position p (a table, not linear in p), float64."""
    q, k = _unit(samples, torch.float64, g), _unit(samples, torch.float64, g)
    m = torch.randint(0, MAX_POSITION, (samples,), generator=g)
    n = torch.randint(0, MAX_POSITION, (samples,), generator=g)
    # one angle per (position, plane) for positions -MAX_POSITION .. MAX_POSITION - 1
    table = torch.rand(2 * MAX_POSITION, DIM // 2, generator=g, dtype=torch.float64) * 6.283

    def turn(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return _half_split_turn(x, table[pos + MAX_POSITION])

    absolute = (turn(q, m) * turn(k, n)).sum(-1)
    relative = (q * turn(k, n - m)).sum(-1)
    return (absolute - relative).abs()


def llama_rotary_reference(
    x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0
) -> torch.Tensor:
    """HF Llama's rotary embedding of x (S, D) at ``positions`` (S,), transcribed in float64.

    ``LlamaRotaryEmbedding``: inv_freq = 1 / base^(arange(0, D, 2) / D), freqs = pos inv_freq,
    emb = cat(freqs, freqs); ``apply_rotary_pos_emb``: x cos(emb) + rotate_half(x) sin(emb)
    with rotate_half(x) = cat(-x[D/2:], x[:D/2]).
    """
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    x = x.to(torch.float64)
    rotate_half = torch.cat((-x[..., d // 2 :], x[..., : d // 2]), dim=-1)
    return x * emb.cos() + rotate_half * emb.sin()


def llama_parity_errors(samples: int, *, g: torch.Generator) -> tuple[float, float]:
    """max |R_m q (ours) - Llama's R_m q| and, as the control, max |q - Llama's R_m q|."""
    q = _unit(samples, torch.float64, g)
    m = torch.randint(0, MAX_POSITION, (samples,), generator=g)
    cos, sin = rotary_cos_sin(m, rotary_inv_freq(DIM), dtype=torch.float64)
    ours = apply_rotary(q, cos, sin)
    ref = llama_rotary_reference(q, m)
    return float((ours - ref).abs().max()), float((q - ref).abs().max())


def score_spread(
    pairs: int, distances: int, *, g: torch.Generator, identity: bool = False
) -> torch.Tensor:
    """Per pair of unit (q, k): std over r < ``distances`` of <R_m q, R_{m+r} k>, m random.

    ``identity=True`` uses R_p = I (the control: positions switched off). Returns (pairs,).
    """
    q, k = _unit(pairs, torch.float64, g), _unit(pairs, torch.float64, g)
    m = torch.randint(0, MAX_POSITION, (pairs,), generator=g)
    r = torch.arange(distances)
    if identity:
        scores = (q * k).sum(-1, keepdim=True).expand(pairs, distances)
    else:
        inv_freq = rotary_inv_freq(DIM)
        cq, sq = rotary_cos_sin(m, inv_freq, dtype=torch.float64)  # (P, D)
        ck, sk = rotary_cos_sin(m[:, None] + r[None, :], inv_freq, dtype=torch.float64)
        rq = apply_rotary(q, cq, sq)  # (P, D)
        rk = apply_rotary(k[:, None, :].expand(pairs, distances, DIM), ck, sk)  # (P, R, D)
        scores = (rq[:, None, :] * rk).sum(-1)
    return scores.std(dim=-1)


@export_experiment(
    "rope-relative",
    note="A2 RoPE (RoFormer)",
    title="RoPE scores depend only on m - n, and their upper bound decays with distance",
    tags=("position", "rope"),
)
def rope_relative(ctx: Context) -> Result:
    """RoPE: relativity to float precision and RoFormer's long-range decay of the bound."""
    samples = ctx.pick(smoke=256, quick=8192, full=131072)
    g = ctx.generator()
    errors: dict[str, torch.Tensor] = {}
    for dtype, tag in ((torch.float64, "float64"), (torch.float32, "float32")):
        for interleaved, layout in ctx.track(
            ((True, "interleaved"), (False, "half-split")), label=f"relativity {tag}"
        ):
            errors[f"{layout} {tag}"] = relativity_errors(
                samples, interleaved=interleaved, dtype=dtype, g=g
            )
        errors[f"2-D {tag}"] = relativity_errors_2d(samples, dtype=dtype, g=g)
    angles32 = relativity_errors_float32_angles(samples, g=g)
    control_relativity = float(relativity_errors_absolute_angles(samples, g=g).max())
    llama_err, llama_identity = llama_parity_errors(samples, g=g)
    pairs = ctx.pick(smoke=16, quick=64, full=512)
    spread = float(score_spread(pairs, MAX_POSITION, g=g).min())
    spread_identity = float(score_spread(pairs, MAX_POSITION, g=g, identity=True).max())
    max64 = max(float(e.max()) for name, e in errors.items() if name.endswith("float64"))
    max32 = max(float(e.max()) for name, e in errors.items() if name.endswith("float32"))

    distances = torch.arange(0, 251 if ctx.size != "full" else 1001)
    bound = relative_upper_bound(distances)
    at_zero = float(bound[0])
    far = float(bound[200:251].mean())

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(distances.numpy(), bound.numpy(), lw=1.2)
    ax.axhline(at_zero / 2, color="grey", ls="--", lw=0.8, label="half the value at 0")
    ax.axvspan(200, 250, color="orange", alpha=0.15, label="distances 200-250")
    ax.set_xlabel("relative distance |m - n|")
    ax.set_ylabel("relative upper bound")
    ax.set_title(f"RoPE long-range decay (d={DIM}, base 10000)")
    ax.legend()
    ctx.savefig(fig, "rope_decay")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, e in errors.items():
        logs = torch.log10(e.clamp_min(1e-19)).numpy()
        ax.hist(logs, bins=60, histtype="step", label=name)
    ax.hist(
        torch.log10(angles32.clamp_min(1e-19)).numpy(),
        bins=60,
        histtype="step",
        ls=":",
        label="half-split float32, float32 angles",
    )
    ax.axvline(-10, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("log10 |<R_m q, R_n k> - <q, R_{n-m} k>|  (unit q, k; m, n < 4096)")
    ax.set_ylabel("count")
    ax.set_title("RoPE relativity error (exact zeros drawn at -19)")
    ax.legend(fontsize=7)
    ctx.savefig(fig, "relativity_error")

    ratio = far / at_zero
    metrics = {
        "samples": samples,
        "relativity_max_err_float64": max64,
        "relativity_max_err_float32": max32,
        **{f"max_err {name}": float(e.max()) for name, e in errors.items()},
        "relativity_max_err_float32_float32_angles": float(angles32.max()),
        "bound_at_0": at_zero,
        "bound_mean_200_250": far,
        "bound_ratio_far_to_0": ratio,
        "bound_min": float(bound.min()),
        "control_relativity_max_err_absolute_angles": control_relativity,
        "llama_parity_max_err": llama_err,
        "control_llama_parity_identity": llama_identity,
        "score_spread_min": spread,
        "control_score_spread_identity": spread_identity,
    }
    claims = [
        Claim.check(
            "max |<R_m q, R_n k> - <q, R_{n-m} k>| in float64 (both layouts and 2-D) < 1e-10 "
            "(control: rotation by random angles per position)",
            max64,
            "<",
            1e-10,
            control=control_relativity,
        ),
        Claim.check(
            "R_m q equals HF Llama's rotary output (float64 transcription of rotate_half): "
            "max abs error < 1e-10 (control: the identity rotation)",
            llama_err,
            "<",
            1e-10,
            control=llama_identity,
        ),
        Claim.check(
            "scores change with m - n: min over pairs of the std of <R_m q, R_{m+r} k> over "
            f"r < {MAX_POSITION} is > 1e-3 (control: the identity rotation)",
            spread,
            ">",
            1e-3,
            control=spread_identity,
        ),
        Claim.check(
            "RoFormer's relative upper bound, mean over distances 200..250, "
            "is below half its value at distance 0 (ratio; control: the ratio at distance 0)",
            ratio,
            "<",
            0.5,
            control=1.0,
        ),
    ]
    summary = (
        f"relativity error float64 {max64:.1e}, float32 {max32:.1e} (float32 angles: "
        f"{float(angles32.max()):.1e}) over {samples} pairs; upper bound {at_zero:.1f} at 0 "
        f"-> {far:.2f} at 200-250 (x{ratio:.2f}); vs Llama's formula {llama_err:.1e}; "
        f"score spread over m - n >= {spread:.3f} (identity: {spread_identity:.0e})"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
