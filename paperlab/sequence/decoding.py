"""Decoding an encoder-decoder model: greedy search and beam search with a KV cache.

Greedy decoding takes the most likely next token at every step. Beam search keeps the K
best partial hypotheses by summed log-probability, extends each by every token and keeps the
K best again; a hypothesis that ends in ``eos`` is finished and scored log p(Y) / lp(|Y|)
with GNMT's length penalty lp(n) = ((5 + n) / 6)^alpha (Wu et al. 2016). Width 1 is greedy.

Both run the decoder one token at a time through the model's cache, so each step costs
O(t) attention rather than a full O(t^2) forward pass. The model is duck-typed: it needs
``config.src_vocab_size`` / ``config.tgt_vocab_size``, ``encode(src, src_key_padding_mask)``
-> memory, ``start_cache(memory, padding)`` -> cache, ``decode_step(tgt (B, n), cache)`` ->
(logits (B, n, V), cache), a cache with ``select(rows)`` (beam reordering), and
``forward(src, tgt)`` for ``sequence_log_prob`` (``sequence/transformer.py`` has all).

Shapes: src (B, S) ids; greedy output (B, 1 + L); beams (B, K, 1 + L), scores (B, K).
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.errors import ArgumentError, check_int
from paperlab.sequence.lm import check_tokens


def length_penalty(length: int | torch.Tensor, alpha: float) -> Any:
    """GNMT's length normaliser ((5 + |Y|) / 6)^alpha; alpha = 0 scores by raw log-prob."""
    return ((5.0 + length) / 6.0) ** alpha


def length_penalty_value(length: int, alpha: float) -> float:
    """``length_penalty`` as a float (1.0 when alpha = 0)."""
    return 1.0 if alpha == 0 else float(length_penalty(length, alpha))


def check_decode_args(model: Any, src: torch.Tensor, max_len: int, bos: int, eos: int) -> None:
    """Clear errors for bad source ids, ``max_len``, ``bos`` and ``eos``."""
    check_tokens(src, model.config.src_vocab_size, "src")
    check_int("max_len", max_len, minimum=1)
    v = model.config.tgt_vocab_size
    for name, tok in (("bos", bos), ("eos", eos)):
        check_int(name, tok, minimum=0)
        if tok >= v:
            raise ArgumentError(f"{name} must be a target token id < {v}, got {tok}")


