"""TransNormer: NormAttention and DiagAttention (Qin et al. 2022, "The Devil in Linear
Transformer"; note B4).

The paper names two faults of vanilla linear attention phi(Q)(phi(K)^T V) / phi(Q) phi(K)^T 1:

- **unbounded gradients**: the denominator phi(q_i) . z can be arbitrarily small, and the
  output's gradient scales with 1 / (phi(q_i) . z);
- **attention dilution**: without the softmax's sharpening, the weights spread over far tokens
  instead of concentrating near the query.

TransNormer's answers:

- ``norm_attention``: drop the denominator and normalise the output instead::

      O = Norm(phi(Q) (phi(K)^T V))         Norm = RMSNorm (default) or LayerNorm over Dv

  The norm is scale-invariant, so the output is bounded whatever the kernel sums are, and its
  gradient stays bounded too. Causal: phi(q_i)^T sum_{j<=i} phi(k_j) v_j^T by the chunked
  prefix sums of ``linear.py`` (``linear_attention_features(normalize=False)``).
- ``diag_attention``: softmax attention inside non-overlapping blocks of ``block_size`` tokens
  (block-diagonal): local by construction, used in the early layers where the paper finds
  attention should be local. Causal: causal within the block.
- ``TransNormer``: a stack whose first half uses DiagAttention and second half NormAttention
  (pre-norm residual blocks with a GLU feed-forward).

Shapes: q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv); modules (B, N, C).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention.base import AttentionModule
from paperlab.attention.linear import feature_map_fn, linear_attention_features
from paperlab.attention.masks import accumulation_dtype, check_key_padding_mask, check_qkv
from paperlab.attention.softmax import scaled_dot_product_attention
from paperlab.errors import ArgumentError, ShapeError, check_int
from paperlab.registry import export_attention

NORMS = ("rmsnorm", "layernorm")


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ArgumentError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def _normalise(x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """RMSNorm or LayerNorm over the last axis, without an affine part."""
    if norm == "layernorm":
        return F.layer_norm(x, x.shape[-1:], eps=eps)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


def norm_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    feature_map: str = "elu+1",
    norm: str = "rmsnorm",
    chunk_size: int | None = None,
    key_padding_mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Norm(phi(Q)(phi(K)^T V)): linear attention without the denominator, normalised.

    q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv) -> (B, H, N, Dv); the norm (no affine
    weights; the module adds them) runs over Dv per head. ``causal`` needs N == M.
    """
    b, _, _, m, _, _ = check_qkv(q, k, v)
    phi = feature_map_fn(feature_map)
    norm = _check_norm(norm)
    padding = check_key_padding_mask(key_padding_mask, b, m)
    acc = accumulation_dtype(q.dtype)
    fq, fk = phi(q.to(acc)), phi(k.to(acc))
    if padding is not None:
        fk = fk.masked_fill(padding[:, None, :, None], 0.0)
    num = linear_attention_features(fq, fk, v.to(acc), causal=causal, chunk_size=chunk_size,
                                    normalize=False)
    return _normalise(num, norm, eps).to(q.dtype)


