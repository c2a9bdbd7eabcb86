"""GAU and FLASH: the gated attention unit and mixed chunk attention (Hua et al. 2022,
"Transformer Quality in Linear Time"; note B5).

**GAU** merges attention and the feed-forward into one gated unit with a single, small shared
head. From x (B, N, C)::

    u = silu(x W_u), v = silu(x W_v)            (B, N, E), E = expansion * C
    z = silu(x W_z)                             (B, N, S), S small (128)
    q = z * gamma_q + beta_q,  k = z * gamma_k + beta_k     (per-dim scale and offset)
    A = relu(q k^T / sqrt(S))^2 / N             squared ReLU, no softmax (N x N)
    out = (u ⊙ (A v)) W_o

**FLASH** makes it linear with *mixed chunk attention*: cut the sequence into chunks of C
tokens; inside a chunk the quadratic GAU scores; across chunks a linear attention on two
further scale/offset copies of z (q_lin, k_lin); both are divided by the chunk size C (fixed,
so a causal output never depends on the sequence's total length)::

    non-causal: out_i = sum_{j in chunk(i)} A_ij v_j + q_lin_i^T (sum_{all j} k_lin_j v_j^T) / C
    causal:     out_i = sum_{j in chunk(i), j <= i} A_ij v_j
                        + q_lin_i^T (sum_{j in chunks before chunk(i)} k_lin_j v_j^T) / C
    A_ij = relu(q_i . k_j / sqrt(S))^2 / C

The causal linear part is a cumulative sum over *previous* chunks only (an exclusive prefix
sum of per-chunk sums), so nothing after i leaks in. Cost O(N C S + N S E). With one chunk
(C >= N) and no linear part, FLASH's chunked form is GAU's quadratic form with normaliser C
(tests, float64). Causal FLASH decodes incrementally with a ``FlashCache``: the linear state
of the completed chunks plus the keys/values of the current, unfinished chunk.

Shapes (functions): q, k (B, H, N, S), v (B, H, N, E), usually H = 1 (the one shared head);
modules (B, N, C). ``num_heads`` is accepted for the common interface and must divide
``dim``; GAU has one shared head by design and does not split into heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention.base import build_position
from paperlab.attention.masks import (
    accumulation_dtype,
    check_key_padding_mask,
    check_qkv,
    check_sequence,
)
from paperlab.errors import ArgumentError, ShapeError, check_int
from paperlab.registry import export_attention


def _squared_relu_scores(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.relu(q @ k.transpose(-1, -2) * scale).square()


def gau_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    normalizer: float | None = None,
) -> torch.Tensor:
    """GAU's quadratic attention relu(q k^T * scale)^2 / normalizer @ v: (B, H, N, E).

    ``scale`` defaults to 1/sqrt(S); ``causal`` (bottom-right) keeps keys j <= i + M - N;
    ``key_padding_mask`` (B, M) True = padding. ``normalizer`` defaults to the number of
    keys M (the paper's GAU).
    """
    b, _, n, m, s, _ = check_qkv(q, k, v)
    padding = check_key_padding_mask(key_padding_mask, b, m)
    scale = s**-0.5 if scale is None else scale
    norm = max(m, 1) if normalizer is None else normalizer
    acc = accumulation_dtype(q.dtype)
    a = _squared_relu_scores(q.to(acc), k.to(acc), scale) / norm
    if causal:
        a = a.tril(m - n)
    if padding is not None:
        a = a.masked_fill(padding[:, None, None, :], 0.0)
    return (a @ v.to(acc)).to(q.dtype)


def mixed_chunk_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int,
    causal: bool = False,
    q_lin: torch.Tensor | None = None,
    k_lin: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    state: torch.Tensor | None = None,
) -> torch.Tensor:
    """FLASH's mixed chunk attention: quadratic inside chunks, linear across: (B, H, N, E).

    q, k (B, H, N, S) are the quadratic queries/keys, q_lin, k_lin (B, H, N, S) the linear
    ones (both ``None``: no linear part, i.e. block-diagonal GAU). ``chunk_size`` C >= 1
    (C >= N: one chunk). Self-attention only (N == M); chunks start at token 0. ``state``
    (B, H, S, E), causal only: sum of k_lin v^T over earlier chunks (decoding), added to
    every chunk's linear state.
    """
    b, h, n, m, s, e = check_qkv(q, k, v)
    c = check_int("chunk_size", chunk_size, minimum=1)
    if n != m:
        raise ShapeError(f"mixed chunk attention is self-attention: needs N == M, got {n}, {m}")
    if (q_lin is None) != (k_lin is None):
        raise ArgumentError("give both q_lin and k_lin, or neither")
    if q_lin is not None:
        check_qkv(q_lin, k_lin, v)
        if q_lin.shape != q.shape:
            raise ShapeError(f"q_lin must have q's shape {tuple(q.shape)}, got "
                             f"{tuple(q_lin.shape)}")
    padding = check_key_padding_mask(key_padding_mask, b, m)
    scale = s**-0.5 if scale is None else scale
    acc = accumulation_dtype(q.dtype)
    if state is not None and (not causal or q_lin is None):
        raise ArgumentError("state is the causal linear part's: needs causal=True and q_lin")
    if n == 0:
        return v.new_zeros(b, h, 0, e)
    norm = float(c)
    c = min(c, n)
    t = math.ceil(n / c)
    pad = t * c - n
    keep = torch.ones(b, n, dtype=acc, device=q.device)
    if padding is not None:
        keep = keep.masked_fill(padding, 0.0)
    keep = F.pad(keep, (0, pad)).reshape(b, 1, t, c, 1)  # 0 on padded and filler keys

    def blocks(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, F) -> (B, H, T, C, F)
        x = x.to(acc)
        x = F.pad(x, (0, 0, 0, pad)) if pad else x
        return x.reshape(b, h, t, c, x.shape[-1])

    vb = blocks(v) * keep
    a = _squared_relu_scores(blocks(q), blocks(k), scale) / norm  # (B, H, T, C, C)
    if causal:
        a = a.tril()
    out = a @ vb
    if q_lin is not None:
        kl = blocks(k_lin) * keep
        kv = kl.transpose(-1, -2) @ vb  # per-chunk sums (B, H, T, S, E)
        # causal: exclusive prefix sum (chunks strictly before); else the sum over all chunks
        kv = kv.cumsum(dim=2) - kv if causal else kv.sum(dim=2, keepdim=True)
        if state is not None:
            kv = kv + state[:, :, None].to(acc)
        out = out + blocks(q_lin) @ kv / norm
    return out.reshape(b, h, t * c, e)[:, :, :n].to(q.dtype)


# --- the modules ------------------------------------------------------------------------------


class ScaleOffset(nn.Module):
    """``count`` cheap per-dimension transforms of z: z * gamma_i + beta_i -> count tensors."""

    def __init__(self, dim: int, count: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(count, dim) * 0.02 + 1.0)
        self.beta = nn.Parameter(torch.zeros(count, dim))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = z[..., None, :] * self.gamma + self.beta  # (..., count, S)
        return out.unbind(dim=-2)


@export_attention("gau", note="B5", paper="Hua et al. 2022")
class GatedAttentionUnit(nn.Module):
    """The gated attention unit on (B, N, C): one shared head, squared-ReLU scores, a gate.

    ``GatedAttentionUnit(dim, num_heads=1, *, causal=False, dropout=0.0, bias=True,
    position=None, position_kwargs=None, expansion=2, qk_dim=128)``. ``position``: a rotary
    encoding (rotates q and k). ``dropout`` drops the attention weights. No decoding cache.
    """

    num_qk = 2

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
        expansion: int = 2,
        qk_dim: int = 128,
    ) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        if dim % num_heads:
            raise ArgumentError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ArgumentError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.causal, self.dropout = bool(causal), float(dropout)
        self.hidden = check_int("expansion", expansion, minimum=1) * dim
        self.qk_dim = check_int("qk_dim", qk_dim, minimum=1)
        self.uv_proj = nn.Linear(dim, 2 * self.hidden, bias=bias)
        self.z_proj = nn.Linear(dim, self.qk_dim, bias=bias)
        self.scale_offset = ScaleOffset(self.qk_dim, self.num_qk)
        self.out_proj = nn.Linear(self.hidden, dim, bias=bias)
        self.position = build_position(position, position_kwargs, num_heads=1,
                                       head_dim=self.qk_dim, causal=self.causal,
                                       kinds=("rotary",), owner=type(self).__name__)

    def _inputs(
        self, x: torch.Tensor, offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """u (B, N, E), v (B, 1, N, E) and the scale/offset copies of z, each (B, 1, N, S)."""
        check_sequence(x, self.dim, "x")
        u, v = F.silu(self.uv_proj(x)).chunk(2, dim=-1)
        z = F.silu(self.z_proj(x))
        qks = [t[:, None] for t in self.scale_offset(z)]
        if self.position is not None:
            qks = [self.position.rotate(t, offset=offset) for t in qks]
        return u, v[:, None], qks

    def _check_cache(self, cache: Any, use_cache: bool) -> None:
        if cache is not None or use_cache:
            raise ArgumentError(f"{type(self).__name__} keeps no decoding cache")

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        self._check_cache(cache, use_cache)
        u, v, (q, k) = self._inputs(x)
        b, m = x.shape[0], x.shape[1]
        padding = check_key_padding_mask(key_padding_mask, b, m)
        acc = accumulation_dtype(q.dtype)
        a = _squared_relu_scores(q.to(acc), k.to(acc), self.qk_dim**-0.5) / max(m, 1)
        if self.causal:
            a = a.tril()
        if padding is not None:
            a = a.masked_fill(padding[:, None, None, :], 0.0)
        a = F.dropout(a, self.dropout, self.training)
        o = (a @ v.to(acc)).to(x.dtype)[:, 0]
        return self.out_proj(u * o)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, hidden={self.hidden}, qk_dim={self.qk_dim}, "
                f"causal={self.causal}, dropout={self.dropout}")


@dataclass(frozen=True)
class FlashCache:
    """Causal FLASH's decoding state after ``position`` tokens.

    ``state`` (B, 1, S, E): sum of k_lin v^T over the completed chunks; ``keys`` (B, 1, L, S),
    ``values`` (B, 1, L, E), ``lin_keys`` (B, 1, L, S): the L = position mod C tokens of the
    unfinished chunk (rotated; padded tokens' values and linear keys already zeroed).
    """

    state: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    lin_keys: torch.Tensor
    position: int


@export_attention("flash", note="B5", paper="Hua et al. 2022")
class FLASH(GatedAttentionUnit):
    """FLASH on (B, N, C): a GAU whose attention is mixed chunk attention (linear in N).

    ``FLASH(dim, num_heads=1, *, causal=False, dropout=0.0, bias=True, position=None,
    position_kwargs=None, expansion=2, qk_dim=128, chunk_size=256)``. ``dropout`` drops the
    attention output. Causal FLASH decodes with a ``FlashCache`` (``use_cache=True``); its
    outputs equal the full forward's.
    """

    num_qk = 4

    def __init__(self, dim: int, num_heads: int = 1, *, chunk_size: int = 256,
                 **kwargs: Any) -> None:
        super().__init__(dim, num_heads, **kwargs)
        self.chunk_size = check_int("chunk_size", chunk_size, minimum=1)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> torch.Tensor:
        """(B, N, C) -> (B, N, C), or ``(out, FlashCache)`` with ``use_cache=True``."""
        if cache is None and not use_cache:
            u, v, (q, k, q_lin, k_lin) = self._inputs(x)
            o = mixed_chunk_attention(q, k, v, chunk_size=self.chunk_size, causal=self.causal,
                                      q_lin=q_lin, k_lin=k_lin,
                                      key_padding_mask=key_padding_mask,
                                      scale=self.qk_dim**-0.5)
            o = F.dropout(o, self.dropout, self.training)[:, 0]
            return self.out_proj(u * o)
        o, new_cache = self._decode(x, key_padding_mask, cache)
        out = self.out_proj(o)
        return (out, new_cache) if use_cache else out

    def _decode(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None, cache: FlashCache | None
    ) -> tuple[torch.Tensor, FlashCache]:
        """Gated output (B, N, E) of the new tokens and the updated cache."""
        if not self.causal:
            raise ArgumentError("FLASH: a cache is for causal decoding; build it with causal=True")
        if cache is not None and not isinstance(cache, FlashCache):
            raise ArgumentError(f"cache must be a FlashCache, got {type(cache).__name__}")
        past = 0 if cache is None else cache.position
        u, v, (q, k, q_lin, k_lin) = self._inputs(x, offset=past)
        b, n = x.shape[0], x.shape[1]
        padding = check_key_padding_mask(key_padding_mask, b, n)
        if padding is not None:
            keep = (~padding)[:, None, :, None].to(v.dtype)
            v, k_lin = v * keep, k_lin * keep
        state = v.new_zeros(b, 1, self.qk_dim, v.shape[-1])
        held = 0
        if cache is not None:
            held = cache.keys.shape[-2]
            state = cache.state
            k = torch.cat((cache.keys, k), dim=-2)
            v = torch.cat((cache.values, v), dim=-2)
            k_lin = torch.cat((cache.lin_keys, k_lin), dim=-2)
            zeros = q.new_zeros(b, 1, held, q.shape[-1])  # earlier queries: outputs dropped
            q, q_lin = torch.cat((zeros, q), dim=-2), torch.cat((zeros, q_lin), dim=-2)
        o = mixed_chunk_attention(q, k, v, chunk_size=self.chunk_size, causal=True,
                                  q_lin=q_lin, k_lin=k_lin, scale=self.qk_dim**-0.5,
                                  state=state)[:, :, held:]
        o = F.dropout(o, self.dropout, self.training)[:, 0]
        done = (held + n) // self.chunk_size * self.chunk_size
        state = state + k_lin[:, :, :done].transpose(-1, -2) @ v[:, :, :done]
        new = FlashCache(state, k[:, :, done:], v[:, :, done:], k_lin[:, :, done:], past + n)
        return u * o, new

    def extra_repr(self) -> str:
        return super().extra_repr() + f", chunk_size={self.chunk_size}"


__all__ = ["FLASH", "FlashCache", "GatedAttentionUnit", "gau_attention", "mixed_chunk_attention"]