@torch.no_grad()
def greedy_decode(
    model: Any,
    src: torch.Tensor,
    max_len: int,
    bos: int,
    eos: int,
    *,
    src_key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Argmax decoding with the cache: (B, 1 + L) ids starting with ``bos``, L <= max_len.

    A row stops at its first ``eos``; later positions are filled with ``eos``.
    """
    check_decode_args(model, src, max_len, bos, eos)
    was_training = model.training
    model.eval()
    cache = model.start_cache(model.encode(src, src_key_padding_mask), src_key_padding_mask)
    out = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    step = out
    for _ in range(max_len):
        logits, cache = model.decode_step(step, cache)
        nxt = logits[:, -1].argmax(dim=-1)
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        out = torch.cat((out, nxt[:, None]), dim=1)
        done = done | (nxt == eos)
        step = nxt[:, None]
        if bool(done.all()):
            break
    model.train(was_training)
    return out


@torch.no_grad()
def sequence_log_prob(
    model: Any,
    src: torch.Tensor,
    tgt: torch.Tensor,
    eos: int,
    *,
    src_key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(tgt[1:] | src), summed up to and including each row's first ``eos``: (B,)."""
    was_training = model.training
    model.eval()
    logp = torch.log_softmax(
        model(src, tgt[:, :-1], src_key_padding_mask=src_key_padding_mask).double(), dim=-1
    )
    tok = tgt[:, 1:]
    step = logp.gather(-1, tok[..., None])[..., 0]
    is_eos = (tok == eos).long()
    before = torch.cumsum(is_eos, dim=1) - is_eos  # eos seen strictly earlier
    model.train(was_training)
    return (step * (before == 0)).sum(dim=1)


@torch.no_grad()
def beam_search(
    model: Any,
    src: torch.Tensor,
    beam_size: int,
    max_len: int,
    bos: int,
    eos: int,
    *,
    length_penalty: float = 0.0,
    src_key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search with the cache: (sequences (B, K, 1 + L), scores (B, K)), best first.

    Each step extends every live beam by every token, keeps the ``beam_size`` best
    non-eos continuations, and moves an eos continuation ranked within the top
    ``beam_size`` to the finished list with score log p(Y) / lp(|Y|), lp the GNMT
    penalty with alpha = ``length_penalty`` (0: raw log-prob; |Y| counts the eos).
    Beams reaching ``max_len`` tokens finish there. A row stops once its K-th finished
    score beats what any live beam could still reach. Sequences start with ``bos``
    and are filled with ``eos`` after their end; missing hypotheses score -inf.
    """
    check_decode_args(model, src, max_len, bos, eos)
    k = check_int("beam_size", beam_size, minimum=1)
    if not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise ArgumentError(f"length_penalty must be a number >= 0, got {length_penalty!r}")
    alpha = float(length_penalty)
    was_training = model.training
    model.eval()
    b, dev = src.shape[0], src.device
    v = model.config.tgt_vocab_size
    memory = model.encode(src, src_key_padding_mask)
    cache = model.start_cache(memory, src_key_padding_mask)
    cache = cache.select(torch.arange(b, device=dev).repeat_interleave(k))
    seqs = torch.full((b, k, 1), bos, dtype=torch.long, device=dev)
    score = torch.full((b, k), float("-inf"), dtype=torch.float64, device=dev)
    score[:, 0] = 0.0  # one live beam at the start: the others would duplicate it
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b
    width = min(2 * k, k * v)
    for t in range(1, max_len + 1):
        logits, cache = model.decode_step(seqs[:, :, -1].reshape(b * k, 1), cache)
        logp = torch.log_softmax(logits[:, -1].double(), dim=-1).view(b, k, v)
        cand = (score[:, :, None] + logp).view(b, k * v)
        top, idx = cand.topk(width, dim=-1)
        beam, tok = idx // v, idx % v
        is_eos = tok == eos
        last = t == max_len
        for i in range(b):
            if done[i]:
                continue
            for r in range(width):
                s = float(top[i, r])
                if s == float("-inf"):
                    break
                if is_eos[i, r] and r < k:
                    hyp = seqs[i, int(beam[i, r]), 1:].tolist() + [int(tok[i, r])]
                    finished[i].append((s / length_penalty_value(t, alpha), hyp))
            finished[i] = sorted(finished[i], key=lambda h: -h[0])[:k]
        keep = top.masked_fill(is_eos, float("-inf"))
        score, pos = keep.topk(k, dim=-1)
        beam = beam.gather(1, pos)
        tok = tok.gather(1, pos)
        seqs = torch.cat((seqs.gather(1, beam[..., None].expand(-1, -1, t)),
                          tok[..., None]), dim=-1)
        rows = (torch.arange(b, device=dev)[:, None] * k + beam).reshape(-1)
        cache = cache.select(rows)
        if last:  # the live beams end at max_len without an eos
            for i in range(b):
                if done[i]:
                    continue
                for j in range(k):
                    if float(score[i, j]) > float("-inf"):
                        finished[i].append((float(score[i, j])
                                            / length_penalty_value(t, alpha),
                                            seqs[i, j, 1:].tolist()))
                finished[i] = sorted(finished[i], key=lambda h: -h[0])[:k]
        for i in range(b):  # stop a row when no live beam can still enter its top K
            best_live = float(score[i, 0])
            bound = best_live / length_penalty_value(max_len, alpha)
            full = len(finished[i]) == k
            if best_live == float("-inf") or (full and bound <= finished[i][-1][0]):
                done[i] = True
        if last or all(done):
            break
    model.train(was_training)
    out = torch.full((b, k, 1 + max_len), eos, dtype=torch.long, device=dev)
    out[:, :, 0] = bos
    scores = torch.full((b, k), float("-inf"), dtype=torch.float64, device=dev)
    for i in range(b):
        for j, (s, hyp) in enumerate(finished[i]):
            out[i, j, 1:1 + len(hyp)] = torch.tensor(hyp, dtype=torch.long)
            scores[i, j] = s
    longest = max((len(h) for f in finished for _, h in f), default=0)
    return out[:, :, : 1 + longest], scores


__all__ = [
    "beam_search",
    "check_decode_args",
    "greedy_decode",
    "length_penalty",
    "length_penalty_value",
    "sequence_log_prob",
]