def diag_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention within non-overlapping blocks of ``block_size`` tokens: (B, H, N, Dv).

    Self-attention only (N == M): token i sees the tokens of its own block
    [block_size * floor(i / block_size), ...) (causal: only those at or before i).
    """
    b, h, n, m, d, dv = check_qkv(q, k, v)
    w = check_int("block_size", block_size, minimum=1)
    if n != m:
        raise ShapeError(f"diag attention is self-attention: needs N == M, got N={n}, M={m}")
    padding = check_key_padding_mask(key_padding_mask, b, m)
    t = max(1, math.ceil(n / w))
    pad = t * w - n
    pad_mask = torch.zeros(b, n, dtype=torch.bool, device=q.device) if padding is None else padding
    pad_mask = F.pad(pad_mask, (0, pad), value=True)

    def blocks(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, E) -> (B * T, H, W, E)
        x = F.pad(x, (0, 0, 0, pad)) if pad else x
        return x.reshape(b, h, t, w, x.shape[-1]).transpose(1, 2).reshape(b * t, h, w, -1)

    o = scaled_dot_product_attention(
        blocks(q), blocks(k), blocks(v), causal=causal, scale=scale,
        key_padding_mask=pad_mask.reshape(b * t, w),
    )
    o = o.reshape(b, t, h, w, dv).transpose(1, 2).reshape(b, h, t * w, dv)
    return o[:, :, :n]


# --- the modules ------------------------------------------------------------------------------


@export_attention("norm-attention", note="B4", paper="Qin et al. 2022")
class NormAttention(AttentionModule):
    """TransNormer's NormAttention on (B, N, C): Norm(phi(Q)(phi(K)^T V)) W_o.

    ``NormAttention(dim, num_heads, *, causal=False, dropout=0.0, bias=True, position=None,
    position_kwargs=None, feature_map="elu+1", norm="rmsnorm", chunk_size=None, eps=1e-6)``.
    The norm has a learned per-channel gain (over all heads' outputs, as in the paper).
    ``dropout`` drops the attention output. No decoding cache.
    """

    position_kinds = ()

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
        feature_map: str = "elu+1",
        norm: str = "rmsnorm",
        chunk_size: int | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(dim, num_heads, causal=causal, dropout=dropout, bias=bias,
                         position=position, position_kwargs=position_kwargs)
        feature_map_fn(feature_map)
        self.feature_map = feature_map
        self.norm = _check_norm(norm)
        if chunk_size is not None:
            if not causal:
                raise ArgumentError(f"chunk_size={chunk_size} only applies to causal=True")
            check_int("chunk_size", chunk_size, minimum=1)
        self.chunk_size = chunk_size
        self.eps = float(eps)
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        if cache is not None or use_cache:
            raise ArgumentError("NormAttention keeps no decoding cache")
        q, k, v = self.project(x)
        o = norm_attention(q, k, v, causal=self.causal, feature_map=self.feature_map,
                           norm=self.norm, chunk_size=self.chunk_size,
                           key_padding_mask=key_padding_mask, eps=self.eps)
        o = F.dropout(o, self.dropout, self.training)
        b, h, n, dv = o.shape
        return self.out_proj(o.transpose(1, 2).reshape(b, n, h * dv) * self.gain)


@export_attention("diag-attention", note="B4", paper="Qin et al. 2022")
class DiagAttention(AttentionModule):
    """TransNormer's DiagAttention on (B, N, C): softmax attention in blocks of ``block_size``.

    ``DiagAttention(dim, num_heads, *, causal=False, dropout=0.0, bias=True, position=None,
    position_kwargs=None, block_size=64)``. ``dropout`` drops the attention output.
    No decoding cache.
    """

    position_kinds = ()

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
        block_size: int = 64,
    ) -> None:
        super().__init__(dim, num_heads, causal=causal, dropout=dropout, bias=bias,
                         position=position, position_kwargs=position_kwargs)
        self.block_size = check_int("block_size", block_size, minimum=1)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        if cache is not None or use_cache:
            raise ArgumentError("DiagAttention keeps no decoding cache")
        q, k, v = self.project(x)
        o = diag_attention(q, k, v, block_size=self.block_size, causal=self.causal,
                           key_padding_mask=key_padding_mask)
        return self.output(F.dropout(o, self.dropout, self.training))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", block_size={self.block_size}"


class GLU(nn.Module):
    """TransNormer's feed-forward: (x W_1 ⊙ x W_2) W_3 (a simple gated linear unit)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.w1(x) * self.w2(x))


class TransNormerLayer(nn.Module):
    """Pre-norm block: x + Attn(RMSNorm(x)), then x + GLU(RMSNorm(x)); Attn Diag or Norm."""

    def __init__(self, dim: int, num_heads: int, *, attention: str, causal: bool = False,
                 block_size: int = 64, hidden: int | None = None) -> None:
        super().__init__()
        if attention == "diag":
            self.attn: nn.Module = DiagAttention(dim, num_heads, causal=causal,
                                                 block_size=block_size)
        elif attention == "norm":
            self.attn = NormAttention(dim, num_heads, causal=causal)
        else:
            raise ArgumentError(f"attention must be 'diag' or 'norm', got {attention!r}")
        self.kind = attention
        self.norm1, self.norm2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.ffn = GLU(dim, hidden or 2 * dim)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_padding_mask=key_padding_mask)
        return x + self.ffn(self.norm2(x))


class TransNormer(nn.Module):
    """A stack of ``depth`` layers: DiagAttention in the first ``num_diag`` (default half),
    NormAttention in the rest. (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, num_heads: int, depth: int, *, causal: bool = False,
                 block_size: int = 64, num_diag: int | None = None) -> None:
        super().__init__()
        depth = check_int("depth", depth, minimum=1)
        num_diag = depth // 2 if num_diag is None else check_int("num_diag", num_diag, minimum=0)
        if num_diag > depth:
            raise ArgumentError(f"num_diag must be <= depth={depth}, got {num_diag}")
        self.layers = nn.ModuleList(
            TransNormerLayer(dim, num_heads, attention="diag" if i < num_diag else "norm",
                             causal=causal, block_size=block_size)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_padding_mask)
        return x


__all__ = [
    "DiagAttention",
    "NormAttention",
    "TransNormer",
    "TransNormerLayer",
    "diag_attention",
    "norm_attention",
]
