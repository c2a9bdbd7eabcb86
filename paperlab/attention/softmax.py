"""Scaled dot-product (softmax) attention and multi-head attention (Vaswani et al. 2017).

The idea: every query scores every key, the scores become weights by a softmax over the keys,
and the output is the weighted mean of the values::

    A = softmax(Q K^T * scale + bias, masked)      scale = 1 / sqrt(D)
    out = A V                                      A: (B, H, N, M)

The N x M score matrix is what makes the cost O(N M D) in time and O(N M) in memory -- the
price the linear (``linear.py``) and sparse (``sparse.py``) attentions lower (notes B1, B2).

Written out, with the numerics that keep it finite:

- max-subtraction: softmax(s) = exp(s - max s) / sum exp(s - max s), so no exp overflows;
- float16/bfloat16 inputs are scored, normalised and summed in float32, then cast back;
- masked keys get -inf; a row in which **no key is visible** gets weights 0 and output 0, not
  NaN. (A plain ``torch.softmax`` of an all -inf row is NaN, and so was torch's
  ``scaled_dot_product_attention`` before 2.5; torch >= 2.5 also returns 0 there.) Zero keeps
  padded query rows harmless: they give 0 and pass back a 0 gradient.
- ``causal`` is aligned **bottom-right**: with N queries and M keys, query i sees keys
  j <= i + (M - N) -- the queries are the last N tokens, as when decoding with a KV cache.
  torch's ``is_causal`` aligns top-left (j <= i); the two agree when N == M. For torch's
  behaviour with N != M pass ``mask=causal_mask(n, m, offset=0)``.

``MultiHeadAttention`` projects (B, N, C) inputs to H heads, applies a rotary or bias position
encoding, attends, and projects back. When nothing needs the written-out function (no bias
position encoding), it calls ``torch.nn.functional.scaled_dot_product_attention`` (the fused
fast path); the tests show the two paths agree.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention.base import AttentionModule, KVCache
from paperlab.attention.masks import (
    accumulation_dtype,
    attend_mask,
    causal_mask,
    check_bias,
    check_key_padding_mask,
    check_mask,
    check_qkv,
    combine_masks,
    padding_to_mask,
)
from paperlab.errors import ArgumentError, ConfigError
from paperlab.registry import export_attention

# --- the functions ---------------------------------------------------------------------------


def masked_softmax(
    scores: torch.Tensor, visible: torch.Tensor | None = None, *, finite: bool = False
) -> torch.Tensor:
    """softmax over the last axis with max-subtraction; rows with nothing visible give 0.

    ``scores`` (..., M) (may hold -inf); ``visible`` a bool mask broadcastable to it (True =
    keep). Computed in float32 for half inputs; returned in the accumulation dtype.
    ``torch.softmax`` subtracts the row maximum itself; a row with no finite score would give
    0/0 = NaN there, so such rows are set to 0 before the softmax and their weights to 0 after
    (which also gives them a zero, not NaN, gradient). ``finite=True`` promises that
    ``scores`` hold no -inf, so empty rows are read off the (smaller) mask alone.
    """
    s = scores.to(accumulation_dtype(scores.dtype))
    if visible is not None:
        s = s.masked_fill(~visible, float("-inf"))
    if finite and visible is None:
        return torch.softmax(s, dim=-1)
    if finite:
        has_key = visible.any(dim=-1, keepdim=True)
    else:
        has_key = (s > float("-inf")).any(dim=-1, keepdim=True)
    if bool(has_key.all()):
        return torch.softmax(s, dim=-1)
    s = s.masked_fill(~has_key, 0.0)
    return torch.softmax(s, dim=-1) * has_key


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The attention matrix softmax(q k^T * scale + bias, masked): (B, H, N, M).

    Same conventions as ``scaled_dot_product_attention``; float32 for half inputs.
    """
    shape = check_qkv(q, k)
    check_bias(bias, shape.scores)
    visible = attend_mask(
        shape, mask=mask, causal=causal, key_padding_mask=key_padding_mask, device=q.device
    )
    acc = accumulation_dtype(q.dtype)
    scale = shape.head_dim**-0.5 if scale is None else scale
    scores = (q.to(acc) @ k.to(acc).transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias.to(acc)
    return masked_softmax(scores, visible, finite=bias is None)


def dropout_weights(
    weights: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero each weight with probability p and scale the rest by 1 / (1 - p)."""
    if p == 0.0:
        return weights
    keep = torch.rand(weights.shape, generator=generator, device=weights.device) >= p
    return weights * keep / (1.0 - p)


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    generator: torch.Generator | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + bias, masked) v, written out: (B, H, N, Dv).

    q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv); ``mask`` bool broadcastable to
    (B, H, N, M), True = attend; ``bias`` float, added to the scaled scores; ``causal``
    bottom-right (query i sees keys j <= i + M - N); ``key_padding_mask`` (B, M), True =
    padding; ``scale`` defaults to 1/sqrt(D). Rows with no visible key return 0.
    ``dropout_p`` drops weights using ``generator`` (the global RNG when ``None``).
    """
    if not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ArgumentError(f"dropout_p must be a probability in [0, 1), got {dropout_p!r}")
    check_qkv(q, k, v)
    weights = attention_weights(
        q, k, mask=mask, causal=causal, bias=bias, scale=scale, key_padding_mask=key_padding_mask
    )
    weights = dropout_weights(weights, float(dropout_p), generator)
    return (weights @ v.to(weights.dtype)).to(q.dtype)


# --- the module ------------------------------------------------------------------------------


@export_attention("softmax", note="B1", paper="Vaswani et al. 2017")
class MultiHeadAttention(AttentionModule):
    """Multi-head softmax attention on (B, N, C), with RoPE / bias positions and a KV cache.

    ``MultiHeadAttention(dim, num_heads, *, causal=False, dropout=0.0, bias=True,
    position=None, position_kwargs=None, kdim=None, vdim=None, scale=None, fast_path=True)``.

    ``forward(x, key=None, value=None, *, key_padding_mask=None, mask=None, cache=None,
    use_cache=False)``: x (B, N, C); key (B, M, kdim) and value (B, M, vdim) default to x
    (self-attention); ``key_padding_mask`` (B, M) True = padding (``nn.MultiheadAttention``'s
    convention); ``mask`` bool broadcastable to (B, H, N, M) with **True = attend** (the SDPA
    convention -- the opposite of ``nn.MultiheadAttention``'s boolean ``attn_mask``), over all
    M keys including cached ones. Returns (B, N, C), or ``(out, KVCache)`` with ``use_cache``.
    The cache holds rotated keys; decoding continues positions from ``cache.position``.

    Relation to ``torch.nn.MultiheadAttention(dim, num_heads, batch_first=True)``: its
    ``in_proj_weight`` rows [0:C], [C:2C], [2C:3C] are our ``q_proj``, ``k_proj``,
    ``v_proj`` weights (likewise the biases), and ``out_proj`` matches.
    """

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
        kdim: int | None = None,
        vdim: int | None = None,
        scale: float | None = None,
        fast_path: bool = True,
    ) -> None:
        super().__init__(
            dim,
            num_heads,
            causal=causal,
            dropout=dropout,
            bias=bias,
            position=position,
            position_kwargs=position_kwargs,
            kdim=kdim,
            vdim=vdim,
        )
        if getattr(self.position, "value_embeddings", None) is not None:
            raise ConfigError("relative value embeddings (shaw values=True) are not supported")
        if scale is None:
            scale = (
                self.position.default_scale(self.head_dim)
                if self.position_kind == "bias"
                else self.head_dim**-0.5
            )
        self.scale = float(scale)
        self.fast_path = bool(fast_path)

    def forward(
        self,
        x: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        """(B, N, C) -> (B, N, C), or ``(out, cache)`` with ``use_cache=True``."""
        self_attention = key is None and value is None
        if not self_attention and (cache is not None or use_cache):
            raise ArgumentError("the KV cache is for self-attention decoding; got key/value")
        self.check_cache(cache, use_cache, KVCache)
        q, k, v = self.project(x, key, value)
        b, _, n, _ = q.shape
        past = cache.position if cache is not None else 0
        q, k = self.rotate(q, past), self.rotate(k, past)
        padding = check_key_padding_mask(key_padding_mask, b, k.shape[-2])
        if cache is not None:
            k, v, padding = cache.extend(k, v, padding)
        m = k.shape[-2]
        new_cache = KVCache(k, v, padding, past + n) if use_cache else None
        check_mask(mask, (b, self.num_heads, n, m))

        bias = None
        if self.position_kind == "bias":
            offset = past if self_attention else 0
            bias = self.position(q, k, scale=self.scale, offset=offset)
        p = self.dropout if self.training else 0.0
        if bias is None and self.fast_path:
            o = self._fused(q, k, v, mask, padding, p)
        else:
            o = scaled_dot_product_attention(
                q,
                k,
                v,
                mask=mask,
                causal=self.causal,
                bias=bias,
                scale=self.scale,
                dropout_p=p,
                key_padding_mask=padding,
            )
        out = self.output(o)
        return (out, new_cache) if use_cache else out

    def _fused(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        padding: torch.Tensor | None,
        p: float,
    ) -> torch.Tensor:
        """torch's fused SDPA with our conventions (bottom-right causal, empty rows -> 0)."""
        n, m = q.shape[-2], k.shape[-2]
        if self.causal and mask is None and padding is None and n == m:
            return F.scaled_dot_product_attention(
                q, k, v, dropout_p=p, is_causal=True, scale=self.scale
            )
        tri = causal_mask(n, m, device=q.device) if self.causal else None
        pad = None if padding is None else padding_to_mask(padding)
        visible = combine_masks(mask, pad, tri)
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=visible, dropout_p=p, scale=self.scale
        )
        if visible is None:
            return o
        has_key = visible.any(dim=-1, keepdim=True)  # torch < 2.5 (and some kernels) give NaN
        return torch.where(has_key, o, torch.zeros((), dtype=o.dtype, device=o.device))

    def extra_repr(self) -> str:
        pos = f", position={type(self.position).__name__}" if self.position is not None else ""
        return super().extra_repr() + f", scale={self.scale:g}, fast_path={self.fast_path}{pos}"

