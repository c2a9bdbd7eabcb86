"""The layers of the Transformer (Vaswani et al. 2017): FFN, encoder layer, decoder layer.

Each layer is residual branches around a norm. **Post-LN** (the paper, BERT):
``x = Norm(x + Sublayer(x))``; **pre-LN** (GPT-2, ViT, CLIP): ``x = x + Sublayer(Norm(x))``::

    encoder layer:   x = x ⊕ SelfAttn(x)              # bidirectional, or causal (CLIP's text)
                     x = x ⊕ FFN(x)
    decoder layer:   y = y ⊕ SelfAttn(y)              # causal, or bidirectional (BLIP's ITM)
                     y = y ⊕ CrossAttn(y, memory)     # queries y, keys/values the memory
                     y = y ⊕ FFN(y)
    FFN(x) = W2 act(W1 x + b1) + b2

DETR (Carion et al. 2020) adds position encodings to the queries and keys, never the values,
at every layer: self-attention takes ``q = k = x + pos``, ``v = x``; the decoder's
cross-attention takes ``q = y + query_pos``, ``k = memory + memory_pos``, ``v = memory``.
The optional ``pos`` / ``query_pos`` / ``memory_pos`` arguments below do that; without them
nothing changes.

``act`` is ReLU (the paper), GELU (BERT, ViT), tanh-approximated GELU (SigLIP) or
quick-GELU x * sigmoid(1.702 x) (OpenAI's CLIP). The attention is paperlab's
``MultiHeadAttention`` (``paperlab/attention/softmax.py``), so every registered rotary or
bias position encoding plugs into the self-attention. These layers serve the
encoder-decoder (``sequence/transformer.py``) and the encoders of ``language/``,
``vision/`` and ``multimodal/``.

Shapes: x, y (B, N, d); memory (B, S, d); padding masks (B, N) bool, True = padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention.base import KVCache
from paperlab.attention.masks import merge_heads, split_heads
from paperlab.attention.softmax import MultiHeadAttention, scaled_dot_product_attention
from paperlab.errors import ArgumentError, ConfigError
from paperlab.sequence.lm import MLP, make_norm


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(1.702 x): the GELU approximation of OpenAI's CLIP."""
    return x * torch.sigmoid(1.702 * x)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (SigLIP's ``gelu_pytorch_tanh``)."""
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": gelu_tanh,
    "quick_gelu": quick_gelu,
}


def check_activation(name: str) -> str:
    """``name`` if it is one of ``ACTIVATIONS``, else a ``ConfigError`` listing them."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return name


# --- the functions ---------------------------------------------------------------------------


def cross_attention_kv(
    attn: MultiHeadAttention, memory: torch.Tensor, memory_pos: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of the memory (B, S, d_m) for one cross-attention: (B, H, S, D) each.

    ``memory_pos`` (B or 1, S, d_m), if given, is added to the keys' input only (DETR).
    """
    h = attn.num_heads
    key_input = memory if memory_pos is None else memory + memory_pos
    return split_heads(attn.k_proj(key_input), h), split_heads(attn.v_proj(memory), h)


