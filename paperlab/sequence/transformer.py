"""The encoder-decoder Transformer (Vaswani et al. 2017, "Attention Is All You Need").

The idea: replace recurrence by attention. An encoder of N identical layers reads the whole
source at once (every token attends to every token); a decoder of N layers produces the
target left to right, each token attending causally to the target so far and, through
**cross-attention**, to the encoder's output (the "memory")::

    encoder layer:   x = Norm(x + SelfAttn(x))               # bidirectional
                     x = Norm(x + FFN(x))
    decoder layer:   y = Norm(y + SelfAttn_causal(y))
                     y = Norm(y + CrossAttn(y, memory))      # queries y, keys/values memory
                     y = Norm(y + FFN(y))
    FFN(x) = W2 act(W1 x + b1) + b2                          # act = ReLU, hidden 4d

That is the published **post-LN** layout (``norm_first=False``). ``norm_first=True`` is the
**pre-LN** variant (x = x + Sublayer(Norm(x)), with a final Norm after each stack), which
trains without warm-up (Xiong et al. 2020). Inputs are token embeddings scaled by sqrt(d)
plus sinusoidal positions (any registered position works: absolute encodings are added to
the embeddings, rotary / bias encodings go inside the self-attentions). The output head
maps to target-vocabulary logits and may share the target embedding matrix (tied).

Decoding: ``encode`` runs once; ``start_cache`` projects the memory to cross-attention keys
and values once per layer; ``decode_step`` feeds new target tokens, growing each layer's
self-attention KV cache. ``greedy_decode`` and ``beam_search`` (GNMT length penalty
((5 + |Y|) / 6)^alpha, Wu et al. 2016) use it; they live in ``sequence/decoding.py``, the
layers in ``sequence/transformer_layers.py``, the weight import from ``torch.nn.Transformer``
in ``sequence/transformer_weights.py``.

Shapes: src (B, S) and tgt (B, T) integers; padding masks (B, S) / (B, T) bool, True =
padding (``torch.nn.Transformer``'s convention); memory (B, S, d); logits (B, T, V_tgt).

Relation to ``torch.nn.Transformer(batch_first=True)``: same layer maths; torch always puts
a final LayerNorm after both stacks (``final_norm=True`` here); ``load_torch_transformer``
copies its weights (its ``in_proj_weight`` rows split into our q/k/v projections).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from paperlab.attention.base import KVCache
from paperlab.attention.masks import check_key_padding_mask
from paperlab.config import Config
from paperlab.errors import ArgumentTypeError, ConfigError, ShapeError
from paperlab.registry import export_model
from paperlab.sequence.decoding import beam_search, greedy_decode, sequence_log_prob
from paperlab.sequence.lm import (
    NORMS,
    build_absolute_position,
    check_tokens,
    make_norm,
    position_kind,
)
from paperlab.sequence.transformer_layers import (
    ACTIVATIONS,
    DecoderLayer,
    EncoderLayer,
    cross_attention_kv,
)

# --- the model -------------------------------------------------------------------------------


@dataclass
class Seq2SeqConfig(Config):
    """An encoder-decoder Transformer. Defaults are the paper's layout at a small size.

    ``ffn_dim`` defaults to 4 * dim; ``attention_dropout`` to ``dropout``; ``final_norm``
    (a norm after each stack) to ``norm_first`` (pre-LN needs it, post-LN as published has
    none; ``torch.nn.Transformer`` always has one); ``embedding_scale`` to sqrt(dim) and
    ``init_std`` (token embeddings ~ N(0, std)) to dim^-1/2. ``position`` is a registered
    encoding or ``"none"``. ``share_embeddings`` uses one table for source and target (the
    vocabularies must then agree); ``tie_output`` reads logits off the target embedding.
    """

    src_vocab_size: int = 32
    tgt_vocab_size: int = 32
    dim: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    ffn_dim: int | None = None
    activation: str = "relu"
    dropout: float = 0.1
    attention_dropout: float | None = None
    norm: str = "layernorm"
    norm_first: bool = False
    final_norm: bool | None = None
    position: str = "sinusoidal"
    position_kwargs: dict[str, Any] = field(default_factory=dict)
    max_positions: int = 1024
    tie_output: bool = True
    share_embeddings: bool = False
    embedding_scale: float | None = None
    init_std: float | None = None

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad field."""
        for name in ("src_vocab_size", "tgt_vocab_size", "dim", "num_heads",
                     "num_encoder_layers", "num_decoder_layers", "max_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ConfigError(
                f"dim={self.dim} must be divisible by num_heads={self.num_heads} "
                f"(head dim = dim / num_heads)"
            )
        if self.ffn_dim is not None and (
            isinstance(self.ffn_dim, bool) or not isinstance(self.ffn_dim, int)
            or self.ffn_dim < 1
        ):
            raise ConfigError(f"ffn_dim must be a positive int or None, got {self.ffn_dim!r}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if value is None and name == "attention_dropout":
                continue
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1), got {value!r}")
        for name in ("embedding_scale", "init_std"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not value > 0):
                raise ConfigError(f"{name} must be a positive number or None, got {value!r}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError(
                f"share_embeddings needs src_vocab_size == tgt_vocab_size, got "
                f"{self.src_vocab_size} and {self.tgt_vocab_size}"
            )
        position_kind(self.position)


