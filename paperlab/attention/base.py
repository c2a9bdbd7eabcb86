"""The plug-in interface every attention module shares: ``KVCache``, ``build_position`` and
the ``AttentionModule`` base class (projections, head split/merge, position hand-off).

The common constructor and call are described in ``paperlab/attention/__init__.py``; each
technique's file (``softmax.py``, ``linear.py``, ...) subclasses ``AttentionModule`` and
writes only its own ``attend`` step.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paperlab.attention.masks import check_sequence, merge_heads, split_heads
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError, check_int


@dataclass(frozen=True)
class KVCache:
    """Keys and values seen so far, for incremental decoding with a score-matrix attention.

    keys (B, H, M, D) -- already rotated when the attention uses a rotary encoding; values
    (B, H, M, Dv); padding (B, M) bool (True = padding) or ``None``; ``position`` is the number
    of tokens seen, i.e. the absolute position of the next token (a windowed attention may keep
    fewer than ``position`` keys).
    """

    keys: torch.Tensor
    values: torch.Tensor
    padding: torch.Tensor | None
    position: int

    @property
    def length(self) -> int:
        """Number of keys held."""
        return self.keys.shape[-2]

    def extend(
        self, keys: torch.Tensor, values: torch.Tensor, padding: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Cached then new keys, values and padding (``None`` when neither has padding)."""
        if keys.shape[:2] != self.keys.shape[:2] or keys.shape[-1] != self.keys.shape[-1]:
            raise ShapeError(
                f"the cache holds keys {tuple(self.keys.shape)}, which do not fit new keys "
                f"{tuple(keys.shape)} (batch, heads and head dim must agree)"
            )
        new = keys.shape[-2]
        if self.padding is not None or padding is not None:
            b, device = keys.shape[0], keys.device
            old = self.padding
            if old is None:
                old = torch.zeros(b, self.length, dtype=torch.bool, device=device)
            if padding is None:
                padding = torch.zeros(b, new, dtype=torch.bool, device=device)
            padding = torch.cat((old, padding), dim=-1)
        keys = torch.cat((self.keys, keys), dim=-2)
        values = torch.cat((self.values, values), dim=-2)
        return keys, values, padding


def build_position(
    position: str | nn.Module | None,
    position_kwargs: dict[str, Any] | None,
    *,
    num_heads: int,
    head_dim: int,
    causal: bool,
    kinds: tuple[str, ...] = ("rotary", "bias"),
    owner: str = "attention",
) -> nn.Module | None:
    """The position module an attention uses: built by registry name, or checked if given.

    Unset ``num_heads``, ``head_dim``, ``causal`` and ``bidirectional`` constructor arguments
    (and ``dim`` for rotary encodings: the rotated head dims) are filled in from the attention.
    """
    if position is None:
        if position_kwargs:
            raise ConfigError(f"position_kwargs={position_kwargs!r} given without a position")
        return None
    if isinstance(position, str):
        from paperlab.registry import get

        cls = get("position", position).obj
        kwargs = dict(position_kwargs or {})
        params = inspect.signature(cls).parameters
        fill: dict[str, Any] = {
            "num_heads": num_heads,
            "head_dim": head_dim,
            "causal": causal,
            "bidirectional": not causal,
        }
        if getattr(cls, "kind", None) == "rotary":
            fill["dim"] = head_dim
        for key, value in fill.items():
            if key in params and key not in kwargs:
                kwargs[key] = value
        _check_kind(cls, position, kinds, owner)
        return cls(**kwargs)
    if not isinstance(position, nn.Module):
        raise ArgumentTypeError(
            f"position must be None, a registered name or an nn.Module, "
            f"got {type(position).__name__}"
        )
    if position_kwargs:
        raise ConfigError("position_kwargs only apply when position is given by name")
    _check_kind(type(position), type(position).__name__, kinds, owner)
    return position


def _check_kind(cls: type, label: str, kinds: tuple[str, ...], owner: str) -> None:
    kind = getattr(cls, "kind", None)
    if kind == "absolute":
        raise ConfigError(
            f"position {label!r} is an absolute encoding: it acts on the input, not inside "
            f"{owner}; add it to x before the attention (x = pe(x)) and build {owner} "
            f"without it"
        )
    if not kinds:
        raise ConfigError(
            f"{owner} takes no position encoding inside the attention (got {label!r}); "
            f"add an absolute encoding to its input instead"
        )
    if kind not in kinds:
        raise ConfigError(
            f"{owner} accepts position encodings of kind {', '.join(map(repr, kinds))}; "
            f"{label!r} has kind {kind!r}"
        )


class AttentionModule(nn.Module):
    """Base of the registered attentions: projections, heads, position and the checks.

    Subclasses implement ``forward(x, *, key_padding_mask=None, cache=None, use_cache=False)``
    (see the module docstring). ``kdim``/``vdim`` let keys and values come from inputs of
    another width (cross-attention), as in ``torch.nn.MultiheadAttention``.
    """

    position_kinds: tuple[str, ...] = ("rotary", "bias")

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
    ) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        if dim % num_heads:
            raise ArgumentError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ArgumentError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.head_dim = dim // num_heads
        self.causal = bool(causal)
        self.dropout = float(dropout)
        self.kdim = dim if kdim is None else check_int("kdim", kdim, minimum=1)
        self.vdim = dim if vdim is None else check_int("vdim", vdim, minimum=1)
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.position = build_position(
            position,
            position_kwargs,
            num_heads=num_heads,
            head_dim=self.head_dim,
            causal=self.causal,
            kinds=self.position_kinds,
            owner=type(self).__name__,
        )

    @property
    def position_kind(self) -> str | None:
        """``"rotary"``, ``"bias"`` or ``None``."""
        return None if self.position is None else self.position.kind

    def project(
        self, x: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, H, N, D), k (B, H, M, D), v (B, H, M, D) from x (and key/value inputs)."""
        b, _ = check_sequence(x, self.dim, "x")
        key = x if key is None else key
        value = key if value is None else value
        bk, m = check_sequence(key, self.kdim, "key")
        bv, mv = check_sequence(value, self.vdim, "value")
        if bk != b or bv != b or mv != m:
            raise ShapeError(
                f"key and value must be (B, M, .) with x's batch B={b} and one M: "
                f"key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        h = self.num_heads
        return (
            split_heads(self.q_proj(x), h),
            split_heads(self.k_proj(key), h),
            split_heads(self.v_proj(value), h),
        )

    def rotate(self, t: torch.Tensor, offset: int) -> torch.Tensor:
        """Rotate (B, H, L, D) queries or keys at positions offset.. (identity without RoPE)."""
        if self.position_kind != "rotary":
            return t
        return self.position.rotate(t, offset=offset)

    def output(self, o: torch.Tensor) -> torch.Tensor:
        """(B, H, N, Dv) heads -> (B, N, C) through the output projection."""
        return self.out_proj(merge_heads(o))

    def check_cache(self, cache: Any, use_cache: bool, cache_type: type) -> None:
        """Caches are for causal self-attention decoding and must be of this attention's type."""
        if (cache is not None or use_cache) and not self.causal:
            raise ArgumentError(
                f"{type(self).__name__}: a cache is for incremental (causal) decoding; "
                f"build it with causal=True"
            )
        if cache is not None and not isinstance(cache, cache_type):
            raise ArgumentTypeError(
                f"cache must be a {cache_type.__name__} returned by this attention, "
                f"got {type(cache).__name__}"
            )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, causal={self.causal}, "
            f"dropout={self.dropout}"
        )
