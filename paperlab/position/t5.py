"""T5's bucketed relative position bias (Raffel et al. 2020; note A1).

The idea: the simplest relative encoding is one learned scalar per head and per relative
distance, added to the attention logits. T5 shares it across layers and, to cover any length
with a few parameters, pools distances into buckets: the first half of the buckets are exact
distances 0, 1, ..., the second half are logarithmically wider bins up to ``max_distance``;
every farther distance shares the last bucket (which is what lets T5 run past its training
length). A bidirectional (encoder) bias gives keys before and after the query their own half
of the buckets; a causal (decoder) bias only distinguishes keys before the query.

Formula, with rel = key_pos - query_pos, n = |rel| (bidirectional) or max(-rel, 0) (causal),
B buckets per direction and exact = B / 2::

    bucket(n) = n                                                          if n < exact
              = min(B - 1, exact + floor(log(n / exact) / log(max_distance / exact)
                                          * (B - exact)))                  otherwise
    logits[h, i, j] += bias[bucket(j - i), h]        (no 1/sqrt(d) scaling in T5)

Shapes: ``t5_relative_bucket`` maps integers (...) to buckets (...); ``T5RelativeBias`` gives
(1, H, N, M) for queries at ``offset..offset+N-1`` and keys at ``0..M-1``. Its weight is named
``relative_attention_bias`` (num_buckets, H) as in HF ``T5Attention``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from paperlab.errors import ArgumentError, check_int
from paperlab.position.base import PositionBias, check_qk, query_offset
from paperlab.registry import export_position


def _check_buckets(bidirectional: bool, num_buckets: int, max_distance: int) -> None:
    check_int("num_buckets", num_buckets, minimum=4 if bidirectional else 2)
    check_int("max_distance", max_distance, minimum=1)
    exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
    if max_distance <= exact:
        raise ArgumentError(
            f"max_distance must exceed the {exact} exact buckets (num_buckets={num_buckets}), "
            f"got {max_distance}"
        )


def t5_relative_bucket(
    relative_position: torch.Tensor,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> torch.Tensor:
    """Bucket in [0, num_buckets) of each integer ``relative_position`` = key - query."""
    _check_buckets(bidirectional, num_buckets, max_distance)
    rel = relative_position.long()
    if bidirectional:
        num_buckets //= 2
        offset = (rel > 0).long() * num_buckets  # keys after the query: the upper half
        n = rel.abs()
    else:
        offset = torch.zeros_like(rel)
        n = (-rel).clamp(min=0)  # keys after the query all fall in bucket 0
    exact = num_buckets // 2
    far = n.clamp(min=exact).float()  # clamp only keeps log() finite where n < exact
    log_bucket = exact + (
        torch.log(far / exact) / math.log(max_distance / exact) * (num_buckets - exact)
    ).long()
    log_bucket = log_bucket.clamp(max=num_buckets - 1)
    return offset + torch.where(n < exact, n, log_bucket)


@export_position("t5", note="A1", paper="Raffel et al. 2020 (T5)")
class T5RelativeBias(PositionBias):
    """Learned per-head scalar bias of the bucketed relative distance: (1, H, N, M)."""

    content_dependent = False

    def __init__(
        self,
        num_heads: int,
        num_buckets: int = 32,
        max_distance: int = 128,
        *,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        _check_buckets(bidirectional, num_buckets, max_distance)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.bidirectional = bool(bidirectional)
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)
        nn.init.normal_(self.relative_attention_bias.weight, std=0.02)

    def default_scale(self, head_dim: int) -> float:
        """T5 does not scale its logits (the 1/sqrt(d) is folded into the initialisation)."""
        check_int("head_dim", head_dim, minimum=1)
        return 1.0

    def bias(self, n: int, m: int, *, offset: int | None = None) -> torch.Tensor:
        """(1, H, N, M) for N queries at ``offset..`` (default M - N) against M keys."""
        check_int("n", n, minimum=0)
        check_int("m", m, minimum=0)
        off = query_offset(n, m, offset)
        device = self.relative_attention_bias.weight.device
        query = torch.arange(off, off + n, device=device)
        key = torch.arange(m, device=device)
        buckets = t5_relative_bucket(
            key[None, :] - query[:, None], self.bidirectional, self.num_buckets, self.max_distance
        )
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        *,
        scale: float | None = None,
        offset: int | None = None,
    ) -> torch.Tensor:
        """The bias for q (B, H, N, D) against k (B, H, M, D); ``scale`` does not enter."""
        check_qk(q, k, self.num_heads)
        return self.bias(q.shape[-2], k.shape[-2], offset=offset).to(q.dtype)

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, num_buckets={self.num_buckets}, "
            f"max_distance={self.max_distance}, bidirectional={self.bidirectional}"
        )
