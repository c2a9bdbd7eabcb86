"""The text towers of CLIP (Radford et al. 2021) and SigLIP (Zhai et al. 2023).

The idea: a caption becomes one vector. Tokens are embedded, a learned position row is
added, L pre-LN Transformer encoder layers mix them, a final LayerNorm normalises, and one
token's state is read off as the caption's summary::

    h_0 = E[ids] + P[0:N]                       E (V, d), P (N_max, d)
    h_l = EncoderLayer_l(h_{l-1}, padding)      pre-LN, causal (CLIP) or bidirectional (SigLIP)
    pooled = LN(h_L)[b, i_b]                    (B, d); then, for SigLIP, W pooled + b

Which token ``i_b`` summarises the caption (``pool``):

- ``"eos"``: the first end-of-text token (``eos_token_id``). CLIP's text transformer is
  causal, so only the last real token has seen the whole caption.
- ``"argmax"``: the largest id in the row -- OpenAI's original CLIP, whose EOT token has the
  largest id of its vocabulary (HF keeps this when a config says ``eos_token_id == 2``, the
  value configs carried before transformers PR #24773).
- ``"last"``: the last position, padding or not (SigLIP, trained with max-length padding:
  its bidirectional attention lets that position see every real token).

The layers are ``paperlab.sequence.transformer_layers.EncoderLayer``; the position table is
``paperlab.position.learned.LearnedPositionalEmbedding``.

Shapes: input_ids (B, N) int64, N <= ``max_length``; attention_mask (B, N) bool or 0/1,
**True / 1 = real token** (the tokenizer's and HF's convention; it becomes the layers'
``key_padding_mask = ~attention_mask``); hidden (B, N, d); pooled (B, d) or (B, head_dim).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from paperlab.config import Config
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError
from paperlab.position.learned import LearnedPositionalEmbedding
from paperlab.sequence.lm import check_tokens, make_norm
from paperlab.sequence.transformer_layers import EncoderLayer, check_activation

POOLS = ("eos", "argmax", "last")


# --- the functions ---------------------------------------------------------------------------


def pool_index(input_ids: torch.Tensor, pool: str, eos_token_id: int | None = None) -> torch.Tensor:
    """The position that summarises each row of ``input_ids`` (B, N): (B,) int64.

    ``pool`` is ``"eos"`` (first ``eos_token_id``; a row without one is an error),
    ``"argmax"`` (largest id, first on ties) or ``"last"`` (position N - 1).
    """
    b, n = input_ids.shape
    if pool == "last":
        return torch.full((b,), n - 1, dtype=torch.long, device=input_ids.device)
    if pool == "argmax":
        return input_ids.to(torch.int32).argmax(dim=-1).long()
    if pool == "eos":
        if eos_token_id is None:
            raise ConfigError("pool='eos' needs eos_token_id")
        hit = input_ids == eos_token_id
        found = hit.any(dim=-1)
        if not bool(found.all()):
            rows = torch.nonzero(~found).flatten()[:8].tolist()
            raise ArgumentError(
                f"input_ids rows {rows} contain no end-of-text token (eos_token_id="
                f"{eos_token_id}); pool='eos' reads the caption off that token"
            )
        return hit.to(torch.int32).argmax(dim=-1).long()
    raise ConfigError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")


def gather_rows(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """hidden (B, N, d) at one position per row ``index`` (B,) -> (B, d)."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def padding_from_attention_mask(
    attention_mask: torch.Tensor | None, shape: tuple[int, int]
) -> torch.Tensor | None:
    """attention_mask (B, N), True/1 = real token -> key padding mask (B, N), True = padding."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor):
        raise ArgumentTypeError(
            f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}"
        )
    if tuple(attention_mask.shape) != tuple(shape):
        raise ShapeError(
            f"attention_mask must have the shape of input_ids {tuple(shape)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    if attention_mask.dtype == torch.bool:
        return ~attention_mask
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise ArgumentTypeError(
            f"attention_mask must be bool or 0/1 integers, got dtype {attention_mask.dtype}"
        )
    if attention_mask.numel() and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ArgumentError("attention_mask must hold only 0 and 1 (1 = real token)")
    return attention_mask == 0


# --- the module ------------------------------------------------------------------------------


@dataclass
class TextConfig(Config):
    """A text tower. The defaults are CLIP's layout at a small size.

    ``causal`` (CLIP) or bidirectional (SigLIP); ``pool`` in ``POOLS``; ``head_dim`` adds a
    Linear(dim, head_dim) with bias after pooling (SigLIP's ``head``; CLIP projects outside
    the tower, without bias). ``max_length`` is the number of learned positions. The default
    ``eos_token_id`` 3 is ``[SEP]`` of ``paperlab.language.tokenizer``'s tokenizers (specials
    [PAD], [UNK], [CLS], [SEP], [MASK] take ids 0-4).
    """

    vocab_size: int = 1000
    max_length: int = 32
    dim: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 256
    activation: str = "quick_gelu"
    norm_eps: float = 1e-5
    causal: bool = True
    pool: str = "eos"
    eos_token_id: int | None = 3
    head_dim: int | None = None
    dropout: float = 0.0

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad field."""
        for name in ("vocab_size", "max_length", "dim", "depth", "num_heads", "mlp_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"text {name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ConfigError(
                f"text dim={self.dim} must be divisible by num_heads={self.num_heads}"
            )
        check_activation(self.activation)
        if self.pool not in POOLS:
            raise ConfigError(f"text pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if self.pool == "eos" and self.eos_token_id is None:
            raise ConfigError("text pool='eos' needs eos_token_id")
        if self.head_dim is not None and (not isinstance(self.head_dim, int) or self.head_dim < 1):
            raise ConfigError(
                f"text head_dim must be a positive int or None, got {self.head_dim!r}"
            )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(
                f"text dropout must be a probability in [0, 1), got {self.dropout!r}"
            )


class TextOutput(NamedTuple):
    """``hidden`` (B, N, d) after the final LayerNorm; ``pooled`` (B, d) or (B, head_dim)."""

    hidden: torch.Tensor
    pooled: torch.Tensor


def build_config(config: Any, fields: dict[str, Any], cls: type[Config]) -> Any:
    """``config`` (or ``cls(**fields)``), with ``fields`` replaced, type-checked and checked."""
    if config is None:
        config = cls(**fields)
    elif fields:
        config = dataclasses.replace(config, **fields)
    if not isinstance(config, cls):
        raise ArgumentTypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    config.check()
    return config


class TextTransformer(nn.Module):
    """Token + learned position embeddings -> pre-LN encoder layers -> LayerNorm -> pool.

    ``TextTransformer(config)`` or ``TextTransformer(**fields)``. Submodules
    ``token_embedding``, ``position`` (``.weight`` (max_length, d)), ``layers``,
    ``final_norm``, optional ``head``. ``forward(input_ids, attention_mask=None)`` ->
    ``TextOutput(hidden, pooled)``.
    """

    def __init__(self, config: TextConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = c = build_config(config, fields, TextConfig)
        self.token_embedding = nn.Embedding(c.vocab_size, c.dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.position = LearnedPositionalEmbedding(c.max_length, c.dim)
        self.layers = nn.ModuleList(
            EncoderLayer(
                c.dim, c.num_heads, c.mlp_dim, dropout=c.dropout, activation=c.activation,
                norm_eps=c.norm_eps, norm_first=True, causal=c.causal,
            )
            for _ in range(c.depth)
        )
        self.final_norm = make_norm("layernorm", c.dim, c.norm_eps)
        self.head = nn.Linear(c.dim, c.head_dim) if c.head_dim is not None else None

    @property
    def out_dim(self) -> int:
        """Width of ``pooled``."""
        return self.config.head_dim or self.config.dim

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> TextOutput:
        c = self.config
        check_tokens(input_ids, c.vocab_size, "input_ids")
        if input_ids.shape[1] > c.max_length:
            raise ShapeError(
                f"input_ids has {input_ids.shape[1]} tokens, more than max_length={c.max_length}"
            )
        padding = padding_from_attention_mask(attention_mask, tuple(input_ids.shape))
        if padding is not None and not bool(padding.any()):
            padding = None  # nothing padded: the fused attention path
        index = pool_index(input_ids, c.pool, c.eos_token_id)
        h = self.position(self.token_embedding(input_ids))
        for layer in self.layers:
            h = layer(h, key_padding_mask=padding)
        h = self.final_norm(h)
        pooled = gather_rows(h, index)
        if self.head is not None:
            pooled = self.head(pooled)
        return TextOutput(h, pooled)


__all__ = [
    "POOLS",
    "TextConfig",
    "TextOutput",
    "TextTransformer",
    "build_config",
    "gather_rows",
    "padding_from_attention_mask",
    "pool_index",
]