def cross_attend(
    attn: MultiHeadAttention,
    y: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    memory_padding: torch.Tensor | None,
    query_pos: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v with precomputed memory keys/values: (B, T, d) -> (B, T, d).

    ``query_pos`` (B or 1, T, d), if given, is added to the queries' input only (DETR).
    """
    q = split_heads(attn.q_proj(y if query_pos is None else y + query_pos), attn.num_heads)
    p = attn.dropout if attn.training else 0.0
    if memory_padding is None:
        o = F.scaled_dot_product_attention(q, keys, values, dropout_p=p, scale=attn.scale)
    else:
        o = scaled_dot_product_attention(
            q, keys, values, scale=attn.scale, dropout_p=p, key_padding_mask=memory_padding
        )
    return attn.out_proj(merge_heads(o))


def attend_with_position(
    attn: MultiHeadAttention,
    x: torch.Tensor,
    pos: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Self-attention with ``q = k = x + pos`` and ``v = x`` (plain self-attention without pos)."""
    if pos is None:
        return attn(x, key_padding_mask=key_padding_mask)
    qk = x + pos
    return attn(qk, qk, x, key_padding_mask=key_padding_mask)


def residual(
    x: torch.Tensor, norm: nn.Module, norm_first: bool, branch: Any, drop: nn.Module
) -> torch.Tensor:
    """Post-LN: norm(x + f(x)); pre-LN: x + f(norm(x))."""
    if norm_first:
        return x + drop(branch(norm(x)))
    return norm(x + drop(branch(x)))


# --- the layers ------------------------------------------------------------------------------


class FeedForward(MLP):
    """The position-wise FFN: Linear(d, f) -> activation -> Linear(f, d) (``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__(dim, hidden, dropout)
        self.activation = check_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(ACTIVATIONS[self.activation](self.fc1(x))))


class EncoderLayer(nn.Module):
    """Self-attention then FFN, each in a residual with a norm: (B, N, d) -> (B, N, d).

    ``EncoderLayer(dim, num_heads, ffn_dim, *, dropout, attention_dropout, activation,
    norm, norm_eps, norm_first, causal, position, position_kwargs)``; submodules
    ``self_attn`` (q/k/v/out projections), ``norm1``, ``ffn`` (``fc1``, ``fc2``), ``norm2``.
    ``forward(x, key_padding_mask=None)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        *,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation: str = "relu",
        norm: str = "layernorm",
        norm_eps: float | None = None,
        norm_first: bool = False,
        causal: bool = False,
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(
            dim, num_heads, causal=causal, dropout=attention_dropout, position=position,
            position_kwargs=position_kwargs,
        )
        self.ffn = FeedForward(dim, ffn_dim, dropout, activation)
        self.norm1, self.norm2 = make_norm(norm, dim, norm_eps), make_norm(norm, dim, norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = bool(norm_first)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        *,
        pos: torch.Tensor | None = None,
    ):
        def attend(h: torch.Tensor) -> torch.Tensor:
            return attend_with_position(self.self_attn, h, pos, key_padding_mask)

        x = residual(x, self.norm1, self.norm_first, attend, self.dropout)
        return residual(x, self.norm2, self.norm_first, self.ffn, nn.Identity())


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention to the memory, FFN; each in a residual with a norm.

    ``DecoderLayer(dim, num_heads, ffn_dim, *, ..., causal=True, memory_dim=None)``:
    ``causal=False`` gives a bidirectional text encoder that cross-attends (BLIP's ITM);
    ``memory_dim`` is the memory's width when it differs from ``dim`` (the cross-attention's
    keys and values then project from it). Submodules ``self_attn``, ``norm1``,
    ``cross_attn``, ``norm2``, ``ffn``, ``norm3``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        *,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation: str = "relu",
        norm: str = "layernorm",
        norm_eps: float | None = None,
        norm_first: bool = False,
        causal: bool = True,
        memory_dim: int | None = None,
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(
            dim, num_heads, causal=causal, dropout=attention_dropout, position=position,
            position_kwargs=position_kwargs,
        )
        self.cross_attn = MultiHeadAttention(
            dim, num_heads, dropout=attention_dropout, kdim=memory_dim, vdim=memory_dim
        )
        self.ffn = FeedForward(dim, ffn_dim, dropout, activation)
        self.norm1, self.norm2, self.norm3 = (make_norm(norm, dim, norm_eps) for _ in range(3))
        self.dropout = nn.Dropout(dropout)
        self.norm_first = bool(norm_first)

    def forward(
        self,
        y: torch.Tensor,
        cross_kv: tuple[torch.Tensor, torch.Tensor] | None,
        memory_padding: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
        query_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache | None]:
        """y (B, T, d) -> (B, T, d) and the grown self-attention cache (``None`` without).

        ``cross_kv`` are the memory's keys and values from ``cross_attention_kv``; ``None``
        skips the cross-attention branch (BLIP's unimodal text mode, ``multimodal/blip.py``).
        ``query_pos`` (B or 1, T, d) is added to the self-attention's queries and keys and to
        the cross-attention's queries (DETR's object queries; no cache then).
        """
        if query_pos is not None and (cache is not None or use_cache):
            raise ArgumentError("query_pos is for DETR-style decoding without a KV cache")
        new_cache: list[KVCache | None] = [None]

        def attend(h: torch.Tensor) -> torch.Tensor:
            if query_pos is not None:
                return attend_with_position(self.self_attn, h, query_pos, key_padding_mask)
            if not use_cache:
                return self.self_attn(h, key_padding_mask=key_padding_mask, cache=cache)
            out, new_cache[0] = self.self_attn(
                h, key_padding_mask=key_padding_mask, cache=cache, use_cache=True
            )
            return out

        def cross(h: torch.Tensor) -> torch.Tensor:
            return cross_attend(self.cross_attn, h, cross_kv[0], cross_kv[1], memory_padding,
                                query_pos)

        y = residual(y, self.norm1, self.norm_first, attend, self.dropout)
        if cross_kv is not None:
            y = residual(y, self.norm2, self.norm_first, cross, self.dropout)
        y = residual(y, self.norm3, self.norm_first, self.ffn, nn.Identity())
        return y, new_cache[0]


__all__ = [
    "ACTIVATIONS",
    "DecoderLayer",
    "EncoderLayer",
    "FeedForward",
    "attend_with_position",
    "check_activation",
    "cross_attend",
    "cross_attention_kv",
    "gelu_tanh",
    "quick_gelu",
    "residual",
]
