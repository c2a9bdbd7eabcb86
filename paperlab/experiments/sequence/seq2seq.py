"""Experiment ``seq2seq-transformer`` (note C2): a tiny encoder-decoder learns to reverse digits.

Task: the source is a string of 3..8 random digits (padded to 8, with a source padding
mask); the target is the same digits reversed, then EOS. Reversal needs every output token
to find its input at a position that moves with the length: the decoder's cross-attention
must do content-and-position lookup into the encoder memory, which an RNN encoder-decoder
squeezes through one state vector.

Model: ``Seq2SeqTransformer`` as published (post-LN, ReLU FFN, sinusoidal positions,
sqrt(d)-scaled embeddings, tied output), d = 64, 4 heads, 2 + 2 layers, no dropout; AdamW
(lr 1e-3, linear warm-up then cosine decay), teacher forcing, cross-entropy on target tokens.
Held-out: 512 sources that never occur in training. Decoding: greedy and beam search
(width 4), both with the KV cache.

Claims (thresholds fixed before any run): (1) greedy exact-match accuracy on the held-out
set is > 0.9 at quick size; (2) beam search (width 4) exact match >= greedy's.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.sequence.transformer import Seq2SeqConfig, Seq2SeqTransformer

BOS, EOS, PAD = 0, 1, 2  # target ids; digits are 3..12 in the target, 0..9 in the source
SRC_PAD = 10
MIN_LEN, MAX_LEN = 3, 8


def sample_batch(
    n: int, g: torch.Generator, exclude: set[tuple[int, ...]] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src (n, MAX_LEN), src padding (n, MAX_LEN), tgt (n, MAX_LEN + 2) = BOS rev EOS PAD..)."""
    rows: list[list[int]] = []
    while len(rows) < n:
        length = int(torch.randint(MIN_LEN, MAX_LEN + 1, (1,), generator=g))
        digits = torch.randint(0, 10, (length,), generator=g).tolist()
        if exclude is not None and tuple(digits) in exclude:
            continue
        rows.append(digits)
    src = torch.full((n, MAX_LEN), SRC_PAD, dtype=torch.long)
    tgt = torch.full((n, MAX_LEN + 2), PAD, dtype=torch.long)
    tgt[:, 0] = BOS
    for i, digits in enumerate(rows):
        src[i, : len(digits)] = torch.tensor(digits)
        tgt[i, 1 : len(digits) + 1] = torch.tensor(digits[::-1]) + 3
        tgt[i, len(digits) + 1] = EOS
    return src, src == SRC_PAD, tgt


def exact_match(pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Per row: the prediction equals the target up to and including its EOS: (B,) bool."""
    n = tgt.shape[1]
    if pred.shape[1] < n:
        pred = torch.cat((pred, torch.full((pred.shape[0], n - pred.shape[1]), EOS)), dim=1)
    pred = pred[:, :n]
    relevant = torch.cumsum((tgt == EOS).long(), dim=1) - (tgt == EOS).long() == 0
    return ((pred == tgt) | ~relevant).all(dim=1)


@export_experiment(
    "seq2seq-transformer",
    note="C2 encoder-decoder Transformer",
    title="A tiny encoder-decoder Transformer learns to reverse digit strings",
    tags=("sequence", "transformer"),
)
def seq2seq_transformer(ctx: Context) -> Result:
    """Train on digit reversal; greedy and beam-search exact match on held-out strings."""
    steps = ctx.pick(smoke=15, quick=400, full=1500)
    batch = ctx.pick(smoke=16, quick=64, full=128)
    n_eval = ctx.pick(smoke=24, quick=512, full=2000)
    torch.manual_seed(ctx.seed)
    g_eval, g_train = ctx.generator(1), ctx.generator(2)
    src_e, pad_e, tgt_e = sample_batch(n_eval, g_eval)
    held_out = {tuple(row[~p].tolist()) for row, p in zip(src_e, pad_e)}

    cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, dim=64, num_heads=4,
                        num_encoder_layers=2, num_decoder_layers=2, dropout=0.0,
                        max_positions=MAX_LEN + 2)
    model = Seq2SeqTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    warm = max(1, steps // 10)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    for _ in ctx.track(range(steps), label="train"):
        src, pad, tgt = sample_batch(batch, g_train, exclude=held_out)
        logits = model(src, tgt[:, :-1], src_key_padding_mask=pad)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0

    model.eval()
    max_out = MAX_LEN + 1
    greedy = model.greedy_decode(src_e, max_out, BOS, EOS, src_key_padding_mask=pad_e)
    beams, _ = model.beam_search(src_e, 4, max_out, BOS, EOS, src_key_padding_mask=pad_e)
    acc_greedy = float(exact_match(greedy, tgt_e).float().mean())
    acc_beam = float(exact_match(beams[:, 0], tgt_e).float().mean())
    lengths = (~pad_e).sum(1)
    by_len = {
        int(n): float(exact_match(greedy[lengths == n], tgt_e[lengths == n]).float().mean())
        for n in range(MIN_LEN, MAX_LEN + 1) if bool((lengths == n).any())
    }

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.semilogy(losses, lw=0.8)
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (teacher forcing)")
    ax1.set_title(f"training loss ({model.num_parameters():,} parameters)")
    ax2.bar([str(k) for k in by_len], list(by_len.values()), color="tab:blue",
            label="greedy, by source length")
    ax2.axhline(acc_greedy, color="tab:blue", ls="--", lw=1, label=f"greedy: {acc_greedy:.3f}")
    ax2.axhline(acc_beam, color="tab:orange", ls=":", lw=1.5, label=f"beam 4: {acc_beam:.3f}")
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("source length")
    ax2.set_ylabel("held-out exact match")
    ax2.legend(fontsize=8, loc="lower left")
    ctx.savefig(fig, "loss_and_accuracy")

    claims = [
        Claim.check("greedy exact-match accuracy on held-out digit strings (reversal)",
                    acc_greedy, ">", 0.9),
        Claim.check("beam search (width 4) exact match minus greedy's", acc_beam - acc_greedy,
                    ">=", 0.0),
    ]
    metrics = {
        "exact_match_greedy": acc_greedy,
        "exact_match_beam4": acc_beam,
        "exact_match_by_length": by_len,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "steps": steps,
        "batch": batch,
        "held_out": n_eval,
        "parameters": model.num_parameters(),
        "train_seconds": train_s,
    }
    summary = (
        f"held-out exact match: greedy {acc_greedy:.3f}, beam(4) {acc_beam:.3f} after {steps} "
        f"steps (final loss {metrics['final_loss']:.3f}, {train_s:.1f} s)"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
