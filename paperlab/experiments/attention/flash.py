"""Note B5, GAU/FLASH: at equal parameters FLASH matches a softmax Transformer, at linear cost.

FLASH (Hua et al. 2022, "Transformer Quality in Linear Time") replaces multi-head softmax
attention by a gated attention unit with one shared head and squared-ReLU scores, and makes it
linear in the length by mixed chunk attention: quadratic inside chunks of C tokens, linear
(a running d x e state) across chunks. The note's two claims, measured here:

1. quality: two small decoder LMs with the same number of parameters -- one with softmax
   attention (torch's fused SDPA), one with FLASH -- trained for the same steps on the same
   synthetic language reach comparable loss (claim: FLASH's held-out loss is at most 5 %
   above the softmax model's);
2. cost: the time of one FLASH layer's forward+backward grows about linearly in the length n
   (fitted exponent over the three largest n below 1.3), while softmax attention's grows
   faster.

The language: sequences from a fixed random order-2 Markov chain over 32 tokens whose
transition rows are sparse (4 likely successors), so a model must use the two previous tokens;
the chain's entropy rate is the best achievable loss and is reported beside the losses. Both
LMs use RoPE, pre-LayerNorm blocks and an MLP; the softmax model's MLP ratio is chosen so its
parameter count matches FLASH's.
"""

from __future__ import annotations

import math

import torch

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import create, export_experiment
from paperlab.sequence.lm import DecoderLM, LMConfig, lm_loss
from paperlab.timing import growth_exponent, time_sweep

VOCAB, SUCCESSORS = 32, 4


