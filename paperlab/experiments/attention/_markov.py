"""A synthetic language for the attention experiments' small LMs: an order-2 Markov chain.

Sequences come from a fixed random chain over ``VOCAB`` tokens whose transition rows
P(next | previous two) are sparse (``SUCCESSORS`` likely successors), so a model must use the
two previous tokens. Two floors are reported beside every loss: the chain's entropy rate
(the best loss any model can reach, about 1.1 nats) and the bigram floor, the loss of the
best model that sees only the previous token (about 3.2 nats): a model above it has not
learned to use attention at all.
"""

from __future__ import annotations

import math

import torch

VOCAB, SUCCESSORS = 32, 4


def markov_chain(seed: int, vocab: int = VOCAB) -> torch.Tensor:
    """Transition table (V, V, V): P(next | previous two), each row on 4 random successors."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.full((vocab, vocab, vocab), -math.inf)
    for a in range(vocab):
        for b in range(vocab):
            nxt = torch.randperm(vocab, generator=g)[:SUCCESSORS]
            logits[a, b, nxt] = torch.randn(SUCCESSORS, generator=g)
    return logits.softmax(-1)


def entropy_rate(table: torch.Tensor) -> float:
    """Mean next-token entropy (nats) under uniform pairs: the loss floor, roughly."""
    p = table.clamp_min(1e-30)
    return float(-(table * p.log()).sum(-1).mean())


def bigram_floor(table: torch.Tensor) -> float:
    """Entropy (nats) of the next token given only the previous one (pairs uniform): the
    loss of the best model that ignores the token before it."""
    p = table.mean(0)  # (V, V): P(next | previous), averaging over the one before
    return float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean())


def sample(table: torch.Tensor, batch: int, n: int, g: torch.Generator) -> torch.Tensor:
    """(batch, n) token sequences from the chain."""
    seq = torch.randint(0, table.shape[-1], (batch, 2), generator=g)
    for _ in range(n - 2):
        probs = table[seq[:, -2], seq[:, -1]]
        seq = torch.cat([seq, torch.multinomial(probs, 1, generator=g)], dim=1)
    return seq


__all__ = ["SUCCESSORS", "VOCAB", "bigram_floor", "entropy_rate", "markov_chain", "sample"]