@dataclass(frozen=True)
class Seq2SeqCache:
    """Decoder state: per layer a self-attention ``KVCache`` (``None`` before the first
    step) and the memory's cross-attention (keys, values), computed once; the memory's
    padding (B, S) or ``None``; ``position`` = target tokens seen so far."""

    self_attn: tuple[KVCache | None, ...]
    cross: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    memory_padding: torch.Tensor | None
    position: int

    def select(self, index: torch.Tensor) -> Seq2SeqCache:
        """The cache of rows ``index`` (B',) -- reorders (and repeats) beams."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.index_select(0, index)

        layers = tuple(
            None if c is None else KVCache(pick(c.keys), pick(c.values), pick(c.padding),
                                           c.position)
            for c in self.self_attn
        )
        cross = tuple((pick(k), pick(v)) for k, v in self.cross)
        return Seq2SeqCache(layers, cross, pick(self.memory_padding), self.position)


@export_model("seq2seq-transformer", note="C2", paper="Vaswani et al. 2017")
class Seq2SeqTransformer(nn.Module):
    """Embeddings -> encoder stack -> decoder stack (cross-attending) -> output logits.

    ``Seq2SeqTransformer(config)`` or ``Seq2SeqTransformer(**fields)``.
    ``forward(src (B, S), tgt (B, T), *, src_key_padding_mask=None,
    tgt_key_padding_mask=None)`` -> logits (B, T, V_tgt), teacher-forced (tgt starts with
    BOS; position t predicts token t + 1). ``encoder_stack`` / ``decoder_stack`` run the
    core on already embedded inputs.
    """

    def __init__(self, config: Seq2SeqConfig | None = None, **fields: Any) -> None:
        super().__init__()
        if config is None:
            config = Seq2SeqConfig(**fields)
        elif fields:
            config = dataclasses.replace(config, **fields)
        if not isinstance(config, Seq2SeqConfig):
            raise ArgumentTypeError(
                f"config must be a Seq2SeqConfig, got {type(config).__name__}"
            )
        config.check()
        self.config = c = config
        d = c.dim
        self.embedding_scale = math.sqrt(d) if c.embedding_scale is None else c.embedding_scale
        std = d**-0.5 if c.init_std is None else c.init_std
        self.src_embed = nn.Embedding(c.src_vocab_size, d)
        nn.init.normal_(self.src_embed.weight, std=std)
        if c.share_embeddings:
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(c.tgt_vocab_size, d)
            nn.init.normal_(self.tgt_embed.weight, std=std)
        kind = position_kind(c.position)
        self.src_position = self.tgt_position = None
        if kind == "absolute":
            self.src_position = build_absolute_position(
                c.position, d, c.max_positions, c.position_kwargs
            )
            self.tgt_position = build_absolute_position(
                c.position, d, c.max_positions, c.position_kwargs
            )
        self.drop = nn.Dropout(c.dropout)
        ffn = 4 * d if c.ffn_dim is None else c.ffn_dim
        attn_drop = c.dropout if c.attention_dropout is None else c.attention_dropout
        common = dict(
            dropout=c.dropout, attention_dropout=attn_drop, activation=c.activation,
            norm=c.norm, norm_first=c.norm_first,
        )
        inner = c.position if kind in ("rotary", "bias") else None
        self.encoder_layers = nn.ModuleList(
            self._layers(EncoderLayer, c.num_encoder_layers, inner, ffn, common)
        )
        self.decoder_layers = nn.ModuleList(
            self._layers(DecoderLayer, c.num_decoder_layers, inner, ffn, common)
        )
        final = c.norm_first if c.final_norm is None else c.final_norm
        self.encoder_norm = make_norm(c.norm, d) if final else nn.Identity()
        self.decoder_norm = make_norm(c.norm, d) if final else nn.Identity()
        self.head = nn.Linear(d, c.tgt_vocab_size, bias=False)
        if c.tie_output:
            self.head.weight = self.tgt_embed.weight

    def _layers(
        self, cls: type, n: int, position: str | None, ffn: int, common: dict[str, Any]
    ) -> list[nn.Module]:
        """n layers; a learned relative bias (T5) is shared by the layers of one stack."""
        c = self.config
        layers: list[nn.Module] = []
        shared: nn.Module | None = None
        for _ in range(n):
            pos: str | nn.Module | None = position if shared is None else shared
            kwargs = (c.position_kwargs or None) if isinstance(pos, str) else None
            layer = cls(c.dim, c.num_heads, ffn, position=pos, position_kwargs=kwargs, **common)
            built = layer.self_attn.position
            if shared is None and built is not None and any(True for _ in built.parameters()):
                shared = built
            layers.append(layer)
        return layers

    # --- checks ---

    def num_parameters(self) -> int:
        """Number of distinct trainable parameters (tied weights counted once)."""
        return sum({id(p): p.numel() for p in self.parameters() if p.requires_grad}.values())

    # --- the core on embedded inputs ---

    def encoder_stack(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embedded source (B, S, d) -> memory (B, S, d)."""
        check_key_padding_mask(key_padding_mask, x.shape[0], x.shape[1], "src_key_padding_mask")
        for layer in self.encoder_layers:
            x = layer(x, key_padding_mask)
        return self.encoder_norm(x)

    def decoder_stack(
        self,
        y: torch.Tensor,
        memory: torch.Tensor,
        *,
        memory_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embedded target (B, T, d) and memory (B, S, d) -> hidden states (B, T, d)."""
        cache = self.start_cache(memory, memory_key_padding_mask)
        check_key_padding_mask(
            tgt_key_padding_mask, y.shape[0], y.shape[1], "tgt_key_padding_mask"
        )
        for layer, kv in zip(self.decoder_layers, cache.cross):
            y, _ = layer(y, kv, cache.memory_padding, key_padding_mask=tgt_key_padding_mask)
        return self.decoder_norm(y)

    # --- tokens in, logits out ---

    def embed_source(self, src: torch.Tensor) -> torch.Tensor:
        """(B, S) ids -> (B, S, d): sqrt(d)-scaled embedding + absolute position, dropout."""
        x = self.src_embed(src) * self.embedding_scale
        if self.src_position is not None:
            x = self.src_position(x)
        return self.drop(x)

    def embed_target(self, tgt: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """(B, T) ids at positions offset.. -> (B, T, d)."""
        y = self.tgt_embed(tgt) * self.embedding_scale
        if self.tgt_position is not None:
            y = self.tgt_position(y, offset=offset)
        return self.drop(y)

    def encode(
        self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Source ids (B, S) -> memory (B, S, d)."""
        check_tokens(src, self.config.src_vocab_size, "src")
        return self.encoder_stack(self.embed_source(src), src_key_padding_mask)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        *,
        src_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, T, V_tgt); the source padding also masks the memory."""
        check_tokens(tgt, self.config.tgt_vocab_size, "tgt")
        memory = self.encode(src, src_key_padding_mask)
        if tgt.shape[0] != src.shape[0]:
            raise ShapeError(
                f"src and tgt must share the batch size, got {tuple(src.shape)} and "
                f"{tuple(tgt.shape)}"
            )
        h = self.decoder_stack(
            self.embed_target(tgt),
            memory,
            memory_key_padding_mask=src_key_padding_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
        )
        return self.head(h)

    # --- incremental decoding ---

    def start_cache(
        self, memory: torch.Tensor, memory_key_padding_mask: torch.Tensor | None = None
    ) -> Seq2SeqCache:
        """Project the memory (B, S, d) to every layer's cross-attention keys/values, once."""
        if not isinstance(memory, torch.Tensor) or memory.dim() != 3 or (
            memory.shape[-1] != self.config.dim
        ):
            shape = tuple(memory.shape) if isinstance(memory, torch.Tensor) else memory
            raise ShapeError(f"memory must be (B, S, d={self.config.dim}), got {shape}")
        pad = check_key_padding_mask(
            memory_key_padding_mask, memory.shape[0], memory.shape[1], "memory_key_padding_mask"
        )
        cross = tuple(cross_attention_kv(layer.cross_attn, memory)
                      for layer in self.decoder_layers)
        return Seq2SeqCache((None,) * len(self.decoder_layers), cross, pad, 0)

    def decode_step(
        self,
        tgt: torch.Tensor,
        cache: Seq2SeqCache,
        *,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Seq2SeqCache]:
        """New target ids (B, n) at positions cache.position.. -> logits (B, n, V), cache."""
        if not isinstance(cache, Seq2SeqCache):
            raise ArgumentTypeError(
                f"cache must be a Seq2SeqCache (from start_cache), got {type(cache).__name__}"
            )
        check_tokens(tgt, self.config.tgt_vocab_size, "tgt")
        b = cache.cross[0][0].shape[0] if cache.cross else tgt.shape[0]
        if tgt.shape[0] != b:
            raise ShapeError(f"tgt has batch {tgt.shape[0]}, the cache holds batch {b}")
        y = self.embed_target(tgt, offset=cache.position)
        layers: list[KVCache | None] = []
        for layer, kv, past in zip(self.decoder_layers, cache.cross, cache.self_attn):
            y, new = layer(
                y, kv, cache.memory_padding, key_padding_mask=tgt_key_padding_mask,
                cache=past, use_cache=True,
            )
            layers.append(new)
        logits = self.head(self.decoder_norm(y))
        new_cache = Seq2SeqCache(
            tuple(layers), cache.cross, cache.memory_padding, cache.position + tgt.shape[1]
        )
        return logits, new_cache

    @torch.no_grad()
    def greedy_decode(
        self,
        src: torch.Tensor,
        max_len: int,
        bos: int,
        eos: int,
        *,
        src_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Argmax decoding with the cache: (B, 1 + L) ids (``decoding.greedy_decode``)."""
        return greedy_decode(self, src, max_len, bos, eos,
                             src_key_padding_mask=src_key_padding_mask)

    @torch.no_grad()
    def sequence_log_prob(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        eos: int,
        *,
        src_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log p(tgt[1:] | src) up to each row's first ``eos``: (B,)."""
        return sequence_log_prob(self, src, tgt, eos, src_key_padding_mask=src_key_padding_mask)

    @torch.no_grad()
    def beam_search(
        self,
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

        See ``paperlab.sequence.decoding.beam_search``.
        """
        return beam_search(self, src, beam_size, max_len, bos, eos,
                           length_penalty=length_penalty,
                           src_key_padding_mask=src_key_padding_mask)


__all__ = [
    "Seq2SeqCache",
    "Seq2SeqConfig",
    "Seq2SeqTransformer",
]
