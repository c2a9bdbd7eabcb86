"""Cheaper softmax attention: a sliding window (sparse) and a low-rank projection (Linformer).

Note B2 surveys the two ways to get below the O(N^2) score matrix while keeping the softmax:

**Sparse / local attention** (Child et al. 2019's local pattern; Beltagy et al. 2020,
Longformer's sliding window): each query attends only to keys within a window of positions,
``|p_i - j| < window`` (causal: ``0 <= p_i - j < window``). Attention then costs
O(N * window * D). ``local_attention`` computes it **blocked**: cut the sequence into blocks
of ``window`` tokens; every key a query in block t may see lies in blocks t-1, t, t+1 (causal:
t-1, t), so each block scores 3 * window keys (a strided view of the padded keys, no copy),
the band mask is applied inside, and nothing of size N x N is ever built. It equals full
attention with the band mask ``band_mask(n, m, window)`` (tests). Queries are the last N of
the M keys (bottom-right, as in ``softmax.py``), which lets a decoder keep only the last
window - 1 keys in its cache.

**Low-rank projection** (Wang et al. 2020, "Linformer"): the N x N attention matrix is
approximately low rank, so project the keys and values *along the sequence* to k << N rows
with learned E, F (k x N) before attending::

    out = softmax(Q (E K)^T * scale) (F V)        (N x k scores: O(N k D))

E and F are tied to a maximum length ``seq_len``; shorter inputs use their first N columns.
Every query sees a mixture of all keys, so there is no causal Linformer (a mixture would leak
the future) and no KV cache. Padded keys are zeroed before the projection.

Shapes: q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv); modules (B, N, C).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention.base import AttentionModule, KVCache
from paperlab.attention.masks import (
    accumulation_dtype,
    check_key_padding_mask,
    check_qkv,
    check_sequence,
)
from paperlab.attention.softmax import dropout_weights, masked_softmax, scaled_dot_product_attention
from paperlab.errors import ArgumentError, ConfigError, ShapeError, check_int
from paperlab.registry import export_attention

# --- local (sliding-window) attention --------------------------------------------------------


def local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Softmax attention restricted to keys within ``window`` positions: (B, H, N, Dv).

    Query i sits at position p_i = i + M - N (M >= N) and sees keys j with |p_i - j| < window
    (``causal``: 0 <= p_i - j < window). Blocked: O(N * window) time and memory. Rows with no
    visible key (all padding) return 0.
    """
    shape = check_qkv(q, k, v)
    b, h, n, m, d, dv = shape
    w = check_int("window", window, minimum=1)
    if n > m:
        raise ShapeError(
            f"local attention needs the N={n} queries to be the last of the M={m} keys "
            f"(N <= M): q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ArgumentError(f"dropout_p must be a probability in [0, 1), got {dropout_p!r}")
    key_padding_mask = check_key_padding_mask(key_padding_mask, b, m)
    acc = accumulation_dtype(q.dtype)
    scale = d**-0.5 if scale is None else scale
    if n == 0:
        return q.new_zeros(b, h, 0, dv)

    c = w  # block size: a block's keys lie in its own and its neighbour blocks
    t = math.ceil(m / c)
    before = m - n  # queries are left-padded so that query row p sits at key position p
    after = t * c - m
    span = 2 * c if causal else 3 * c
    right = after if causal else after + c
    qb = F.pad(q.to(acc), (0, 0, before, after)).view(b, h, t, c, d)
    # keys padded by one block on the left (and right): window t covers blocks t-1, t (, t+1)
    kw = F.pad(k.to(acc), (0, 0, c, right)).unfold(2, span, c)  # (B, H, T, D, span)
    vw = F.pad(v.to(acc), (0, 0, c, right)).unfold(2, span, c)  # (B, H, T, Dv, span)
    scores = (qb @ kw) * scale  # (B, H, T, c, span)

    device = q.device
    row = torch.arange(c, device=device)[:, None]
    col = torch.arange(span, device=device)[None, :]
    distance = row + c - col  # query position - key position inside a window
    band = distance.abs() < w
    if causal:
        band &= distance >= 0
    key_pos = torch.arange(t, device=device)[:, None] * c - c + col  # (T, span)
    real = (key_pos >= 0) & (key_pos < m)
    visible = band[None] & real[:, None, :]  # (T, c, span)
    if key_padding_mask is not None:
        pad = F.pad(key_padding_mask, (c, right), value=True).unfold(1, span, c)  # (B, T, span)
        visible = visible[None, None] & ~pad[:, None, :, None, :]
    weights = masked_softmax(scores, visible, finite=True)
    weights = dropout_weights(weights, float(dropout_p), generator)
    out = weights @ vw.transpose(-1, -2)  # (B, H, T, c, Dv)
    out = out.reshape(b, h, t * c, dv)[:, :, before : before + n]
    return out.to(q.dtype)


@export_attention("local", note="B2", paper="Child et al. 2019; Beltagy et al. 2020")
class LocalAttention(AttentionModule):
    """Multi-head sliding-window attention on (B, N, C); each token sees ``window`` neighbours.

    ``LocalAttention(dim, num_heads, window=64, *, causal=False, dropout=0.0, bias=True,
    position=None, position_kwargs=None, scale=None)``; ``position`` may be rotary. With
    ``use_cache=True`` (causal) the ``KVCache`` keeps only the last window - 1 keys.
    """

    position_kinds = ("rotary",)

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int = 64,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
        scale: float | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads,
            causal=causal,
            dropout=dropout,
            bias=bias,
            position=position,
            position_kwargs=position_kwargs,
        )
        self.window = check_int("window", window, minimum=1)
        self.scale = self.head_dim**-0.5 if scale is None else float(scale)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        """(B, N, C) -> (B, N, C), or ``(out, cache)`` with ``use_cache=True``."""
        self.check_cache(cache, use_cache, KVCache)
        q, k, v = self.project(x)
        b, _, n, _ = q.shape
        past = cache.position if cache is not None else 0
        q, k = self.rotate(q, past), self.rotate(k, past)
        padding = check_key_padding_mask(key_padding_mask, b, n)
        if cache is not None:
            k, v, padding = cache.extend(k, v, padding)
        new_cache = None
        if use_cache:
            keep = self.window - 1  # all a future query can still see
            start = max(k.shape[-2] - keep, 0)
            tail = None if padding is None else padding[:, start:]
            new_cache = KVCache(k[:, :, start:], v[:, :, start:], tail, past + n)
        o = local_attention(
            q,
            k,
            v,
            self.window,
            causal=self.causal,
            key_padding_mask=padding,
            scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0,
        )
        out = self.output(o)
        return (out, new_cache) if use_cache else out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", window={self.window}"