def markov_chain(seed: int) -> torch.Tensor:
    """Transition table (V, V, V): P(next | previous two), each row on 4 random successors."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.full((VOCAB, VOCAB, VOCAB), -math.inf)
    for a in range(VOCAB):
        for b in range(VOCAB):
            nxt = torch.randperm(VOCAB, generator=g)[:SUCCESSORS]
            logits[a, b, nxt] = torch.randn(SUCCESSORS, generator=g)
    return logits.softmax(-1)


def entropy_rate(table: torch.Tensor) -> float:
    """Mean next-token entropy (nats) under uniform pairs: the loss floor, roughly."""
    p = table.clamp_min(1e-30)
    return float(-(table * p.log()).sum(-1).mean())


def sample(table: torch.Tensor, batch: int, n: int, g: torch.Generator) -> torch.Tensor:
    """(batch, n) token sequences from the chain."""
    seq = torch.randint(0, VOCAB, (batch, 2), generator=g)
    for _ in range(n - 2):
        probs = table[seq[:, -2], seq[:, -1]]
        seq = torch.cat([seq, torch.multinomial(probs, 1, generator=g)], dim=1)
    return seq


def build_pair(dim: int, layers: int, chunk: int) -> dict[str, DecoderLM]:
    """A FLASH LM and a softmax LM whose MLP ratio is set to match its parameter count."""
    flash = DecoderLM(
        LMConfig(
            vocab_size=VOCAB,
            dim=dim,
            num_layers=layers,
            num_heads=4,
            attention="flash",
            attention_kwargs={"chunk_size": chunk, "qk_dim": dim},
        )
    )
    target = flash.num_parameters()

    def softmax_lm(ratio: float) -> DecoderLM:
        return DecoderLM(
            LMConfig(
                vocab_size=VOCAB,
                dim=dim,
                num_layers=layers,
                num_heads=4,
                attention="softmax",
                mlp_ratio=ratio,
            )
        )

    ratio = min(
        (r / 8 for r in range(8, 129)), key=lambda r: abs(softmax_lm(r).num_parameters() - target)
    )
    return {"FLASH": flash, "softmax": softmax_lm(ratio)}


def train_lm(
    model: DecoderLM, table: torch.Tensor, steps: int, n: int, ctx: Context, label: str
) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    g = ctx.generator(offset=1)  # the same batches for both models
    losses = []
    for _ in ctx.track(range(steps), label=f"train {label}"):
        tokens = sample(table, 16, n + 1, g)
        loss = lm_loss(model(tokens[:, :-1]), tokens[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@export_experiment(
    "flash-vs-transformer",
    note="B5 GAU / FLASH",
    title="FLASH matches a softmax Transformer at equal parameters, in linear time",
    tags=("attention", "flash"),
)
def flash_vs_transformer(ctx: Context) -> Result:
    """Equal-parameter LMs (loss at equal steps) and one layer's time against length."""
    steps = ctx.pick(smoke=20, quick=200, full=1500)
    n, chunk = ctx.pick(smoke=32, quick=64, full=128), ctx.pick(smoke=16, quick=32, full=64)
    table = markov_chain(ctx.seed)
    torch.manual_seed(ctx.seed)
    models = build_pair(dim=64, layers=2, chunk=chunk)
    curves = {name: train_lm(m, table, steps, n, ctx, name) for name, m in models.items()}
    test = sample(table, 64, n + 1, ctx.generator(offset=2))
    with torch.no_grad():
        held = {name: lm_loss(m(test[:, :-1]), test[:, 1:]).item() for name, m in models.items()}
    params = {name: m.num_parameters() for name, m in models.items()}

    sizes = ctx.pick(
        smoke=[128, 256, 512], quick=[256, 512, 1024, 2048], full=[512, 1024, 2048, 4096, 8192]
    )
    dim = 64
    layers = {
        "FLASH layer": create(
            "attention", "flash", dim=dim, num_heads=1, causal=True, chunk_size=128, qk_dim=64
        ),
        "softmax attention (SDPA)": create(
            "attention", "softmax", dim=dim, num_heads=4, causal=True
        ),
    }

    def make(length: int) -> dict[str, object]:
        x = torch.randn(1, length, dim, generator=ctx.generator(offset=3), requires_grad=True)
        return {name: (lambda m=m: m(x).sum().backward()) for name, m in layers.items()}

    times = time_sweep(ctx.track(sizes, label="timing"), make, repeats=5)
    exponents = {name: growth_exponent(sizes, t) for name, t in times.items()}

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, losses in curves.items():
        w = max(1, steps // 20)
        smooth = [
            sum(losses[max(0, i - w) : i + 1]) / len(losses[max(0, i - w) : i + 1])
            for i in range(len(losses))
        ]
        a.plot(smooth, label=f"{name} ({params[name]:,} params): held-out {held[name]:.3f}")
    a.axhline(entropy_rate(table), color="grey", ls=":", label="entropy rate of the chain")
    a.set(
        xlabel="step",
        ylabel="training loss (moving average)",
        title=f"equal-parameter LMs, n = {n}",
    )
    a.legend(fontsize=8)
    for name, t in times.items():
        b.loglog(sizes, t, "o-", label=f"{name}: n^{exponents[name]:.2f}")
    b.set(xlabel="length n", ylabel="forward+backward seconds", title="one layer, batch 1")
    b.legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "flash_vs_transformer")

    ratio = held["FLASH"] / held["softmax"]
    claims = [
        Claim.check(
            "held-out loss FLASH / softmax Transformer at equal params and steps", ratio, "<=", 1.05
        ),
        Claim.check(
            "parameter counts match: |FLASH - softmax| / softmax",
            abs(params["FLASH"] - params["softmax"]) / params["softmax"],
            "<",
            0.05,
        ),
        Claim.check(
            "FLASH layer time growth exponent over the 3 largest n",
            exponents["FLASH layer"],
            "<",
            1.3,
        ),
    ]
    metrics = {
        "held_out_loss": held,
        "parameters": params,
        "entropy_rate": entropy_rate(table),
        "sizes": sizes,
        "seconds": times,
        "exponents": exponents,
        "steps": steps,
    }
    summary = (
        f"held-out loss FLASH {held['FLASH']:.3f} vs softmax {held['softmax']:.3f} "
        f"(floor ~{entropy_rate(table):.3f}) at {params['FLASH']:,}/{params['softmax']:,} "
        f"params; time ~ n^{exponents['FLASH layer']:.2f} (FLASH) vs "
        f"n^{exponents['softmax attention (SDPA)']:.2f} (softmax)"
    )
    return Result(summary, metrics, claims)
