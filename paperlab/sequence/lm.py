"""A small decoder-only language model: the Transformer block with pluggable attention.

The idea (Vaswani et al. 2017; GPT-2's pre-norm layout, Radford et al. 2019): embed the
tokens, run L identical blocks, normalise, and read next-token logits off the embedding
matrix (tied weights). Each block is two residual branches, normalised *before* the branch::

    x = x + Attention(Norm(x))          # token mixing (causal in a decoder)
    x = x + MLP(Norm(x))                # per-token MLP: Linear(C, rC) -> GELU -> Linear(rC, C)

Where the position enters depends on the encoding's ``kind`` (``paperlab.position``):
``absolute`` encodings (sinusoidal, learned) are added to the token embeddings once, at
the bottom; ``rotary`` and ``bias`` encodings (rope, t5, alibi, ...) live inside every
attention (``position=`` of the attention modules); ``"none"`` uses no encoding at all
(NoPE: a causal decoder can still infer order from its mask). Relative encodings with
parameters (T5's bucket bias) are shared by all layers, as in T5.

The attention is any registered one (``softmax``, ``linear``, ``local``, ...), chosen by
name. Decoding keeps one cache per layer (a KV cache, or a linear attention's state):
``forward(next_tokens, cache=cache, use_cache=True)`` continues at position
``cache.position``, so incremental decoding equals the full forward pass.

Shapes: tokens (B, N) integers in [0, V); logits (B, N, V); hidden states (B, N, C).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.config import Config
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError, check_int
from paperlab.registry import export_model, get

NORMS = ("layernorm", "rmsnorm")


# --- the pieces ------------------------------------------------------------------------------


def make_norm(kind: str, dim: int, eps: float | None = None) -> nn.Module:
    """``LayerNorm`` (mean and variance) or ``RMSNorm`` (root mean square only) over C.

    ``eps`` defaults to torch's (1e-5 for LayerNorm, the dtype's epsilon for RMSNorm).
    """
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=1e-5 if eps is None else eps)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


def position_kind(position: str | None) -> str | None:
    """``None`` for no encoding (``None`` or ``"none"``), else the registered encoding's kind."""
    if position is None or position == "none":
        return None
    if not isinstance(position, str):
        raise ArgumentTypeError(
            f"position must be a registered name or 'none', got {type(position).__name__}"
        )
    return get("position", position).obj.kind


def build_absolute_position(
    name: str, dim: int, max_positions: int, kwargs: dict[str, Any] | None
) -> nn.Module:
    """An absolute encoding by registry name; ``dim`` and ``max_positions`` filled in if taken."""
    cls = get("position", name).obj
    kwargs = dict(kwargs or {})
    params = inspect.signature(cls).parameters
    for key, value in (("dim", dim), ("max_positions", max_positions)):
        if key in params and key not in kwargs:
            kwargs[key] = value
    return cls(**kwargs)


