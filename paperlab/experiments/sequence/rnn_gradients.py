"""Experiment ``rnn-vanishing-gradients`` (notes C1, C2): gradients w.r.t. early inputs vanish.

Back-propagation through time multiplies one Jacobian per step, so the gradient of the last
hidden state with respect to an input t steps back, ||d h_T / d x_{T-t}||, behaves like a
product of t factors. We measure it for paperlab's RNN (tanh), LSTM and GRU at torch's
standard initialisation (uniform in +-1/sqrt(H), forget-gate bias 0) and, for contrast, an
LSTM whose forget-gate bias starts at +1 (Gers et al. 2000; Jozefowicz et al. 2015).

Measurement: for random inputs x ~ N(0, 1) and a random direction v per sequence, the norm
||d(v . h_T) / d x_{T-t}|| (whose mean square is the Jacobian's Frobenius norm squared),
in float64 (the RNN's gradient underflows float32 within ~100 steps). The ratios g(50)/g(1)
use the batch mean of the norms; the per-step decay factor rho comes from a least-squares fit
log g(t) = a + t log(rho) to the batch mean of the rows' log norms (the typical sequence; a
mean of norms is dominated by the slowest-decaying sequence).
Every model is drawn afresh on each of 3 seeds (``ctx.seeds(3)``); claims hold on every seed.

Control (the mechanism removed): a *linear* RNN h_t = W x_t + U h_{t-1} with an orthogonal
U. Its step Jacobian U preserves norms, so nothing makes its gradient decay: its g(50)/g(1)
must stay in [0.5, 2]. A gradient that "vanishes" for that model too would mean the decay
comes from the measurement, not from the recurrence.

Mechanism check: for the tanh RNN the step Jacobian is J_t = d h_t / d h_{t-1} =
diag(1 - h_t^2) U. We write the product v^T J_T J_{T-1} ... J_{T-t+1} out from the forward
trajectory (no autograd), fit its decay rho_J the same way, and claim that the decay fitted
to the autograd gradients matches it: the gradient vanishes *because* the step Jacobians
shrink it. A cell with no recurrence (U = 0: both are exactly 0 beyond t = 0), or a BPTT
that cuts or scales the graph wrongly, fails this check even though its g(50)/g(1) is
"small". For reference the metrics also keep one step's isotropic gain ||J_t||_F / sqrt(H)
(about 0.49, while the product decays at 0.48-0.56 per step: the product aligns with the
Jacobians' larger singular directions). History, for the record: a first version of this
check compared the fit (then to the log of the batch-mean norm) with that one-step gain; it
passed the seed-100 pilot (0.04) but missed by |ln| = 0.13 on seed 1 in the first runs of
seeds 0 and 1, because the one-step gain is not the product's decay rate. It was replaced by
the written-out product (the quantity BPTT actually multiplies); the threshold 0.1 was not
changed.

Thresholds, fixed from a pilot on seed 100 (quick size) before the recorded runs:

1. RNN g(50)/g(1) < 1e-3 (pilot 1.1e-14; control ~1);
2. control: |log2(g(50)/g(1))| <= 1 for the orthogonal linear RNN (the [0.5, 2] band);
3. |ln(rho_fit / rho_J)| < 0.1 for the RNN (pilot, with the one-step gain as rho_J: 0.004 to
   0.04; with the product: 2e-4; the ratio of tiny norms carries fitting noise, and a broken
   recurrence misses by far more than 0.1: U scaled by 0.01 gives |ln| = 2.9);
4. the LSTM at standard init vanishes too: g(50)/g(1) < 1e-6 (pilot 3.3e-11);
5. gating slows the decay: LSTM ratio / RNN ratio > 10 (pilot 3.0e3);
6. forget-gate bias +1 slows it much more: ratio with bias +1 / with bias 0 > 1e3 (pilot
   4.4e6).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.sequence.recurrent import GRU, LSTM, RNN

DISTANCE = 50
CONTROL = "linear RNN, orthogonal U (control)"


class OrthogonalLinearRNN(nn.Module):
    """h_t = W x_t + U h_{t-1} with U orthogonal: the step Jacobian preserves every norm."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.randn(hidden_size, input_size) / math.sqrt(input_size))
        q, r = torch.linalg.qr(torch.randn(hidden_size, hidden_size))
        self.weight_hh = nn.Parameter(q * torch.sign(torch.diagonal(r)))  # Haar orthogonal

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.new_zeros(x.shape[1], self.hidden_size)
        out = []
        for x_t in x:
            h = x_t @ self.weight_ih.t() + h @ self.weight_hh.t()
            out.append(h)
        return torch.stack(out), h[None]


