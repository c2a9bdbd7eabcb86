"""Experiment ``transformer-vs-rnn`` (note C2): a 64-step dependency, Transformer vs LSTM.

Task (delayed copy): a stream of random tokens x_1..x_N from V = 8 symbols; at every step
t > L the target is the token L = 64 steps back, y_t = x_{t-L} (no loss before). Chance level
is log V = 2.08 nats. A recurrent network must carry the last 64 tokens (192 bits) in its
state and learn it through 64-step back-propagation; a Transformer with relative (RoPE)
positions only has to learn one attention pattern: "look 64 positions back", and every
position of every sequence trains it at once.

Models, of similar size: ``DecoderLM`` (d = 32, 2 layers, 4 heads, RoPE, ~26k parameters)
and ``torch.nn.LSTM`` (hidden 56, embedding + linear head, ~26k parameters, torch's fused
CPU kernel: the fast baseline). Both: AdamW (lr 3e-3), batch 32, fresh batches every step
(so the training loss is a held-out loss). Step counts are fixed (results are deterministic
for a seed); wall time is measured per step. The LSTM gets 3x the Transformer's steps
because each of its steps is cheaper on a CPU at this size.

Claim: at equal wall time -- the shorter of the two runs' total time -- the Transformer's
loss (median of its last 5 logged losses before then) is below the LSTM's.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.sequence.lm import DecoderLM, LMConfig

V, DELAY, SEQ = 8, 64, 80


def delayed_copy_batch(batch: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, SEQ) random tokens; y (B, SEQ) with y_t = x_{t - DELAY}, -100 (ignored) before."""
    x = torch.randint(0, V, (batch, SEQ), generator=g)
    y = torch.full_like(x, -100)
    y[:, DELAY:] = x[:, : SEQ - DELAY]
    return x, y


class LSTMTagger(nn.Module):
    """Embedding -> torch.nn.LSTM -> linear head: (B, N) tokens -> (B, N, V) logits."""

    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(x))[0])


def train_timed(
    model: nn.Module, steps: int, batch: int, g: torch.Generator, log_every: int, track
) -> tuple[list[float], list[float]]:
    """Train on fresh batches; return (elapsed seconds, loss) every ``log_every`` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    times: list[float] = []
    losses: list[float] = []
    elapsed = 0.0
    for step in track(range(steps)):
        x, y = delayed_copy_batch(batch, g)  # data generation is not timed
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed += time.perf_counter() - t0
        if step % log_every == 0 or step == steps - 1:
            times.append(elapsed)
            losses.append(loss.item())
    return times, losses


def loss_at(times: list[float], losses: list[float], budget: float, window: int = 5) -> float:
    """Median of the last ``window`` logged losses at or before ``budget`` seconds."""
    seen = [loss for t, loss in zip(times, losses) if t <= budget] or losses[:1]
    tail = sorted(seen[-window:])
    return tail[len(tail) // 2]


def _params(model: nn.Module) -> int:
    return sum({id(p): p.numel() for p in model.parameters()}.values())


@export_experiment(
    "transformer-vs-rnn",
    note="C2 Transformer replaces RNN (LSTM)",
    title="On a 64-step delayed copy, a Transformer reaches lower loss per second than an LSTM",
    tags=("sequence", "transformer"),
)
def transformer_vs_rnn(ctx: Context) -> Result:
    """Loss against wall time for a small Transformer and an LSTM on delayed copy."""
    tf_steps = ctx.pick(smoke=8, quick=200, full=600)
    batch = 32
    log_every = ctx.pick(smoke=2, quick=10, full=10)
    torch.manual_seed(ctx.seed)
    transformer = DecoderLM(LMConfig(vocab_size=V, dim=32, num_layers=2, num_heads=4,
                                     position="rope", max_positions=SEQ))
    lstm = LSTMTagger(V, 56)
    runs = {}
    for offset, (name, model, steps) in enumerate(
        (("Transformer", transformer, tf_steps), ("LSTM", lstm, 3 * tf_steps))
    ):
        model.train()
        runs[name] = train_timed(
            model, steps, batch, ctx.generator(offset), log_every,
            lambda it, name=name: ctx.track(it, label=name),
        )
    budget = min(runs["Transformer"][0][-1], runs["LSTM"][0][-1])
    at_budget = {name: loss_at(t, loss, budget) for name, (t, loss) in runs.items()}
    steps_per_s = {
        name: (tf_steps if name == "Transformer" else 3 * tf_steps) / t[-1]
        for name, (t, _) in runs.items()
    }

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sizes = {"Transformer": _params(transformer), "LSTM": _params(lstm)}
    for name, (t, loss) in runs.items():
        ax.plot(t, loss, label=f"{name} ({sizes[name]:,} params, "
                f"{steps_per_s[name]:.0f} steps/s)")
    ax.axhline(math.log(V), color="grey", ls=":", lw=1, label="chance (log V)")
    ax.axvline(budget, color="black", ls="--", lw=0.8, label="equal-time budget")
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel("cross-entropy on fresh batches (nats)")
    ax.set_title(f"Delayed copy y_t = x_(t-{DELAY}), V={V}")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "loss_vs_wall_time")

    tf_loss, lstm_loss = at_budget["Transformer"], at_budget["LSTM"]
    claims = [
        Claim.check(f"loss at equal wall time ({budget:.1f} s): Transformer minus LSTM",
                    tf_loss - lstm_loss, "<", 0.0),
    ]
    metrics = {
        "loss_at_budget": at_budget,
        "budget_seconds": budget,
        "steps_per_second": steps_per_s,
        "final_loss": {name: loss[-1] for name, (_, loss) in runs.items()},
        "parameters": sizes,
        "chance_loss": math.log(V),
    }
    summary = (
        f"loss at {budget:.1f} s: Transformer {tf_loss:.3f}, LSTM {lstm_loss:.3f} "
        f"(chance {math.log(V):.3f}); steps/s Transformer {steps_per_s['Transformer']:.0f}, "
        f"LSTM {steps_per_s['LSTM']:.0f}"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