class MLP(nn.Module):
    """The position-wise feed-forward branch: Linear(C, rC) -> GELU -> Linear(rC, C)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


@export_model("transformer-block", note="C2", paper="Vaswani et al. 2017 (pre-norm: GPT-2)")
class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)); (B, N, C) -> (B, N, C).

    ``TransformerBlock(dim, num_heads, *, attention="softmax", position=None,
    position_kwargs=None, causal=False, mlp_ratio=4, dropout=0.0, norm="layernorm",
    attention_kwargs=None)``: ``attention`` is any registered attention's name; ``position`` a
    rotary or bias encoding's name (or module, to share one) handed to the attention.
    ``causal=False`` is an encoder block, ``causal=True`` a decoder block.
    ``forward(x, *, key_padding_mask=None, cache=None, use_cache=False)`` follows the
    attention interface: returns ``out`` or ``(out, cache)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        attention: str = "softmax",
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
        causal: bool = False,
        mlp_ratio: float = 4,
        dropout: float = 0.0,
        norm: str = "layernorm",
        attention_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_int("dim", dim, minimum=1)
        check_int("num_heads", num_heads, minimum=1)
        if dim % num_heads:
            raise ConfigError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio must be a positive number, got {mlp_ratio!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        if position == "none":
            position = None
        cls = get("attention", attention).obj
        self.norm1 = make_norm(norm, dim)
        self.attn = cls(
            dim,
            num_heads,
            causal=causal,
            dropout=dropout,
            position=position,
            position_kwargs=position_kwargs,
            **dict(attention_kwargs or {}),
        )
        self.norm2 = make_norm(norm, dim)
        self.mlp = MLP(dim, max(1, round(dim * mlp_ratio)), dropout)
        self.dropout = nn.Dropout(dropout)
        self.causal = bool(causal)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {}
        if key_padding_mask is not None:
            kwargs["key_padding_mask"] = key_padding_mask
        if cache is not None or use_cache:
            kwargs.update(cache=cache, use_cache=use_cache)
        a = self.attn(self.norm1(x), **kwargs)
        new_cache = None
        if use_cache:
            a, new_cache = a
        x = x + self.dropout(a)
        x = x + self.mlp(self.norm2(x))
        return (x, new_cache) if use_cache else x


# --- the model -------------------------------------------------------------------------------


@dataclass
class LMConfig(Config):
    """A decoder LM: sizes, the attention and position encoding by registry name, the norm.

    ``position``: a registered encoding or ``"none"`` (NoPE); ``max_positions`` sizes a
    learned table (other encodings ignore it). ``attention_kwargs`` go to the attention.
    ``init_std`` is the token embedding's N(0, std) initialisation and ``embedding_scale``
    multiplies the token embeddings before positions are added (Vaswani et al. use
    std = dim^-1/2 and scale sqrt(dim), so tokens match the unit-size sinusoids; GPT-2 uses
    std 0.02 and scale 1 with a learned table of the same small size).
    """

    vocab_size: int = 256
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4
    attention: str = "softmax"
    attention_kwargs: dict[str, Any] = field(default_factory=dict)
    position: str = "rope"
    position_kwargs: dict[str, Any] = field(default_factory=dict)
    max_positions: int = 1024
    dropout: float = 0.0
    norm: str = "layernorm"
    tie_embeddings: bool = True
    init_std: float = 0.02
    embedding_scale: float = 1.0

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad field."""
        for name in ("vocab_size", "dim", "num_layers", "num_heads", "max_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ConfigError(
                f"dim={self.dim} must be divisible by num_heads={self.num_heads} "
                f"(head dim = dim / num_heads)"
            )
        for name in ("init_std", "embedding_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        get("attention", self.attention)  # unknown names list the close matches
        position_kind(self.position)


@dataclass(frozen=True)
class LMCache:
    """One attention cache per layer and the number of tokens seen (the next position)."""

    layers: tuple[Any, ...]
    position: int


def check_tokens(tokens: torch.Tensor, vocab_size: int, name: str = "tokens") -> None:
    """Raise unless ``tokens`` is a (B, N) integer tensor with ids in [0, vocab_size)."""
    if not isinstance(tokens, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(tokens).__name__}")
    if tokens.dim() != 2:
        raise ShapeError(f"{name} must be (B, N) token ids, got {tuple(tokens.shape)}")
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise ArgumentTypeError(f"{name} must hold integers, got dtype {tokens.dtype}")
    if tokens.numel():
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= vocab_size:
            raise ArgumentError(
                f"{name} must lie in [0, vocab_size={vocab_size}), got [{lo}, {hi}]"
            )


@export_model("decoder-lm", note="C2", paper="Radford et al. 2019 (GPT-2, pre-norm decoder)")
class DecoderLM(nn.Module):
    """Token embedding -> (absolute position) -> causal blocks -> norm -> tied LM head.

    ``DecoderLM(config)`` or ``DecoderLM(**fields)``. ``forward(tokens (B, N), *, cache=None,
    use_cache=False)`` gives logits (B, N, V), or ``(logits, LMCache)`` with ``use_cache``.
    """

    def __init__(self, config: LMConfig | None = None, **fields: Any) -> None:
        super().__init__()
        if config is None:
            config = LMConfig(**fields)
        elif fields:
            config = dataclasses.replace(config, **fields)
        if not isinstance(config, LMConfig):
            raise ArgumentTypeError(f"config must be an LMConfig, got {type(config).__name__}")
        config.check()
        self.config = config
        c = config
        kind = position_kind(c.position)
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        nn.init.normal_(self.embed.weight, std=c.init_std)
        self.absolute = None
        if kind == "absolute":
            self.absolute = build_absolute_position(
                c.position, c.dim, c.max_positions, c.position_kwargs
            )
        self.drop = nn.Dropout(c.dropout)
        blocks: list[TransformerBlock] = []
        shared: nn.Module | None = None
        for _ in range(c.num_layers):
            inner: str | nn.Module | None = c.position if kind in ("rotary", "bias") else None
            kwargs = c.position_kwargs if isinstance(inner, str) else None
            if shared is not None:
                inner, kwargs = shared, None
            block = TransformerBlock(
                c.dim,
                c.num_heads,
                attention=c.attention,
                position=inner,
                position_kwargs=kwargs or None,
                causal=True,
                mlp_ratio=c.mlp_ratio,
                dropout=c.dropout,
                norm=c.norm,
                attention_kwargs=c.attention_kwargs,
            )
            pos = getattr(block.attn, "position", None)
            learned = isinstance(pos, nn.Module) and any(True for _ in pos.parameters())
            if shared is None and learned:
                shared = pos  # a learned relative bias (T5) is shared by all layers
            blocks.append(block)
        self.blocks = nn.ModuleList(blocks)
        self.norm = make_norm(c.norm, c.dim)
        self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.head.weight = self.embed.weight

    def num_parameters(self, *, exclude_embeddings: bool = False) -> int:
        """Number of distinct trainable parameters (tied weights counted once)."""
        params = {id(p): p for p in self.parameters() if p.requires_grad}
        if exclude_embeddings:
            params.pop(id(self.embed.weight), None)
        return sum(p.numel() for p in params.values())

    def forward(
        self, tokens: torch.Tensor, *, cache: LMCache | None = None, use_cache: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, LMCache]:
        """tokens (B, N) -> logits (B, N, V), or ``(logits, LMCache)`` with ``use_cache``."""
        check_tokens(tokens, self.config.vocab_size)
        if cache is not None and not isinstance(cache, LMCache):
            raise ArgumentTypeError(
                f"cache must be the LMCache this model returned, got {type(cache).__name__}"
            )
        past = 0 if cache is None else cache.position
        x = self.embed(tokens)
        if self.config.embedding_scale != 1.0:
            x = x * self.config.embedding_scale
        if self.absolute is not None:
            x = self.absolute(x, offset=past)
        x = self.drop(x)
        layers: list[Any] = []
        for i, block in enumerate(self.blocks):
            layer_cache = None if cache is None else cache.layers[i]
            if use_cache:
                x, layer_cache = block(x, cache=layer_cache, use_cache=True)
                layers.append(layer_cache)
            else:
                x = block(x, cache=layer_cache)
        logits = self.head(self.norm(x))
        if use_cache:
            return logits, LMCache(tuple(layers), past + tokens.shape[1])
        return logits

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        *,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Continue ``prompt`` (B, P) by ``max_new_tokens``: returns (B, P + max_new_tokens).

        Greedy (argmax) or sampled at ``temperature`` with ``generator``. With ``use_cache``
        each step feeds one token through the per-layer caches; without, every step reruns
        the whole prefix (same result, quadratic cost).
        """
        check_tokens(prompt, self.config.vocab_size, "prompt")
        check_int("max_new_tokens", max_new_tokens, minimum=0)
        if prompt.shape[1] == 0:
            raise ShapeError("prompt must hold at least one token per row, got (B, 0)")
        if not greedy and not temperature > 0:
            raise ArgumentError(f"temperature must be > 0 for sampling, got {temperature!r}")
        was_training = self.training
        self.eval()
        out = prompt
        cache = None
        step_input = prompt
        for _ in range(max_new_tokens):
            if use_cache:
                logits, cache = self(step_input, cache=cache, use_cache=True)
            else:
                logits = self(out)
            last = logits[:, -1].float()
            if greedy:
                nxt = last.argmax(dim=-1, keepdim=True)
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            out = torch.cat((out, nxt.to(out.dtype)), dim=1)
            step_input = nxt.to(out.dtype)
        self.train(was_training)
        return out


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None):
    """Mean cross-entropy of logits (B, N, V) against targets (B, N), over ``mask`` if given."""
    if logits.shape[:-1] != targets.shape:
        raise ShapeError(
            f"logits (B, N, V) and targets (B, N) disagree: {tuple(logits.shape)} vs "
            f"{tuple(targets.shape)}"
        )
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    if mask is None:
        return loss.mean()
    mask = mask.flatten().to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp(min=1)


__all__ = [
    "check_tokens",
    "LMCache",
    "LMConfig",
    "MLP",
    "DecoderLM",
    "TransformerBlock",
    "build_absolute_position",
    "lm_loss",
    "make_norm",
    "position_kind",
]