def gradient_by_distance(
    model: nn.Module, steps: int, batch: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(||d(v . h_T) / d x_{T-t}|| for t = 0 .. steps-1 and each row (steps, batch), v, outputs)."""
    x = torch.randn(steps, batch, model.input_size, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    out, _ = model(x)
    v = torch.randn(batch, model.hidden_size, generator=g, dtype=torch.float64)
    (out[-1] * v).sum().backward()
    assert x.grad is not None
    per_row = x.grad.norm(dim=-1).flip(0)  # (steps, batch); index = distance from the end
    return per_row, v, out.detach()


def decay_factor(norms: torch.Tensor, start: int = 1) -> float:
    """Per-step factor rho of a least-squares fit log g(t) = a + t log(rho), t >= start.

    ``norms`` is (steps,) or (steps, batch); with a batch, ``log g(t)`` is the batch mean of
    the rows' logs (the typical sequence's decay, not the slowest one's).
    """
    t = torch.arange(start, len(norms), dtype=torch.float64)
    y = norms[start:].clamp_min(1e-300).log()
    if y.ndim == 2:
        y = y.mean(dim=1)
    slope = ((t - t.mean()) * (y - y.mean())).sum() / ((t - t.mean()) ** 2).sum()
    return math.exp(float(slope))


def jacobian_gain(out: torch.Tensor, weight_hh: torch.Tensor) -> float:
    """exp(mean log(||diag(1 - h_t^2) U||_F / sqrt(H))): one step's gain of a random direction.

    The tanh RNN's step Jacobians J_t, built from the forward trajectory ``out`` (T, B, H).
    """
    hidden = weight_hh.shape[0]
    gain = 1 - out[1:] ** 2  # (T-1, B, H): rows of diag(1 - h_t^2) U
    fro = torch.sqrt((gain**2) @ (weight_hh.detach() ** 2).sum(1))  # ||diag(d) U||_F
    return math.exp(float((fro / math.sqrt(hidden)).clamp_min(1e-300).log().mean()))


def jacobian_product_norms(out: torch.Tensor, weight_hh: torch.Tensor,
                           v: torch.Tensor) -> torch.Tensor:
    """||v^T J_T J_{T-1} ... J_{T-t+1}|| for t = 0 .. T-1 and each row: (T, B).

    J_t = diag(1 - h_t^2) U is the tanh RNN's step Jacobian d h_t / d h_{t-1}, written out
    from the forward trajectory (no autograd). Renormalised each step so nothing underflows.
    """
    u = v.clone()
    logs = [torch.zeros(v.shape[0], dtype=v.dtype)]
    total = logs[0]
    for t in range(out.shape[0] - 1, 0, -1):
        u = (u * (1 - out[t] ** 2)) @ weight_hh.detach()  # u^T diag(1 - h_t^2) U
        n = u.norm(dim=-1).clamp_min(1e-300)
        total = total + n.log()
        logs.append(total)
        u = u / n[:, None]
    return torch.stack(logs).exp()


def _models(input_size: int, hidden: int) -> dict[str, nn.Module]:
    lstm_bias = LSTM(input_size, hidden).double()
    with torch.no_grad():  # forget-gate slice of the biases: gate order i, f, g, o
        lstm_bias.bias_ih_l0[hidden:2 * hidden] += 1.0
    return {
        "RNN (tanh)": RNN(input_size, hidden).double(),
        "LSTM": LSTM(input_size, hidden).double(),
        "GRU": GRU(input_size, hidden).double(),
        "LSTM, forget bias +1": lstm_bias,
        CONTROL: OrthogonalLinearRNN(input_size, hidden).double(),
    }


@export_experiment(
    "rnn-vanishing-gradients",
    note="C1 RNN; C2 LSTM, GRU",
    title="Gradients w.r.t. early inputs vanish with distance; gates slow the decay",
    tags=("sequence", "rnn"),
)
def rnn_vanishing_gradients(ctx: Context) -> Result:
    """||dh_T/dx_{T-t}|| against t for RNN, LSTM and GRU at standard initialisation."""
    steps = ctx.pick(smoke=61, quick=101, full=201)
    batch = ctx.pick(smoke=8, quick=32, full=64)
    input_size, hidden = 32, 64
    seeds = ctx.seeds(3)
    curves: dict[str, list[torch.Tensor]] = {}  # batch-mean norm per distance
    rows: dict[str, list[torch.Tensor]] = {}  # per-row norms, for the fits
    rho_j: list[float] = []  # decay of the written-out product of step Jacobians
    rho_f: list[float] = []  # one step's isotropic gain ||J_t||_F / sqrt(H)
    for seed in ctx.track(seeds, label="seeds"):
        torch.manual_seed(seed * 1000)  # module init uses the global RNG
        g = torch.Generator().manual_seed(seed * 1_000_003)
        for name, model in _models(input_size, hidden).items():
            per_row, v, out = gradient_by_distance(model, steps, batch, g)
            rows.setdefault(name, []).append(per_row)
            curves.setdefault(name, []).append(per_row.mean(dim=1))
            if name == "RNN (tanh)":
                u = model.weight_hh_l0
                rho_j.append(decay_factor(jacobian_product_norms(out, u, v)))
                rho_f.append(jacobian_gain(out, u))
    ratio = {n: [float(c[DISTANCE] / c[1]) for c in cs] for n, cs in curves.items()}
    rho = {n: [decay_factor(r) for r in rs] for n, rs in rows.items()}
    mean = {n: torch.stack(cs).mean(0) for n, cs in curves.items()}
    rnn, lstm, ctrl = ratio["RNN (tanh)"], ratio["LSTM"], ratio[CONTROL]
    fit_vs_jac = [abs(math.log(r / j)) for r, j in zip(rho["RNN (tanh)"], rho_j)]

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for name, m in mean.items():
        style = "k--" if name == CONTROL else "-"
        ax.semilogy(range(len(m)), m.numpy(), style,
                    label=f"{name}: rho = {sum(rho[name]) / len(seeds):.3f}/step")
    ax.axvline(DISTANCE, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("distance t (steps back from the last input)")
    ax.set_ylabel("||d h_T / d x_{T-t}|| (mean over batch and seeds)")
    ax.set_title(f"Vanishing gradients at standard init (H={hidden}, seeds {seeds})")
    ax.legend(fontsize=7)
    xs = range(len(seeds))
    ax2.plot(xs, rho["RNN (tanh)"], "o", ms=8, label="RNN: rho fitted to autograd gradients")
    ax2.plot(xs, rho_j, "x", ms=10, mew=2, label="RNN: rho_J, product of step Jacobians")
    ax2.plot(xs, rho_f, "+", ms=10, mew=2, label="RNN: one step's gain ||J_t||_F / sqrt(H)")
    ax2.plot(xs, rho[CONTROL], "ks", label="control: rho fitted (orthogonal U)")
    ax2.set_xticks(list(xs), [f"seed {s}" for s in seeds])
    ax2.set_ylim(0, 1.2)
    ax2.set_ylabel("per-step decay factor")
    ax2.set_title("fitted decay vs the product of Jacobians")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "gradient_vs_distance")

    claims = [
        Claim.over_seeds(f"RNN (tanh): g(t={DISTANCE}) / g(t=1) < 1e-3 (gradient vanishes; "
                         "control: linear RNN with orthogonal U)", rnn, "<", 1e-3, control=ctrl),
        Claim.over_seeds(f"control: linear RNN with orthogonal U keeps g({DISTANCE})/g(1) in "
                         "[0.5, 2]: |log2 ratio| <= 1", [abs(math.log2(r)) for r in ctrl],
                         "<=", 1.0),
        Claim.over_seeds("RNN: decay fitted to autograd gradients matches the product of step "
                         "Jacobians: |ln(rho_fit / rho_J)| < 0.1", fit_vs_jac, "<", 0.1,
                         control=rho_j),
        Claim.over_seeds(f"LSTM at standard init vanishes too: g({DISTANCE})/g(1) < 1e-6",
                         lstm, "<", 1e-6, control=ctrl),
        Claim.over_seeds(f"gating slows the decay: LSTM ratio g({DISTANCE})/g(1) over RNN "
                         "ratio > 10", [a / b for a, b in zip(lstm, rnn)], ">", 10.0),
        Claim.over_seeds("forget-gate bias +1 slows it much more: LSTM ratio with bias +1 over "
                         "with bias 0 > 1e3",
                         [a / b for a, b in zip(ratio["LSTM, forget bias +1"], lstm)], ">", 1e3),
    ]
    metrics = {
        "seeds": seeds,
        "ratio_50_over_1": ratio,
        "decay_factor_per_step": rho,
        "rnn_jacobian_product_decay": rho_j,
        "rnn_jacobian_frobenius_gain": rho_f,
        "rnn_fit_vs_jacobian_abs_log": fit_vs_jac,
        "gru_over_rnn_ratio": [a / b for a, b in zip(ratio["GRU"], rnn)],
        "steps": steps,
        "batch": batch,
    }

    def gm(xs: list[float]) -> float:
        return math.exp(sum(math.log(x) for x in xs) / len(xs))

    summary = (
        f"g({DISTANCE})/g(1) (geometric mean over {len(seeds)} seeds): RNN {gm(rnn):.1e}, "
        f"LSTM {gm(lstm):.1e}, GRU {gm(ratio['GRU']):.1e}, LSTM fb+1 "
        f"{gm(ratio['LSTM, forget bias +1']):.1e}, control (linear, orthogonal U) {gm(ctrl):.2f}; "
        f"RNN rho fitted {sum(rho['RNN (tanh)']) / 3:.3f} vs Jacobians {sum(rho_j) / 3:.3f}"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