# --- Linformer -------------------------------------------------------------------------------


def linformer_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    e: torch.Tensor,
    f: torch.Tensor,
    *,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """softmax(q (E k)^T * scale) (F v): (B, H, N, Dv), with E, F (r, L), L >= M.

    Only the first M columns of E and F are used (inputs shorter than ``seq_len``); padded
    keys and values (``key_padding_mask`` (B, M), True = padding) are zeroed first.
    """
    b, h, n, m, d, dv = check_qkv(q, k, v)
    for name, p in (("e", e), ("f", f)):
        if not isinstance(p, torch.Tensor) or p.dim() != 2 or p.shape[1] < m:
            got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise ShapeError(
                f"{name} must be a (r, L) projection with L >= M={m} keys, got {got}"
            )
    if e.shape[0] != f.shape[0]:
        raise ShapeError(
            f"e and f must project to the same r, got e {tuple(e.shape)}, f {tuple(f.shape)}"
        )
    key_padding_mask = check_key_padding_mask(key_padding_mask, b, m)
    if key_padding_mask is not None:
        keep = ~key_padding_mask[:, None, :, None]
        k, v = k * keep, v * keep
    e, f = e[:, :m].to(k.dtype), f[:, :m].to(v.dtype)
    k_low = e @ k  # (B, H, r, D): r mixtures of the keys
    v_low = f @ v  # (B, H, r, Dv)
    return scaled_dot_product_attention(
        q, k_low, v_low, scale=scale, dropout_p=dropout_p, generator=generator
    )


@export_attention("linformer", note="B2", paper="Wang et al. 2020 (Linformer)")
class LinformerAttention(AttentionModule):
    """Multi-head Linformer attention on (B, N, C): keys and values projected to k rows.

    ``LinformerAttention(dim, num_heads, seq_len=512, k=64, *, causal=False, dropout=0.0,
    bias=True, position=None, position_kwargs=None, share_kv=False, scale=None)``: E, F are
    (k, seq_len) parameters shared by the heads (``share_kv``: F = E); inputs may be shorter
    than ``seq_len``, not longer. Non-causal only, no position encoding inside (add an absolute
    one to the input), no cache.
    """

    position_kinds = ()

    def __init__(
        self,
        dim: int,
        num_heads: int,
        seq_len: int = 512,
        k: int = 64,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
        share_kv: bool = False,
        scale: float | None = None,
    ) -> None:
        if causal:
            raise ConfigError(
                "Linformer cannot be causal: each projected key mixes all positions, "
                "future ones included"
            )
        super().__init__(
            dim,
            num_heads,
            dropout=dropout,
            bias=bias,
            position=position,
            position_kwargs=position_kwargs,
        )
        self.seq_len = check_int("seq_len", seq_len, minimum=1)
        self.k = check_int("k", k, minimum=1)
        self.scale = self.head_dim**-0.5 if scale is None else float(scale)
        self.E = nn.Parameter(torch.randn(k, seq_len) / math.sqrt(k))
        self.F = None if share_kv else nn.Parameter(torch.randn(k, seq_len) / math.sqrt(k))

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> torch.Tensor:
        """(B, N, C) -> (B, N, C) for N <= seq_len."""
        self.check_cache(cache, use_cache, KVCache)
        _, n = check_sequence(x, self.dim, "x")
        if n > self.seq_len:
            raise ShapeError(
                f"x has N={n} tokens but this Linformer's projections cover seq_len="
                f"{self.seq_len}; build it with seq_len >= {n}"
            )
        q, k, v = self.project(x)
        o = linformer_attention(
            q,
            k,
            v,
            self.E,
            self.E if self.F is None else self.F,
            key_padding_mask=key_padding_mask,
            scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.output(o)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", seq_len={self.seq_len}, k={self.k}"
